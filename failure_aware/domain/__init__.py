"""The pure domain: what the ledger means, with no SQLAlchemy and no I/O (``tests/unit/test_layers.py``).

- ``states``: the state machine as data; ``policy``: retry policies and the backoff formula;
- ``validation``: the input rules of every path (SPEC 3); ``errors``: the exception tree;
- ``records`` and ``cluster_records``: the frozen records the API returns;
- ``fingerprint``: error-message fingerprints; ``durations``, ``timeutil``: "10m" and RFC 3339 times;
- ``health_rules``: health thresholds; ``outcomes``: what a handler can say; ``tokens``: API token scopes.
"""
