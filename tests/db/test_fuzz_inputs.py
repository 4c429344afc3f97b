"""Fuzzing the ways in (SPEC 3): detect, report, annotate and import driven with arbitrary text (NUL, lone
surrogates, control characters), numbers (past 2**63 too) and times (year 1 to 9999, any offset, naive).

Whatever comes in: only errors of the ``FailureAwareError`` tree, a refused call writes nothing, and the
reads (``events``, ``show``, ``health``, ``export``) keep working; what got in exports and imports again
and ``verify`` stays clean.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import FakeClock, drop_database, make_database, require_postgres
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failure_aware import FailureAwareError, Ledger
from failure_aware.config import Config
from failure_aware.storage.tables import HISTORY_TABLES

NOW = datetime(2026, 1, 2, 4, 0, tzinfo=UTC)

ANY_CHAR = st.characters(exclude_categories=())  # surrogates, controls and NUL included
TEXT = st.one_of(
    st.text(ANY_CHAR, max_size=12),
    st.sampled_from(["pay.hook", "ok", "  ", "", "caf\udce9", "bad\x00byte", "\x1b[31mRED", "\u202eevil"]),
)
def mostly(good: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` four times in five, else ``other``: plenty gets in, and has to come out again."""
    return st.integers(0, 4).flatmap(lambda n: good if n else other)


TYPES = st.sampled_from(["pay.hook", "job.sync", "a:b/c-d_e.f"])
NAMES = mostly(TYPES, TEXT)
KEYS = mostly(st.one_of(st.none(), st.text(ANY_CHAR, min_size=1, max_size=8)), TEXT)
NUMBERS = st.one_of(st.integers(-3, 12), st.integers(2**63 - 2, 2**64), st.integers(), st.floats())
IDS = mostly(st.integers(1, 8), NUMBERS)
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))])
RECENT = st.datetimes(min_value=datetime(2026, 1, 1, 12), max_value=datetime(2026, 1, 2, 4), timezones=ZONES)
TIMES = mostly(st.one_of(st.none(), RECENT), st.one_of(
    st.datetimes(min_value=datetime(2026, 1, 2, 3), max_value=datetime(2026, 1, 2, 4, 10), timezones=ZONES),
    st.datetimes(timezones=ZONES),  # year 1 to 9999
    st.datetimes(),  # naive
))
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=8,
)
DICTS = st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=4)
OBJECTS = mostly(st.one_of(st.none(), DICTS), st.one_of(st.dictionaries(TEXT, JSON_VALUES, max_size=4),
                                                      JSON_VALUES))


def _iso(moment: Any) -> Any:
    return moment.isoformat() if isinstance(moment, datetime) else moment


OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("detect"), NAMES, OBJECTS, KEYS, TIMES),
    st.tuples(st.just("report"), IDS, st.booleans(), st.one_of(st.none(), TEXT), st.one_of(st.none(), TEXT),
              TIMES, st.booleans(), st.one_of(st.none(), NUMBERS, TIMES), OBJECTS,
              mostly(st.just(False), st.just(True))),
    st.tuples(st.just("annotate"), IDS, TEXT, st.one_of(st.none(), TEXT)),
    st.tuples(st.just("import"), NAMES, KEYS, TIMES, OBJECTS, st.one_of(st.integers(0, 10**6), NUMBERS),
              st.sampled_from(["failed", "succeeded", "abandoned", "lost"]), st.one_of(st.none(), TEXT),
              TEXT, st.booleans()),
), min_size=1, max_size=6)


def history_counts(ledger: Ledger) -> tuple[int, ...]:
    with ledger.store.read() as conn:
        return tuple(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                     for table in HISTORY_TABLES)


def apply(ledger: Ledger, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "detect":
        _, event_type, payload, key, at = op
        ledger.detect(event_type, payload, key=key, at=at)
    elif kind == "report":
        _, event_id, ok, error_type, error, at, permanent, retry_after, detail, messy = op
        if ok and not messy:  # a success says nothing of failures (it may, and is refused: messy)
            error_type = error = retry_after = None
            permanent = False
        ledger.report(event_id, ok, error_type=error_type, error=error, at=at, permanent=permanent,
                      retry_after=retry_after, detail=detail, force=True)
    elif kind == "annotate":
        _, event_id, text, author = op
        ledger.annotate(event_id, text, author=author)
    else:
        _, event_type, key, detected, payload, gap, outcome, error, note, as_file = op
        at: Any = gap
        if isinstance(detected, datetime) and isinstance(gap, int) and 0 <= gap <= 10**6:
            at = detected + timedelta(microseconds=gap)
        attempt = {"at": _iso(at), "outcome": outcome, "error": None if outcome == "succeeded" else error}
        record = {"event_type": event_type, "key": key, "detected_at": _iso(detected), "payload": payload,
                  "attempts": [attempt], "annotations": [{"at": _iso(at), "author": "ops", "text": note}]}
        if as_file:  # the JSON Lines path: json escapes lone surrogates, which come back as they were
            ledger.import_file(io.StringIO(json.dumps(record, default=str) + "\n"))
        else:
            ledger.import_events([record])


def reads_work(ledger: Ledger) -> list[dict[str, Any]]:
    events = ledger.events(limit=20)
    for event in events[:5]:
        ledger.show(event.id)
    ledger.health()
    return list(ledger.export_events())


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_arbitrary_input_never_harms_the_ledger(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if backend == "postgresql":
        require_postgres()
    url, token = make_database(backend, tmp_path_factory)
    clock = FakeClock(NOW)
    ledger = Ledger(url, config=Config(), clock=clock)

    @settings(max_examples=60 if backend == "sqlite" else 20, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(ops=OPERATIONS)
    def fuzz(ops: list[tuple[Any, ...]]) -> None:
        for op in ops:
            before = history_counts(ledger)
            try:
                apply(ledger, op)
            except FailureAwareError:
                assert history_counts(ledger) == before, f"{op[0]} was refused but wrote something"
            clock.advance(1)
        reads_work(ledger)

    try:
        fuzz()
        exported = reads_work(ledger)
        report = ledger.verify()
        assert report.ok, report.problems
        clock.advance(3600)  # the copy is made later: every exported time lies in its past
        copy_url, copy_token = make_database(backend, tmp_path_factory)
        try:
            with Ledger(copy_url, config=Config(), clock=clock) as copy:
                text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in exported)
                copy.import_file(io.BytesIO(text.encode("utf-8")))
                assert list(copy.export_events()) == exported
                assert copy.verify().ok
        finally:
            drop_database(copy_token)
    finally:
        ledger.close()
        drop_database(token)
