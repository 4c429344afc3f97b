"""Reading what an import is given: records numbered for messages, and JSON Lines parsed line by line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from failure_aware.domain.errors import ValidationError
from failure_aware.domain.progress import Progress


@dataclass(frozen=True)
class Malformed:
    """An input item that is not a record at all (a line that is not JSON), with the reason."""

    message: str


def number_records(records: Iterable[Any]) -> Iterator[tuple[int, Any]]:
    """Records of ``import_events``, numbered from 1."""
    if isinstance(records, str | bytes) or not isinstance(records, Iterable):
        raise ValidationError("records must be an iterable of mappings (one per event), e.g. a list of dicts")
    return enumerate(records, 1)


def read_lines(lines: Iterable[str | bytes]) -> Iterator[tuple[int, Any]]:
    """JSON Lines parsed one by one, numbered by line; blank lines are skipped, bad ones are ``Malformed``."""
    for number, raw in enumerate(lines, 1):
        if isinstance(raw, bytes):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, Malformed(f"not valid UTF-8 (byte {exc.start + 1})")
                continue
        else:
            line = raw
        if number == 1:
            line = line.removeprefix("\ufeff")  # a byte-order mark some editors write
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, Malformed(f"malformed JSON: {exc.msg} (column {exc.colno})")
        except RecursionError:
            yield number, Malformed("malformed JSON: nested too deeply")


PROGRESS_EVERY = 1000  # items between two progress calls (each costs a callback, often a redraw)


def counted_bytes(
    lines: Iterable[bytes], on_progress: Progress, total: int | None
) -> Iterator[bytes]:
    """``lines`` as they are, telling ``on_progress("read", bytes so far, total)`` every
    ``PROGRESS_EVERY`` lines and at the end (``total``: the input's size in bytes, None when unknown)."""
    done = 0
    for number, line in enumerate(lines, 1):
        done += len(line)
        if number % PROGRESS_EVERY == 0:
            on_progress("read", done, total)
        yield line
    on_progress("read", done, total if total is not None else done)


def counted(
    numbered: Iterable[tuple[int, Any]], on_progress: Progress,
    total: int | None,
) -> Iterator[tuple[int, Any]]:
    """``numbered`` as it is, telling ``on_progress("check", items so far, total)`` every
    ``PROGRESS_EVERY`` items and at the end."""
    done = 0
    for item in numbered:
        done += 1
        if done % PROGRESS_EVERY == 0:
            on_progress("check", done, total)
        yield item
    on_progress("check", done, total if total is not None else done)
