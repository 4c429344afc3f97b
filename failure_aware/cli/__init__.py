"""The ``failure-aware`` command line: thin click commands over ``Ledger``.

Each command module registers its commands on the ``cli`` group; library errors become one-line messages
here, at the boundary, never tracebacks. Exit codes: 0 success; 1 a failure-aware error (bad input, unknown
id, illegal transition, database problem); 2 a usage error; ``health`` uses 0/1/2 for OK/DEGRADED/CRITICAL
and 3 when it could not check.
"""

from __future__ import annotations

import importlib

from failure_aware.cli.app import cli, main

# Command modules, imported for their side effect of adding commands to ``cli``.
COMMAND_MODULES = (
    "events",  # detect, report, events, show, annotate
    "running",  # run, retry --due, worker, recover
    "operator_cmds",  # revive, bury
    "data",  # import, export
    "admin",  # db upgrade, verify, demo
    "health",  # health
    "clusters",  # correlate, clusters
    "incidents",  # incidents
    "demo",  # demo
    "webhooks",  # deliver
    "server_cmds",  # serve, token
)

for _module in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["cli", "main"]
