"""The correlation horizon (SPEC 15): failures before it are not clustered any more.

An archive moves it to its ``--before`` before it removes anything, in one transaction with a rebuild of
the clusters (when ``correlate`` has run before), so the stored clusters equal a rebuild at every moment:
before the horizon nothing is computed, and what the archive removes afterwards lies before it. The
horizon only moves forward and is one for all event types (a cluster straddling it is computed from
the failures at or after it).
"""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update

from failure_aware.correlation import engine
from failure_aware.storage.tables import retention_horizon


def current(conn: Connection) -> int:
    """The horizon in microseconds (0 before any archive)."""
    found = conn.execute(select(retention_horizon.c.horizon_us).where(retention_horizon.c.id == 1)).scalar()
    return int(found or 0)


def advance(conn: Connection, horizon_us: int, now_us: int, *, watermark: int | None) -> bool:
    """Move the horizon to ``horizon_us`` (never back) and rebuild the clusters behind it; call it in a
    write transaction begun like a correlate (``engine.begin``). Returns whether clusters were rebuilt."""
    was = conn.execute(select(retention_horizon.c.horizon_us).where(retention_horizon.c.id == 1)).scalar()
    if was is None:
        conn.execute(insert(retention_horizon).values(id=1, horizon_us=horizon_us, updated_at_us=now_us))
    elif horizon_us > int(was):
        conn.execute(update(retention_horizon).where(retention_horizon.c.id == 1)
                     .values(horizon_us=horizon_us, updated_at_us=now_us))
    else:
        return False
    rule = engine.stored_rule(conn)
    if rule is None:
        return False  # never correlated: nothing stored to keep in step
    engine.correlate(conn, rule, now_us, rebuild=True, watermark=watermark)
    return True
