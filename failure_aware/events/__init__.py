"""The ledger's operations, one module per concern, each a set of functions over a ``Store``.

``recording`` writes history (detect, outcomes, state changes) and keeps the projection and counters in
the same transaction; ``claims`` runs work (claim, finish, run, retry_due, recover); ``queries`` only reads.
"""
