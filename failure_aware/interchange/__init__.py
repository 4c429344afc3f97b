"""JSON Lines interchange (SPEC section 8): import, export, and the import of legacy v0.1-v0.3 databases.

- ``inputs`` numbers records and parses JSON Lines; ``records`` checks one record and normalizes it
  (``model``); ``history`` gives it its state history (derived by the policy, or given and checked).
- ``importer`` checks a whole input, parks it in a ``spool``, then writes it in one transaction with bulk
  inserts (``storage.bulk``).
- ``exporter`` streams the database back out as records.
- ``legacy`` turns a seed database's rows into records for the importer.

``Ledger.import_events``, ``import_file``, ``import_legacy``, ``export_events`` and ``export_file`` are the
public entry points; the format and the choices behind it are described in docs/interchange.md.
"""

from __future__ import annotations
