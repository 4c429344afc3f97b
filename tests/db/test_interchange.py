"""JSON Lines import and export (SPEC section 8) on SQLite and PostgreSQL.

The round trip is a property: random histories made through the Ledger API (reports, claims, recoveries,
forced retries, bury, revive, notes) are exported, imported into a fresh database and exported again; both
exports, every event's story and the counters must agree, and the imported database must pass ``verify``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import FakeClock, drop_database, make_database, require_postgres
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failure_aware import FailureAwareError, Ledger, State, ValidationError
from failure_aware.config import Config
from failure_aware.domain.outcomes import HandlerFailure, Succeeded
from failure_aware.domain.policy import PolicySet
from failure_aware.events import counters
from failure_aware.storage.tables import HISTORY_TABLES, event_state, state_count

BASE = datetime(2026, 1, 2, 4, 0, tzinfo=UTC)
# Small budgets so histories reach DEAD quickly; full jitter on one type, so a retry time depends on the
# event id (which an import may change): the export must carry next_retry_at for the round trip to hold.
POLICIES = PolicySet.from_mapping(
    {
        "max_attempts": 3,
        "non_retryable": ["FatalError"],
        "types": {"jit.ter": {"jitter": "full", "max_attempts": 4}},
    }
)
CONFIG = Config(policies=POLICIES)
TYPES = ("pay.hook", "jit.ter")
FILLER = "filler"
ERRORS = (
    ("TimeoutError", "upstream timed out after 30s"),
    ("FatalError", "bad request 400"),
    (None, "connection reset by peer 10.0.0.7"),
    ("TimeoutError", None),
)


def t(seconds: float) -> str:
    """An RFC 3339 time ``seconds`` after BASE."""
    return (BASE + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def table_counts(ledger: Ledger) -> dict[str, int]:
    """Rows in every history table and in the projection and counters."""
    with ledger.store.read() as conn:
        return {
            table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (*HISTORY_TABLES, event_state, state_count)
        }


def story(ledger: Ledger, without: str | None = None) -> list[dict[str, Any]]:
    """Every event's full story as ``show`` tells it, without what an import legitimately changes."""
    told = []
    for event in ledger.iter_events():
        if event.event_type == without:
            continue
        detail = ledger.show(event.id).as_dict()
        for name in ("id", "updated_at", "lease_expires_at"):
            detail["event"].pop(name)
        for item in (*detail["attempts"], *detail["transitions"], *detail["annotations"]):
            item.pop("event_id", None)
            item.pop("id", None)
        told.append(detail)
    return told


@pytest.fixture
def ledger(db_url: str, clock: FakeClock) -> Iterator[Ledger]:
    """A ledger with the small test policies (overrides conftest's default-config ledger), its clock a
    day after BASE: imported history lies in the past (times after now + max_clock_skew are refused)."""
    clock.now = BASE + timedelta(days=1)
    with Ledger(db_url, config=CONFIG, clock=clock) as opened:
        yield opened


def import_text(ledger: Ledger, text: str, **options: Any) -> Any:
    return ledger.import_file(io.StringIO(text), **options)


def lines(*records: dict[str, Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


# -- round trip ------------------------------------------------------------------------------------------
KINDS = (
    "report",
    "report",
    "report",
    "claim",
    "claim",
    "finish",
    "recover",
    "recover",
    "bury",
    "bury",
    "revive",
    "revive",
    "annotate",
    "wait",
    "wait",
    "wait",
    "detect",
    "run",
    "note_cluster",
)
operations = st.tuples(
    st.lists(st.tuples(st.sampled_from(TYPES), st.booleans()), min_size=1, max_size=4),  # the events
    st.lists(  # then what happens to them: (kind, which event, ok, which error, force, seconds to wait)
        st.tuples(
            st.sampled_from(KINDS),
            st.integers(0, 5),
            st.booleans(),
            st.integers(0, 3),
            st.booleans(),
            st.sampled_from([0.5, 5, 40, 400, 4000]),
        ),
        min_size=8,
        max_size=40,
    ),
)


def _handler(ok: bool, permanent: bool, retry_after: float, n: int) -> Any:
    def handler(event: Any) -> Any:
        if ok:
            return Succeeded(detail={"status": 200, "n": n})
        raise HandlerFailure("upstream said no", error_type="HTTP503", permanent=permanent,
                             retry_after=retry_after, detail={"status": 503, "body": "busy \u00e9"})

    return handler


def play(ledger: Ledger, clock: FakeClock, ops: tuple[list[Any], list[Any]]) -> None:
    """Apply the operations; those the state machine refuses are refused (and write nothing)."""
    detections, steps = ops
    ids: list[int] = []
    claims: dict[int, Any] = {}

    def detect(event_type: str, keyed: bool) -> None:
        ids.append(ledger.detect(event_type, {"n": len(ids)}, key=f"k{len(ids)}" if keyed else None).id)

    for event_type, keyed in detections:
        detect(event_type, keyed)
    for kind, index, ok, error_index, force, seconds in steps:
        event_id = ids[index % len(ids)]
        error_type, error = ERRORS[error_index]
        failure = {"error_type": error_type, "error": error}
        try:
            if kind == "detect":
                detect(TYPES[index % 2], ok)
            elif kind == "wait":
                clock.advance(seconds)
            elif kind == "report":
                ledger.report(event_id, ok, force=force, **({} if ok else failure))
            elif kind == "claim":
                claims[event_id] = ledger.claim(event_id, lease_seconds=60, force=force)
            elif kind == "finish" and event_id in claims:
                ledger.finish(claims.pop(event_id), ok, **({} if ok else failure))
            elif kind == "recover":
                ledger.recover()
            elif kind == "bury":
                ledger.bury(event_id, actor="ops")
            elif kind == "revive":
                ledger.revive(event_id, actor="ops")
            elif kind == "annotate":
                ledger.annotate(event_id, f"note {index}", author="alice")
            elif kind == "run":  # a handler's traceback, duration, detail, permanent and retry_after
                ledger.run(event_id, _handler(ok, force, seconds, index), force=force)
            elif kind == "note_cluster":
                ledger.correlate()
                for cluster in ledger.clusters()[:1]:
                    ledger.annotate_cluster(cluster.id, f"burst {index}", author="ops")
        except FailureAwareError:
            pass  # an illegal step: refused, nothing written
        clock.advance(1)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_export_import_round_trip(backend: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    if backend == "postgresql":
        require_postgres()

    @settings(
        max_examples=30 if backend == "sqlite" else 10,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(ops=operations, fillers=st.integers(0, 3))
    def round_trip(ops: tuple[list[Any], list[Any]], fillers: int) -> None:
        (source_url, source_token), (target_url, target_token) = (
            make_database(backend, tmp_path_factory),
            make_database(backend, tmp_path_factory),
        )
        clock = FakeClock(BASE)
        try:
            with (
                Ledger(source_url, config=CONFIG, clock=clock) as source,
                Ledger(target_url, config=CONFIG, clock=clock) as target,
            ):
                # Events that stay behind, so the imported events get other ids than they had: retry times
                # drawn with jitter from (event id, failure) must come over as they were, not be redrawn.
                for n in range(fillers):
                    source.detect(FILLER, key=f"f{n}")
                play(source, clock, ops)
                records = list(source.export_events())
                notes = [r for r in records if r.get("kind") == "cluster_note"]
                exported = [r for r in records if r["event_type"] != FILLER and "kind" not in r]
                text = "".join(json.dumps(r) + "\n" for r in exported + notes)
                report = import_text(target, text)
                assert report.imported == len(exported)
                assert [r for r in target.export_events() if "kind" in r] == notes  # cluster notes too
                assert report.attempts == sum(len(r["attempts"]) for r in exported)
                assert [r for r in target.export_events() if "kind" not in r] == exported
                assert story(target) == story(source, without=FILLER)
                with source.store.read() as a, target.store.read() as b:
                    moved = {k: n for k, n in counters.stored(a).items() if k[0] != FILLER}
                    assert counters.stored(b) == moved == counters.recount(b)
                assert target.verify().ok, target.verify().problems
                again = import_text(target, text)  # idempotent: every key exists now
                assert (again.imported, again.skipped_existing) == (0, len(exported))
        finally:
            drop_database(source_token)
            drop_database(target_token)

    round_trip()


def test_imported_in_flight_event_is_recovered(ledger: Ledger, clock: FakeClock) -> None:
    record = {
        "event_type": "pay.hook",
        "key": "busy",
        "detected_at": t(0),
        "transitions": [
            {"at": t(0), "from_state": None, "to_state": "PENDING", "actor": "system", "reason": "detected"},
            {
                "at": t(5),
                "from_state": "PENDING",
                "to_state": "IN_FLIGHT",
                "actor": "host:1",
                "reason": "claimed",
            },
        ],
    }
    clock.now = BASE + timedelta(seconds=10)
    ledger.import_events([record])
    event = ledger.events()[0]
    assert event.state is State.IN_FLIGHT and event.claimed_by == "host:1"
    (result,) = ledger.recover()
    assert result.state is State.FAILED and result.attempt.outcome == "abandoned"
    assert result.attempt.started_at == BASE + timedelta(seconds=5)


# -- states follow the policy ----------------------------------------------------------------------------
def failures(count: int, error_type: str = "TimeoutError", start: float = 10) -> list[dict[str, Any]]:
    return [
        {"at": t(start + 100 * i), "outcome": "failed", "error_type": error_type, "error": f"try {i}"}
        for i in range(count)
    ]


def test_states_follow_the_retry_policy(ledger: Ledger) -> None:
    report = ledger.import_events(
        [
            {"event_type": "pay.hook", "key": "dead", "detected_at": t(0), "attempts": failures(3)},
            {"event_type": "pay.hook", "key": "failed", "detected_at": t(0), "attempts": failures(2)},
            {
                "event_type": "pay.hook",
                "key": "fatal",
                "detected_at": t(0),
                "attempts": failures(1, "FatalError"),
            },
            {
                "event_type": "pay.hook",
                "key": "ok",
                "detected_at": t(0),
                "attempts": [*failures(1), {"at": t(500), "outcome": "succeeded"}],
            },
            {"event_type": "pay.hook", "key": "new", "detected_at": t(0)},
        ]
    )
    assert (report.imported, report.attempts) == (5, 8)
    by_key = {e.key: e for e in ledger.events()}
    assert by_key["dead"].state is State.DEAD  # the 3rd failure reaches max_attempts = 3
    assert by_key["fatal"].state is State.DEAD  # non-retryable at once
    assert by_key["ok"].state is State.SUCCEEDED and by_key["ok"].last_error is None
    assert by_key["new"].state is State.PENDING
    failed = by_key["failed"]
    # the 2nd failure (at 110 s) waits base * factor = 10 s * 3: retry from 140 s
    assert failed.state is State.FAILED and failed.next_retry_at == BASE + timedelta(seconds=140)
    assert (failed.last_error_type, failed.last_error, failed.attempt_count) == ("TimeoutError", "try 1", 2)
    detail = ledger.show(by_key["dead"].id)
    assert [(x.from_state, x.to_state, x.actor) for x in detail.transitions] == [
        (None, State.PENDING, "import"),
        (State.PENDING, State.FAILED, "import"),
        (State.FAILED, State.FAILED, "import"),
        (State.FAILED, State.DEAD, "import"),
    ]
    assert detail.transitions[2].reason == "imported: attempt 2 failed"
    assert all(a.fingerprint for a in detail.attempts)
    assert ledger.due(limit=10)[0].key == "new"  # PENDING is due from its detection
    assert ledger.verify().ok


def test_detect_report_and_import_give_the_same_state(ledger: Ledger, clock: FakeClock) -> None:
    clock.now = BASE
    event = ledger.detect("jit.ter", key="live")
    for i in range(2):
        clock.advance(1000)
        ledger.report(event.id, False, error_type="TimeoutError", error=f"try {i}")
    live = ledger.get(event.id)
    ledger.import_events(
        [
            {
                "event_type": "jit.ter",
                "key": "copy",
                "detected_at": t(0),
                "attempts": [
                    {"at": t(1000), "outcome": "failed", "error_type": "TimeoutError", "error": "try 0"},
                    {"at": t(2000), "outcome": "failed", "error_type": "TimeoutError", "error": "try 1"},
                ],
            }
        ]
    )
    copy = next(e for e in ledger.events() if e.key == "copy")
    assert (copy.state, copy.attempt_count, copy.last_error) == (
        live.state,
        live.attempt_count,
        live.last_error,
    )
    # full jitter: the retry time is drawn from (event id, failure number), within [failed at, + delay]
    assert BASE + timedelta(seconds=2000) <= copy.next_retry_at <= BASE + timedelta(seconds=2030)


def test_abandoned_attempt_implies_its_claim(ledger: Ledger) -> None:
    ledger.import_events([{"event_type": "pay.hook", "key": "lost", "detected_at": t(0), "attempts": [
        {"at": t(70), "started_at": t(10), "outcome": "abandoned", "error_type": "Lease", "actor": "w1"},
    ]}])  # fmt: skip
    detail = ledger.show(ledger.events()[0].id)
    assert [(x.from_state, x.to_state, x.actor, x.at) for x in detail.transitions[1:]] == [
        (State.PENDING, State.IN_FLIGHT, "w1", BASE + timedelta(seconds=10)),
        (State.IN_FLIGHT, State.FAILED, "import", BASE + timedelta(seconds=70)),
    ]
    assert detail.event.next_retry_at == BASE + timedelta(seconds=80)
    assert ledger.verify().ok


def test_given_transitions_are_replayed_with_a_fresh_budget_after_revive(ledger: Ledger) -> None:
    record = {
        "event_type": "pay.hook", "key": "revived", "detected_at": t(0), "state": "FAILED",
        "attempts": [*failures(1), *failures(1, start=1000)],
        "transitions": [
            {"at": t(0), "from_state": None, "to_state": "PENDING"},
            {"at": t(10), "from_state": "PENDING", "to_state": "FAILED", "attempt_number": 1},
            {"at": t(50), "from_state": "FAILED", "to_state": "DEAD", "actor": "ops", "reason": "buried: no"},
            {"at": t(60), "from_state": "DEAD", "to_state": "PENDING", "actor": "ops", "reason": "revived"},
            {"at": t(1000), "from_state": "PENDING", "to_state": "FAILED", "attempt_number": 2},
        ],
    }  # fmt: skip
    ledger.import_events([record])
    event = ledger.events()[0]
    # after the revive the budget restarts: this is failure 1 again, retried 10 s later
    assert event.state is State.FAILED and event.next_retry_at == BASE + timedelta(seconds=1010)
    detail = ledger.show(event.id)
    reasons = [x.reason for x in detail.transitions]
    assert reasons == ["imported", "imported", "buried: no", "revived", "imported"]
    assert ledger.verify().ok


def test_defaults_generated_key_and_import_time(ledger: Ledger, clock: FakeClock) -> None:
    report = ledger.import_events([{"event_type": "pay.hook"}, {"event_type": "pay.hook"}])
    assert report.imported == 2
    events = ledger.events()
    assert len({e.key for e in events}) == 2
    assert all(e.detected_at == clock.now and e.payload == {} for e in events)


# -- duplicates and re-imports ---------------------------------------------------------------------------
def test_existing_and_repeated_keys_are_skipped_and_counted(ledger: Ledger) -> None:
    existing = ledger.detect("pay.hook", {"v": "old"}, key="a")
    text = lines(
        {"event_type": "pay.hook", "key": "a", "payload": {"v": "new"}},
        {"event_type": "pay.hook", "key": "b", "payload": {"v": 1}},
        {"event_type": "pay.hook", "key": "b", "payload": {"v": 2}},  # same file: the first one wins
        {"event_type": "jit.ter", "key": "b"},  # another type: another event
    )
    report = import_text(ledger, text)
    assert (report.imported, report.skipped_existing) == (2, 2)
    assert ledger.get(existing.id).payload == {"v": "old"}
    b = next(e for e in ledger.events(event_type="pay.hook") if e.key == "b")
    assert b.payload == {"v": 1}
    before = table_counts(ledger)
    again = import_text(ledger, text)
    assert (again.imported, again.skipped_existing) == (0, 4)
    assert table_counts(ledger) == before


def test_ids_continue_after_an_import(ledger: Ledger) -> None:
    first = ledger.detect("pay.hook", key="before")
    ledger.import_events([{"event_type": "pay.hook", "key": f"i{n}"} for n in range(3)])
    after = ledger.detect("pay.hook", key="after")
    assert sorted(e.id for e in ledger.events()) == list(range(first.id, after.id + 1))
    assert after.id == first.id + 4


def test_many_events_in_several_chunks(ledger: Ledger) -> None:
    records = [
        {"event_type": TYPES[n % 2], "key": f"n{n}", "detected_at": t(n), "attempts": failures(1, start=n)}
        for n in range(12_000)
    ]
    report = ledger.import_events(records)
    assert (report.imported, report.attempts) == (12_000, 12_000)
    with ledger.store.read() as conn:
        assert counters.stored(conn) == {("pay.hook", "FAILED"): 6000, ("jit.ter", "FAILED"): 6000}
    assert ledger.import_events(records[-10:]).skipped_existing == 10


# -- invalid input ---------------------------------------------------------------------------------------
GOOD = {"event_type": "pay.hook", "detected_at": t(0), "attempts": failures(1)}
INVALID = {
    "malformed JSON": ('{"event_type": "pay.hook", ', "malformed JSON"),
    "naive timestamp": ({"event_type": "pay.hook", "detected_at": "2026-01-02T04:45:54"}, "time zone"),
    "unknown outcome": ({**GOOD, "attempts": [{"at": t(5), "outcome": "maybe"}]}, "attempts[0].outcome"),
    "attempts out of order": (
        {**GOOD, "attempts": [*failures(1, start=50), *failures(1, start=20)]},
        "attempts[1].at is before attempts[0].at",
    ),
    "attempt before detection": ({**GOOD, "detected_at": t(100)}, "attempts[0].at is before detected_at"),
    "oversized payload": ({"event_type": "pay.hook", "payload": {"blob": "x" * (1024 * 1024)}}, "payload is"),
    "bad event_type": ({"event_type": "no spaces allowed"}, "event_type"),
    "missing event_type": ({"key": "k"}, "event_type is required"),
    "unknown field": ({**GOOD, "colour": "red"}, "colour: unknown field"),
    "unknown attempt field": (
        {**GOOD, "attempts": [{"at": t(5), "outcome": "failed", "why": 1}]},
        "attempts[0].why: unknown field",
    ),
    "attempt after success": (
        {**GOOD, "attempts": [{"at": t(5), "outcome": "succeeded"}, *failures(1)]},
        "nothing follows SUCCEEDED",
    ),
    "attempt after death": ({**GOOD, "attempts": failures(4)}, "nothing follows DEAD"),
    "succeeded with error": (
        {**GOOD, "attempts": [{"at": t(5), "outcome": "succeeded", "error": "x"}]},
        "takes no error_type or error",
    ),
    "not an object": ("[1, 2]", "must be a JSON object"),
    "state contradicts policy": ({**GOOD, "state": "DEAD"}, "does not follow from the attempts"),
    "next_retry_at on a success": ({"event_type": "pay.hook", "next_retry_at": t(9)}, "only FAILED events"),
    "illegal transition": (
        {
            "event_type": "pay.hook",
            "detected_at": t(0),
            "transitions": [
                {"at": t(0), "from_state": None, "to_state": "PENDING"},
                {"at": t(1), "from_state": "PENDING", "to_state": "SUCCEEDED"},
            ],
        },
        "transitions[1]",
    ),
    "transition without its attempt": (
        {**GOOD, "transitions": [{"at": t(0), "from_state": None, "to_state": "PENDING"}]},
        "has no transition recording it",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_line_refuses_the_whole_file(ledger: Ledger, case: str) -> None:
    bad, words = INVALID[case]
    bad_line = bad if isinstance(bad, str) else json.dumps(bad)
    text = (
        lines({**GOOD, "key": "one"}, {**GOOD, "key": "two"})
        + bad_line
        + "\n\n"
        + lines({**GOOD, "key": "four"})
    )
    before = table_counts(ledger)
    with pytest.raises(ValidationError) as refused:
        import_text(ledger, text)
    message = str(refused.value)
    assert "line 3:" in message and words in message and "nothing was written" in message
    assert table_counts(ledger) == before
    report = import_text(ledger, text, skip_invalid=True)
    assert report.imported == 3 and len(report.invalid) == 1
    assert report.invalid[0][0] == 3 and words in report.invalid[0][1]
    assert {e.key for e in ledger.events()} == {"one", "two", "four"}


def test_refusal_lists_the_first_twenty_problems(ledger: Ledger) -> None:
    records: list[Any] = [{"event_type": "bad type"} for _ in range(25)] + [GOOD]
    with pytest.raises(ValidationError) as refused:
        ledger.import_events(records)
    message = str(refused.value)
    assert "25 invalid records" in message and "record 20:" in message and "record 21:" not in message
    assert "and 5 more" in message and "the 1 valid ones" in message
    assert ledger.events() == []


def test_bad_arguments(ledger: Ledger, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="iterable of mappings"):
        ledger.import_events("not records")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="cannot read"):
        ledger.import_file(tmp_path / "missing.jsonl")
    with pytest.raises(ValidationError, match="actor"):
        ledger.import_events([GOOD], actor="")
    with pytest.raises(ValidationError, match="event_type"):
        ledger.export_events(event_type="no spaces")


# -- files -----------------------------------------------------------------------------------------------
def test_files_by_path_with_blank_lines_and_a_byte_order_mark(ledger: Ledger, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b"\xef\xbb\xbf"
        + lines({**GOOD, "key": "x", "payload": {"name": "Z\u00fcrich"}}).encode()
        + b"\n  \n"
        + lines({"event_type": "jit.ter", "key": "y"}).encode()
        + b"\xff\xfe\n"
    )
    report = ledger.import_file(source, skip_invalid=True)
    assert report.imported == 2 and report.invalid == ((5, "not valid UTF-8 (byte 1)"),)
    target = tmp_path / "out.jsonl"
    assert ledger.export_file(target) == 2
    exported = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [r["key"] for r in exported] == ["x", "y"]
    assert exported[0]["payload"] == {"name": "Z\u00fcrich"}
    assert exported[0]["attempts"][0] == {
        "at": t(10),
        "outcome": "failed",
        "error_type": "TimeoutError",
        "error": "try 0",
        "actor": "import",
    }
    assert exported[0]["state"] == "FAILED" and exported[0]["next_retry_at"] == t(20)
    assert [r["key"] for r in ledger.export_events(event_type="jit.ter")] == ["y"]


def test_export_streams_in_id_order_across_pages(ledger: Ledger) -> None:
    ledger.import_events([{"event_type": TYPES[n % 2], "key": f"n{n}"} for n in range(2500)])
    stream = ledger.export_events(event_type="jit.ter")
    first = next(stream)
    assert first["key"] == "n1"
    rest = list(stream)
    assert [r["key"] for r in rest][-1] == "n2499" and len(rest) == 1249
