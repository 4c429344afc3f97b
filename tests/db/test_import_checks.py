"""The importer's fast checking path, its spool and its bulk writer (SPEC section 8).

``records.Checker`` checks the common record shape inline and hands anything else to ``parse_record``. The
property here: for any record, valid or not, it gives exactly what ``parse_record`` gives (the same plain
record, or a ``ValidationError`` with the same message), with ``next_retry_at`` computed where it does not
depend on the event id. The writer's paths (keys that exist, ids across queries, driver errors) run on
both backends.
"""

from __future__ import annotations

import gc
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from failure_aware import Ledger, StorageError, ValidationError
from failure_aware.config import Config
from failure_aware.domain import validation
from failure_aware.domain.policy import PolicySet
from failure_aware.events import counters
from failure_aware.interchange import history, importer, records
from failure_aware.interchange.forms import FAILED, ImportContext, to_plain
from failure_aware.interchange.spool import WRITE_BATCH, Spool
from failure_aware.storage import bulk
from failure_aware.storage.tables import event_detected

BASE = datetime(2026, 1, 2, 4, 0, tzinfo=UTC)
POLICIES = PolicySet.from_mapping(
    {
        "max_attempts": 3,
        "non_retryable": ["FatalError"],
        "types": {"jit.ter": {"jitter": "full", "max_attempts": 4}, "sch.ed": {"backoff": "fixed"}},
    }
)
CONTEXT = ImportContext(
    now_us=1_767_326_400_000_000, actor="import", max_payload_bytes=64, policies=POLICIES,
    latest_us=1_767_326_400_000_000 + 300_000_000,
)  # a small payload limit, so that the size check is exercised (in characters and in UTF-8 bytes)


def t(seconds: float) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def reference(raw: Any, number: int) -> tuple[Any, ...]:
    """What the full checks give, in the spool's form, with the retry time of a policy without jitter."""
    record = records.parse_record(raw, CONTEXT, number)
    next_retry = record.next_retry_at_us
    policy = POLICIES.for_type(record.event_type)
    if next_retry is None and record.state == FAILED and policy.jitter == "none":
        next_retry = history.next_retry_us(policy, record.budget_failures, record.attempts[-1].at_us, 1)
    return (*to_plain(record)[:8], next_retry, record.budget_failures)


def outcome(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except ValidationError as exc:
        return "invalid", str(exc)


def without_random_key(raw: Any, result: tuple[str, Any]) -> tuple[str, Any]:
    """A record without a key gets a random one: compare the rest (and that it is one)."""
    kind, value = result
    if kind == "ok" and isinstance(raw, dict) and raw.get("key") is None:
        assert isinstance(value[2], str) and len(value[2]) == 32
        return kind, (*value[:2], "<random>", *value[3:])
    return result


def plain_failed(**extra: Any) -> dict[str, Any]:
    record = {
        "event_type": "pay.hook",
        "key": "evt_1",
        "detected_at": t(0),
        "payload": {"order": 1},
        "attempts": [
            {"at": t(5), "outcome": "failed", "error_type": "TimeoutError", "error": "upstream timed out"}
        ],
    }
    return {**record, **extra}


# -- the property -----------------------------------------------------------------------------------------
TIMES = st.one_of(
    st.sampled_from([t(0), t(5), t(60), t(3600)]),
    st.sampled_from(
        [
            "2026-01-02T06:00:05+02:00",  # an offset: the same moment as t(5)
            "2026-01-02T04:00:05.250000Z",
            "2026-01-02T04:00:05",  # no zone: refused
            " 2026-01-02T04:00:05Z ",  # spaces: the full check strips them
            "2026-01-02 04:00:05Z",
            "20260102T040005Z",
            "9999-01-01T00:00:00Z",  # after now + max_clock_skew: refused
            "1969-12-31T23:59:59Z",  # before 1970: refused
            "0001-01-01T05:00:00+14:00",  # before the year 1 in UTC: refused
            "yesterday",
            "",
        ]
    ),
    st.sampled_from([None, 5, 1.5, ["t"]]),
)
NAMES = st.sampled_from(["ops", "bob", "", "  ", "x" * 200, "x" * 201, None, 7, "a\x00b", "caf\udce9"])
ERROR_TYPES = st.sampled_from(["TimeoutError", "FatalError", "", " ", "E" * 201, None, 3, " E ", "E\x00"])
ERRORS = st.sampled_from(["upstream timed out after 30s", "", "e" * 70_000, None, 5, "order 42 failed",
                          "cannot open caf\udce9.txt", "bad\x00byte"])
PAYLOADS = st.one_of(
    st.sampled_from(
        [
            {},
            {"a": 1},
            {"s": "é" * 5},  # short in characters and bytes
            {"s": "é" * 20},  # within the limit in characters, over it in UTF-8 bytes
            {"s": "x" * 70},  # over the limit
            {"f": 1.5, "n": None, "b": True, "l": [1, "two"], "d": {"k": "ü"}},
            {1: "int key"},
            {"bad": float("nan")},
            {"bad": float("inf")},
            {"bad": {1, 2}},
            {"bad": datetime(2026, 1, 1)},
            [1, 2],
            "text",
            None,
        ]
    ),
    st.dictionaries(
        st.text(max_size=4), st.one_of(st.integers(), st.text(max_size=6), st.floats()), max_size=3
    ),
)


def maybe(field: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``{field: value}`` or nothing."""
    return st.one_of(st.just({}), values.map(lambda value: {field: value}))


def rarely(field: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``{field: value}`` one time in four, else nothing."""
    return st.integers(0, 3).flatmap(lambda n: maybe(field, values) if n == 0 else st.just({}))


def merged(*parts: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(*parts).map(lambda dicts: {k: v for d in dicts for k, v in d.items()})


ATTEMPTS = merged(
    st.one_of(st.just({"at": t(10)}), maybe("at", TIMES)),
    st.one_of(
        st.just({"outcome": "failed"}),
        maybe("outcome", st.sampled_from(["failed", "succeeded", "abandoned", "maybe", None, 1])),
    ),
    maybe("started_at", TIMES),
    maybe("error_type", ERROR_TYPES),
    maybe("error", ERRORS),
    maybe("forced", st.sampled_from([True, False, None, 1, "yes"])),
    maybe("actor", NAMES),
    maybe("why", st.just("unknown field")),
)
ANNOTATIONS = merged(
    maybe("at", TIMES),
    maybe("author", NAMES),
    maybe("text", st.sampled_from(["provider incident", "", " ", "n" * 70_000, None, 4])),
    maybe("colour", st.just("red")),
)
RECORDS = merged(
    st.one_of(
        st.just({"event_type": "pay.hook"}),
        maybe("event_type", st.sampled_from(["pay.hook", "jit.ter", "sch.ed", "bad type", "", "t" * 201, 5])),
    ),
    maybe("key", st.sampled_from(["evt_1", "", "k" * 500, "k" * 501, 7])),
    maybe("detected_at", TIMES),
    maybe("payload", PAYLOADS),
    maybe(
        "attempts",
        st.one_of(st.lists(ATTEMPTS, max_size=5), st.sampled_from([None, [], (), "no", {"at": t(1)}, [5]])),
    ),
    maybe("annotations", st.one_of(st.lists(ANNOTATIONS, max_size=2), st.sampled_from(["no", [3]]))),
    maybe("state", st.sampled_from(["PENDING", "FAILED", "DEAD", "SUCCEEDED", "IN_FLIGHT", "NOPE", 4])),
    maybe("next_retry_at", TIMES),
    maybe(
        "transitions",
        st.sampled_from([[{"at": t(0), "from_state": None, "to_state": "PENDING"}], [], "no"]),
    ),
    maybe("colour", st.just("red")),
)


@st.composite
def likely_valid(draw: st.DrawFn) -> dict[str, Any]:
    """Records of the common shape, valid values only (some still invalid as a whole: a wrong state, an
    attempt after DEAD, a retry time out of range)."""
    record: dict[str, Any] = {"event_type": draw(st.sampled_from(["pay.hook", "jit.ter", "sch.ed"]))}
    record |= draw(maybe("key", st.sampled_from(["evt_1", "k" * 500])))
    record |= draw(maybe("detected_at", st.just(t(0))))
    record |= draw(maybe("payload", st.sampled_from([{}, {"a": 1}, {"s": "é" * 5}, None])))
    at = 0
    attempts = []
    for _ in range(draw(st.integers(0, 4))):
        at += draw(st.sampled_from([0, 1, 30]))
        result = draw(st.sampled_from(["failed", "failed", "abandoned", "succeeded"]))
        item: dict[str, Any] = {"at": t(at), "outcome": result}
        if result != "succeeded":
            item |= draw(maybe("error_type", st.sampled_from(["TimeoutError", "FatalError"])))
            item |= draw(maybe("error", st.sampled_from(["upstream timed out after 30s", ""])))
        item |= draw(maybe("started_at", st.sampled_from([t(at), t(at - 1)])))
        item |= draw(maybe("forced", st.booleans()))
        item |= draw(maybe("actor", st.sampled_from(["w1", None])))
        attempts.append(item)
    record |= draw(maybe("attempts", st.just(attempts)))
    record |= draw(maybe("annotations", st.just([{"at": t(1), "author": "ops", "text": "incident"}])))
    record |= draw(rarely("state", st.sampled_from(["PENDING", "FAILED", "DEAD", "SUCCEEDED", "IN_FLIGHT"])))
    record |= draw(rarely("next_retry_at", st.sampled_from([t(at), t(at + 50), t(at + 400 * 86400)])))
    return record


@st.composite
def valid_record(draw: st.DrawFn) -> dict[str, Any]:
    """A valid record of the common shape (nothing follows SUCCEEDED or DEAD: at most 3 attempts, the
    non-retryable error type and the success only last)."""
    record: dict[str, Any] = {"event_type": draw(st.sampled_from(["pay.hook", "jit.ter", "sch.ed"]))}
    record |= draw(maybe("key", st.sampled_from(["evt_1", "k" * 500])))
    record |= draw(maybe("detected_at", st.just(t(0))))
    record |= draw(maybe("payload", st.sampled_from([{}, {"a": 1}, {"s": "é" * 5}, None])))
    count = draw(st.integers(0, 3))
    attempts = []
    for number in range(1, count + 1):
        last = number == count
        result = draw(st.sampled_from(["failed", "abandoned", *(["succeeded"] if last else [])]))
        item: dict[str, Any] = {"at": t(5 * number), "outcome": result}
        if result != "succeeded":
            item |= draw(
                maybe("error_type", st.sampled_from(["TimeoutError", *(["FatalError"] if last else [])]))
            )
            item |= draw(maybe("error", st.sampled_from(["upstream timed out after 30s", ""])))
        item |= draw(maybe("started_at", st.sampled_from([t(5 * number), t(5 * number - 1)])))
        item |= draw(maybe("forced", st.booleans()))
        item |= draw(maybe("actor", st.sampled_from(["w1", None])))
        attempts.append(item)
    record |= draw(maybe("attempts", st.just(attempts)))
    record |= draw(maybe("annotations", st.just([{"at": t(1), "author": "ops", "text": "incident"}])))
    return record


# One defect each, for ``one_defect``: (where, field, bad value). "attempt" and "note" apply to a random
# attempt or annotation (one is added if there is none); "record" to the record itself.
DEFECTS = [
    *(("record", "event_type", bad) for bad in ("bad type", "", "t" * 201, 5, None)),
    *(("record", "key", bad) for bad in ("", "k" * 501, 7)),
    *(("record", "detected_at", bad) for bad in ("2026-01-02T04:00:00", "9999-01-01T00:00:00Z", 5, t(9000))),
    *(
        ("record", "payload", bad)
        for bad in ({"s": "é" * 20}, {"x": "x" * 70}, [1], "p", {"n": float("nan")})
    ),
    *(("record", "attempts", bad) for bad in ("no", {"at": t(1)}, [5], ())),
    *(("record", "annotations", bad) for bad in ("no", [3], ())),
    *(("record", "state", bad) for bad in ("NOPE", 4, "PENDING", "DEAD", "IN_FLIGHT")),
    *(("record", "next_retry_at", bad) for bad in (t(-1), t(400 * 86400), "2026-01-02T04:00:00", 3)),
    ("record", "colour", "red"),
    *(("attempt", "at", bad) for bad in (t(-5), "2026-01-02T04:00:05", "9999-01-01T00:00:00Z", None, 5)),
    *(("attempt", "outcome", bad) for bad in ("maybe", None, 1)),
    *(("attempt", "started_at", bad) for bad in (t(99_999), "2026-01-02T04:00:00", 5)),
    *(("attempt", "error_type", bad) for bad in ("", " ", "E" * 201, 3)),
    *(("attempt", "error", bad) for bad in ("e" * 70_000, 5)),
    *(("attempt", "forced", bad) for bad in (None, 1, "yes")),
    *(("attempt", "actor", bad) for bad in ("", "  ", "a" * 201, 7)),
    ("attempt", "outcome+error", ("succeeded", "boom")),
    ("attempt", "why", "unknown field"),
    *(("note", "at", bad) for bad in ("2026-01-02T04:00:00", None, 5)),
    *(("note", "author", bad) for bad in ("", " ", "a" * 201, None, 7)),
    *(("note", "text", bad) for bad in ("", " ", "n" * 70_000, None, 4)),
    ("note", "colour", "red"),
    ("note", "-text", None),  # a missing field
]


def with_defect(record: dict[str, Any], defect: tuple[str, str, Any], index: int = -1) -> dict[str, Any]:
    """``record`` with one thing wrong: ``defect`` of ``DEFECTS``, on its attempt or annotation ``index``."""
    record = dict(record)
    where, field, bad = defect
    if where == "record":
        record[field] = bad
        return record
    kind = "attempts" if where == "attempt" else "annotations"
    items = list(record.get(kind) or [])
    if not items:
        items = [
            {"at": t(5), "outcome": "failed"}
            if kind == "attempts"
            else {"at": t(1), "author": "a", "text": "b"}
        ]
    index %= len(items)
    item = dict(items[index])
    if field == "outcome+error":
        item["outcome"], item["error"] = bad
    elif field.startswith("-"):
        item.pop(field[1:], None)
    else:
        item[field] = bad
    items[index] = item
    record[kind] = items
    return record


@st.composite
def one_defect(draw: st.DrawFn) -> dict[str, Any]:
    """A valid record with exactly one thing wrong: the fast path must not accept it unless the full
    checks do (a "wrong" state may happen to be the right one, a late time may still be in order)."""
    return with_defect(draw(valid_record()), draw(st.sampled_from(DEFECTS)), draw(st.integers(0, 3)))


BASES = [
    {"event_type": "pay.hook"},
    plain_failed(),
    plain_failed(
        event_type="jit.ter",
        attempts=[
            {"at": t(5), "outcome": "failed", "error_type": "TimeoutError", "error": "x", "actor": "w1"},
            {"at": t(9), "outcome": "abandoned", "started_at": t(8), "forced": True},
            {"at": t(20), "outcome": "succeeded"},
        ],
        annotations=[{"at": t(9), "author": "ops", "text": "incident"}],
    ),
]


@pytest.mark.parametrize("defect", DEFECTS, ids=[f"{w}.{f}={v!r:.20}" for w, f, v in DEFECTS])
def test_each_defect_is_judged_as_the_full_checks_judge_it(defect: tuple[str, str, Any]) -> None:
    for base in BASES:
        for index in (0, -1):
            raw = with_defect(base, defect, index)
            expected = without_random_key(raw, outcome(lambda raw=raw: reference(raw, 3)))
            got = without_random_key(raw, outcome(lambda raw=raw: records.Checker(CONTEXT).plain(raw, 3)))
            assert got == expected, raw


@given(raw=st.one_of(RECORDS, likely_valid(), one_defect(), one_defect(), st.sampled_from([None, [], 3])))
@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(raw={"event_type": "pay.hook", "detected_at": t(0), "attempts": [{"at": t(5), "outcome": "failed"}]})
@example(raw={"event_type": "sch.ed", "attempts": [{"at": t(5), "outcome": "failed"}]})  # detected now: late
@example(
    raw={
        "event_type": "pay.hook",
        "detected_at": t(0),
        "attempts": [{"at": t(5), "outcome": "failed"}],
        "state": "FAILED",
        "next_retry_at": t(50),
    }
)
def test_checker_gives_what_the_full_checks_give(raw: Any) -> None:
    expected = without_random_key(raw, outcome(lambda: reference(raw, 7)))
    got = without_random_key(raw, outcome(lambda: records.Checker(CONTEXT).plain(raw, 7)))
    assert got == expected


COMMON_SHAPES = {
    "one failure": plain_failed(),
    "no attempts, no key, no time": {"event_type": "pay.hook"},
    "success after failures": plain_failed(
        attempts=[
            {"at": t(5), "outcome": "failed", "error": "x", "actor": "w1", "forced": True},
            {"at": t(9), "outcome": "succeeded", "started_at": t(8)},
        ]
    ),
    "dead by the policy": plain_failed(attempts=[{"at": t(n), "outcome": "failed"} for n in (1, 2, 3)]),
    "abandoned": plain_failed(attempts=[{"at": t(5), "outcome": "abandoned", "started_at": t(4)}]),
    "state and next_retry_at given": plain_failed(state="FAILED", next_retry_at=t(50)),
    "annotations": plain_failed(annotations=[{"at": t(9), "author": "ops", "text": "incident"}]),
    "jitter": plain_failed(event_type="jit.ter"),
}


@pytest.mark.parametrize("case", sorted(COMMON_SHAPES))
def test_common_shapes_take_the_fast_path(case: str) -> None:
    raw = COMMON_SHAPES[case]
    fast = records.Checker(CONTEXT)._fast(raw, 1)
    assert fast is not None, "the fast path refused a common record"
    assert without_random_key(raw, ("ok", fast)) == without_random_key(raw, ("ok", reference(raw, 1)))
    if raw["event_type"] == "jit.ter":  # the retry time depends on the event id: left to the writer
        assert fast[8] is None


def test_payload_encoding_matches_validation() -> None:
    checker = records.Checker(CONTEXT)
    for payload in ({}, {"a": [1, 2.5, None, True]}, {"ü": 'é\n"q"'}, {2: 1.0e300}, {"x": -0.0}):
        assert checker._fast_payload(payload) == validation.payload(payload, 64)[1]
    looped: dict[str, Any] = {}
    looped["self"] = looped
    assert checker._fast_payload(looped) is None  # refused here; the full check names the problem
    assert checker._fast_payload({"a": 1}) == '{"a":1}'  # and the encoder still works afterwards
    with pytest.raises(ValidationError, match="not JSON-serializable"):
        records.Checker(CONTEXT).plain({"event_type": "pay.hook", "payload": looped}, 1)


def test_fixed_retry_delay_is_the_policy_delay() -> None:
    for event_type, expected in (("pay.hook", 10_000_000 * 3), ("sch.ed", 10_000_000), ("jit.ter", None)):
        assert history.fixed_delay_us(POLICIES.for_type(event_type), 2) == expected


# -- the spool ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [0, 1, WRITE_BATCH, WRITE_BATCH + 1, 5 * WRITE_BATCH + 7])
def test_spool_reads_back_in_any_chunk_size_and_again(count: int) -> None:
    spool = Spool(chunk_size=2 * WRITE_BATCH)
    parked = [(n, "type", f"key{n}", (("a", None),), ()) for n in range(count)]
    for record in parked:
        spool.add(record)
    for size in (None, 1000, 3 * WRITE_BATCH):
        chunks = list(spool.chunks(size))
        assert [r for chunk in chunks for r in chunk] == parked
        wanted = size or 2 * WRITE_BATCH
        assert all(len(chunk) == wanted for chunk in chunks[:-1])
    spool.close()


def test_spool_leaves_the_garbage_collector_as_it_found_it() -> None:
    spool = Spool()
    spool.add((1, "a"))
    assert gc.isenabled()
    assert list(spool.chunks()) == [[(1, "a")]]
    assert gc.isenabled()
    gc.disable()
    try:
        assert list(spool.chunks()) == [[(1, "a")]]
        assert not gc.isenabled()
    finally:
        gc.enable()
    spool.close()


# -- the writer, on both backends ---------------------------------------------------------------------------
@pytest.fixture
def ledger(db_url: str) -> Any:
    with Ledger(db_url, config=Config(policies=POLICIES)) as opened:
        yield opened


def failed(n: int, event_type: str = "pay.hook") -> dict[str, Any]:
    return {
        "event_type": event_type,
        "key": f"k{n}",
        "detected_at": t(n),
        "attempts": [{"at": t(n + 5), "outcome": "failed", "error": f"order {n % 7} timed out"}],
    }


def test_existing_keys_interleaved_across_queries(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "KEYS_PER_QUERY", 300)
    monkeypatch.setattr(importer, "ROWS_CHUNK", 200)
    first = [failed(n, ("pay.hook", "jit.ter")[n % 2]) for n in range(0, 2000, 3)]
    ledger.import_events(first)
    everything = [failed(n, ("pay.hook", "jit.ter")[n % 2]) for n in range(2000)]
    everything[5]["annotations"] = [{"at": t(9), "author": "ops", "text": "note"}]
    everything[6]["annotations"] = [{"at": t(9), "author": "ops", "text": "on an existing event"}]
    report = ledger.import_events(everything)
    assert (report.imported, report.skipped_existing) == (2000 - len(first), len(first))
    assert (report.attempts, report.annotations) == (2000 - len(first), 1)
    with ledger.store.read() as conn:
        assert sum(counters.stored(conn).values()) == 2000
        keys = dict(conn.execute(sa.select(event_detected.c.key, event_detected.c.id)).all())
    assert len(keys) == 2000
    assert ledger.verify().ok
    shown = ledger.show(keys["k5"])
    assert [a.text for a in shown.annotations] == ["note"]
    assert ledger.show(keys["k6"]).annotations == ()
    assert ledger.import_events(everything).skipped_existing == 2000


def test_jittered_retry_times_come_from_the_new_ids(ledger: Ledger) -> None:
    ledger.import_events([failed(n, "jit.ter") for n in range(50)] + [failed(n + 50) for n in range(50)])
    policy, plain = POLICIES.for_type("jit.ter"), POLICIES.for_type("pay.hook")
    for event in ledger.events(limit=200):
        at_us = ledger.show(event.id).attempts[-1].at
        delay = (event.next_retry_at - at_us).total_seconds()
        if event.event_type == "jit.ter":
            assert math.isclose(delay, history.next_retry_us(policy, 1, 0, event.id) / 1e6, abs_tol=1e-6)
        else:
            assert delay == history.next_retry_us(plain, 1, 0, event.id) / 1e6 == 10
    assert ledger.verify().ok


def test_a_driver_error_while_writing_is_a_storage_error(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.import_events([failed(1)])
    # Pretend the key was not there (as when another process writes it meanwhile).
    monkeypatch.setattr(bulk, "existing_keys", lambda conn, pairs: set())
    monkeypatch.setattr(bulk, "alone_in_empty_database", lambda conn: False)
    if ledger.store.dialect == "postgresql":  # it can happen there: the key is skipped and counted (SPEC 14)
        report = ledger.import_events([failed(2), failed(1)])
        assert (report.imported, report.skipped_existing) == (1, 1)
        assert sorted(e.key for e in ledger.events()) == ["k1", "k2"] and ledger.verify().ok
        return
    with pytest.raises(StorageError):  # SQLite: it cannot happen (the write lock); if it did, nothing lands
        ledger.import_events([failed(2), failed(1)])
    assert [e.key for e in ledger.events()] == ["k1"]


def test_import_of_a_file_takes_the_same_path(ledger: Ledger, tmp_path: Any) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(failed(n)) + "\n" for n in range(30)), encoding="utf-8")
    report = ledger.import_file(path)
    assert (report.imported, report.attempts) == (30, 30)
    assert ledger.verify().ok
