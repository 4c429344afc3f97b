"""Storage: URLs and engines, the schema, its migrations and the immutability triggers.

Only this package (and the operation modules that run SQL through it) knows about SQLAlchemy and drivers;
the models and pure policy code never import it.
"""
