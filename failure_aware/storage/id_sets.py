"""``column IN (ids)`` for long lists of ids, as one bound value.

A list of a thousand ids expanded into a thousand parameters costs SQLAlchemy (and psycopg's query
parsing) more than the statement costs to run: PostgreSQL gets one array (``= ANY(:ids)``), SQLite one
JSON list read by ``json_each``. Used where pages of ids are read or removed (export, archive).

PostgreSQL's array is sent as its text form (``{1,2,3}``) and cast by the server: psycopg dumps a Python
list element by element in Python (about 1.6 ms for a thousand ids, most of an archive page's client
time), a join of integers costs a few dozen microseconds. Only integers are joined, so the text is
nothing but digits, signs and commas.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, bindparam, func, select, text
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import JSON, BigInteger, UserDefinedType


def among(conn: Connection, column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
    """``column`` is one of ``ids`` (integers), with the list bound as one value."""
    if conn.dialect.name == "postgresql":
        listed = bindparam("ids", list(ids), type_=_IdArrayText())
        return cast(ColumnElement[bool], column == func.any(sql_cast(listed, ARRAY(BigInteger))))
    values = select(text("value")).select_from(func.json_each(bindparam("ids", list(ids), type_=JSON)))
    return cast(ColumnElement[bool], column.in_(values.scalar_subquery()))


class _IdArrayText(UserDefinedType[list[int]]):
    """A list of integers bound as PostgreSQL's array text form (see the module docstring)."""

    cache_ok = True

    def get_col_spec(self, **_kw: Any) -> str:
        return "BIGINT[]"

    def bind_processor(self, dialect: Any) -> Any:
        return lambda ids: "{" + ",".join(str(int(i)) for i in ids) + "}"
