"""Commands: (being written)."""
