"""``column IN (ids)`` for long lists of ids, as one bound value.

A list of a thousand ids expanded into a thousand parameters costs SQLAlchemy (and psycopg's query
parsing) more than the statement costs to run: PostgreSQL gets one array (``= ANY(:ids)``), SQLite one
JSON list read by ``json_each``. Used where pages of ids are read or removed (export, archive).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import JSON, BigInteger


def among(conn: Connection, column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
    """``column`` is one of ``ids`` (integers), with the list bound as one value."""
    if conn.dialect.name == "postgresql":
        listed = bindparam("ids", list(ids), type_=ARRAY(BigInteger))
        return cast(ColumnElement[bool], column == func.any(listed))
    values = select(text("value")).select_from(func.json_each(bindparam("ids", list(ids), type_=JSON)))
    return cast(ColumnElement[bool], column.in_(values.scalar_subquery()))
