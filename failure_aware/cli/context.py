"""What commands share: the opened ledger (read-only for inspection) and the loaded config."""

from __future__ import annotations

from dataclasses import dataclass, field

import click

from ..config import Config, load_config
from ..ledger import Ledger


@dataclass
class AppContext:
    """Global options, and the ledger opened lazily by the first command that needs it."""

    db_url: str | None = None
    config_path: str | None = None
    _ledgers: list[Ledger] = field(default_factory=list)

    def config(self) -> Config:
        """The config from ``--config`` or the working directory."""
        return load_config(self.config_path)

    def ledger(self, *, readonly: bool = False, create: bool = True, upgrade: bool = False) -> Ledger:
        """Open the database. Inspection commands pass ``readonly=True``: the database refuses writes."""
        opened = Ledger(self.db_url, readonly=readonly, create=create, upgrade=upgrade, config=self.config())
        self._ledgers.append(opened)
        return opened

    def close(self) -> None:
        """Close what was opened."""
        for opened in self._ledgers:
            opened.close()
        self._ledgers.clear()


def app(ctx: click.Context | None = None) -> AppContext:
    """The ``AppContext`` of the running command."""
    current = ctx or click.get_current_context()
    obj = current.find_object(AppContext)
    if obj is None:  # a command invoked without the group (tests): use defaults
        obj = AppContext()
        current.obj = obj
    return obj
