"""Handlers the worker tests load by name (``tests.handlers_fixture:record``), in this process or in
worker subprocesses started from the repository root. Their side effects go to files named by environment
variables, so a test can see what each process did."""

from __future__ import annotations

import os
import time
from pathlib import Path

from failure_aware import Event

RECORD_DIR = "FA_TEST_RECORD_DIR"  # record: one file per process, one event id per line
MARKER = "FA_TEST_MARKER"  # block: this file is written when the handler has started

def record(event: Event) -> None:
    """Append the event id to ``$FA_TEST_RECORD_DIR/<pid>.log``: proof of who ran what, and how often."""
    with open(Path(os.environ[RECORD_DIR]) / f"{os.getpid()}.log", "a", encoding="utf-8") as log:
        log.write(f"{event.id}\n")


def block(event: Event) -> None:
    """Say it started (``$FA_TEST_MARKER`` gets the event id), then hang until killed."""
    Path(os.environ[MARKER]).write_text(str(event.id), encoding="utf-8")
    time.sleep(120)


def ok(event: Event) -> None:
    """Succeed."""


def fail(event: Event) -> None:
    """Fail with a message naming the event."""
    raise TimeoutError(f"upstream timed out for event {event.id} [after 30s]")


NOT_CALLABLE = 42


RUN_LOG = "FA_TEST_RUNLOG"  # logged: one line per handler run, "event_id attempt_number"
SLEEP = "FA_TEST_SLEEP"  # logged: seconds each run takes (default 0.01)


def logged(event: Event) -> None:
    """Log this run (event id and attempt number) before doing anything, then take a little time: the
    fault tests reconcile the recorded attempts with the runs that really happened."""
    with open(os.environ[RUN_LOG], "a", encoding="utf-8") as log:
        log.write(f"{event.id} {event.attempt_count + 1}\n")
    time.sleep(float(os.environ.get(SLEEP, "0.01")))
