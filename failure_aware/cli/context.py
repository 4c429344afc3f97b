"""What commands share: the opened ledger (read-only for inspection) and the loaded config."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import click

from failure_aware.config import Config, load_config
from failure_aware.ledger import Ledger

LOCK_WAIT_MESSAGE = "waiting for the database write lock held by another process…"


@dataclass
class AppContext:
    """Global options, and the ledger opened lazily by the first command that needs it."""

    db_url: str | None = None
    config_path: str | None = None
    _ledgers: list[Ledger] = field(default_factory=list)
    _scratch: list[str] = field(default_factory=list)  # temporary folders of empty stand-in ledgers
    _told_lock_wait: bool = False

    def config(self) -> Config:
        """The config from ``--config`` or the working directory."""
        return load_config(self.config_path)

    def ledger(self, *, readonly: bool = False, create: bool = True, upgrade: bool = False,
               missing_is_empty: bool = False) -> Ledger:
        """Open the database. Inspection commands pass ``readonly=True``: the database refuses writes.

        With ``missing_is_empty`` (listings: ``events``, ``clusters``), a SQLite database that does not
        exist yet reads as an empty ledger (a private one in a temporary folder, removed on close: nothing
        is made where the URL points), so the listing is empty and exits 0, as on a database with nothing
        recorded. Commands whose answer vouches for a database (``health``, ``verify``, ``export``) keep
        reporting it missing: a mistyped path must not read as "OK" or as an empty backup.
        """
        url = self.db_url
        if readonly and missing_is_empty and _missing_sqlite(url):
            scratch = tempfile.mkdtemp(prefix="failure-aware-empty-")
            self._scratch.append(scratch)
            url = f"sqlite:///{Path(scratch) / 'empty.db'}"
            readonly = False  # it must be created; the command itself only reads
        opened = Ledger(url, readonly=readonly, create=create, upgrade=upgrade, config=self.config(),
                        on_lock_wait=self.lock_wait_notice)
        self._ledgers.append(opened)
        return opened

    def lock_wait_notice(self) -> None:
        """Say on stderr, once per command, that a write waits for another process's SQLite write lock
        (stderr whether or not it is a terminal: a command that seems to hang says why, and stdout and
        ``--json`` stay as they are)."""
        if not self._told_lock_wait:
            self._told_lock_wait = True
            click.echo(LOCK_WAIT_MESSAGE, err=True)

    def close(self) -> None:
        """Close what was opened."""
        for opened in self._ledgers:
            opened.close()
        self._ledgers.clear()
        for scratch in self._scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        self._scratch.clear()


def _missing_sqlite(url: str | None) -> bool:
    """Whether ``url`` (resolved as SPEC 2 says) names a SQLite file that does not exist."""
    from failure_aware.domain.errors import FailureAwareError
    from failure_aware.storage.engine import parse_url, resolve_url, sqlite_path

    try:
        parsed = parse_url(resolve_url(url))
    except FailureAwareError:
        return False  # the real open reports the problem
    if parsed.get_backend_name() != "sqlite":
        return False
    path = sqlite_path(parsed)
    return path is not None and not path.exists()


def app(ctx: click.Context | None = None) -> AppContext:
    """The ``AppContext`` of the running command."""
    current = ctx or click.get_current_context()
    obj = current.find_object(AppContext)
    if obj is None:  # a command invoked without the group (tests): use defaults
        obj = AppContext()
        current.obj = obj
    return obj
