"""JSON Lines interchange (SPEC section 8): import, export, and the import of legacy v0.1-v0.3 databases.

- ``records`` checks one record and normalizes it (``model``); ``history`` gives it its state history.
- ``importer`` checks a whole input, then writes it in one transaction with bulk inserts.
- ``exporter`` streams the database back out as records.
- ``legacy`` turns a seed database's rows into records for the importer.

``Ledger.import_events``, ``import_file``, ``import_legacy``, ``export_events`` and ``export_file`` are the
public entry points; the format is described in docs/interchange.md.
"""

from __future__ import annotations
