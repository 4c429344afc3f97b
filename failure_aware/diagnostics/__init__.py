"""Diagnostics: what a person asks of a running ledger.

``verify`` checks the ledger against itself (the projection equals a replay of history, the counters equal
a recount, the immutability triggers are in place, the clusters equal a rebuild); ``health`` reports how the
work is going (SPEC section 6). Both only read.
"""
