"""The schema, as SQLAlchemy Core tables.

History (append-only, refused UPDATE/DELETE by triggers, see ``triggers.py``):
``event_detected``, ``attempt``, ``transition``, ``annotation``.

Derived (non-authoritative, rebuildable from history): ``event_state`` (the current-state projection,
written in the same transaction as the history it summarises), ``state_count`` (counters for ``health``),
``failure_cluster`` and ``correlation_state`` (written only by ``correlate``).

Times are integer microseconds since the epoch, UTC (columns named ``*_us``); see ``timeutil``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    select,
    text,
)

# SQLite only aliases the rowid (and so auto-increments) for a column typed exactly INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()


def chain_columns() -> list[Column[object]]:
    """A row's place in its hash chain and its hash (see ``core.chain``): on every history table, and on
    ``event_state`` and ``note_chain`` as the head of a chain. Nullable only so that a migration can add
    them to existing rows; every row written since schema v5 has them."""
    return [Column("chain_seq", Integer), Column("chain_hash", String(64))]


STATES = ("PENDING", "IN_FLIGHT", "SUCCEEDED", "FAILED", "DEAD")
OUTCOMES = ("succeeded", "failed", "abandoned")
# The failure condition (SPEC 7), also the WHERE of ix_attempt_failures: correlation queries use this very
# text so both backends pick the partial index.
FAILURE_SQL = "outcome IN ('failed', 'abandoned')"

event_detected = Table(
    "event_detected",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_type", String(200), nullable=False),
    Column("key", String(500), nullable=False),
    Column("payload", Text, nullable=False),  # a JSON object, serialized
    Column("detected_at_us", BigInteger, nullable=False),
    Column("recorded_at_us", BigInteger, nullable=False),  # when this row was written (differs on import)
    *chain_columns(),
    UniqueConstraint("event_type", "key", name="uq_event_type_key"),
)

attempt = Table(
    "attempt",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", ForeignKey("event_detected.id"), nullable=False),
    # Denormalised from the (immutable) event so correlation reads one index: (event_type, at_us).
    Column("event_type", String(200), nullable=False),
    Column("number", Integer, nullable=False),
    Column("started_at_us", BigInteger),
    Column("at_us", BigInteger, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("error_type", String(200)),
    Column("error", Text),
    Column("fingerprint", String(32)),
    Column("forced", Boolean, nullable=False, server_default=text("false")),
    Column("actor", String(200), nullable=False),
    # v4: what a runner knows of an attempt: the handler's traceback (its last frames, at most 8 KiB), how
    # long the handler ran, and a caller's or handler's detail (a JSON object of at most 16 KiB).
    Column("traceback", Text),
    Column("duration_us", BigInteger),
    Column("detail", Text),
    *chain_columns(),
    UniqueConstraint("event_id", "number", name="uq_attempt_event_number"),
    CheckConstraint("outcome IN ('succeeded', 'failed', 'abandoned')", name="ck_attempt_outcome"),
)
Index("ix_attempt_event", attempt.c.event_id, attempt.c.number)
Index("ix_attempt_at", attempt.c.at_us)
# Correlation reads failures by type in time order with their event and fingerprint: holding all four
# columns makes a rebuild an index-only scan (no table row is read: 40 % of a rebuild at 1M, measured).
Index(
    "ix_attempt_failures",
    attempt.c.event_type,
    attempt.c.at_us,
    attempt.c.event_id,
    attempt.c.fingerprint,
    sqlite_where=text(FAILURE_SQL),
    postgresql_where=text(FAILURE_SQL),
)

transition = Table(
    "transition",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", ForeignKey("event_detected.id"), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("from_state", String(16)),  # NULL for the first transition (detect)
    Column("to_state", String(16), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("attempt_number", Integer),  # the attempt this transition records, when there is one
    *chain_columns(),
)
Index("ix_transition_event", transition.c.event_id, transition.c.id)
Index("ix_transition_to_at", transition.c.to_state, transition.c.at_us)

annotation = Table(
    "annotation",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", ForeignKey("event_detected.id")),
    # A cluster note is kept against the cluster's type and time span (SPEC 5), so it outlives rebuilds.
    Column("cluster_event_type", String(200)),
    Column("span_start_us", BigInteger),
    Column("span_end_us", BigInteger),
    Column("cluster_id", String(64)),  # the id it was written on, for reference only
    Column("author", String(200), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("text", Text, nullable=False),
    *chain_columns(),
    CheckConstraint(
        "(event_id IS NOT NULL) OR (cluster_event_type IS NOT NULL AND span_start_us IS NOT NULL"
        " AND span_end_us IS NOT NULL)",
        name="ck_annotation_target",
    ),
)
Index("ix_annotation_event", annotation.c.event_id)
Index("ix_annotation_cluster", annotation.c.cluster_event_type, annotation.c.span_start_us)

event_state = Table(
    "event_state",
    metadata,
    Column("event_id", ForeignKey("event_detected.id"), primary_key=True, autoincrement=False),
    Column("event_type", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("detected_at_us", BigInteger, nullable=False),
    Column("attempt_count", Integer, nullable=False),
    # Failures since the retry budget last (re)started: detect, or an operator revive.
    Column("budget_failures", Integer, nullable=False),
    Column("next_retry_at_us", BigInteger),
    # When a runner may take it: detected/revived time if PENDING, next_retry_at if FAILED, else NULL.
    Column("due_at_us", BigInteger),
    Column("claim_token", String(64)),
    Column("claimed_by", String(200)),
    Column("claimed_at_us", BigInteger),
    Column("lease_expires_at_us", BigInteger),
    Column("claim_forced", Boolean, nullable=False, server_default=text("false")),
    Column("last_error_type", String(200)),
    Column("last_error", Text),
    Column("last_attempt_at_us", BigInteger),
    Column("updated_at_us", BigInteger, nullable=False),
    *chain_columns(),  # the head of the event's hash chain
    CheckConstraint(
        "state IN ('PENDING', 'IN_FLIGHT', 'SUCCEEDED', 'FAILED', 'DEAD')", name="ck_event_state_state"
    ),
)
# event_id breaks ties in the index itself: thousands of events due at one instant (a bulk import or
# revive) are claimed in order without a sort per claim.
Index("ix_event_state_due", event_state.c.due_at_us, event_state.c.event_id)
Index("ix_event_state_lease", event_state.c.state, event_state.c.lease_expires_at_us)
# Health (SPEC 6, diagnostics/health.py) reads the oldest unresolved event, the most retried one and the
# retries due with one ordered lookup or range per (type, state), so its cost stays independent of the
# resolved history. event_id ends each key so ties come in index order on PostgreSQL too.
Index("ix_event_state_type_detected", event_state.c.event_type, event_state.c.state,
      event_state.c.detected_at_us, event_state.c.event_id)
Index("ix_event_state_type_attempts", event_state.c.event_type, event_state.c.state,
      event_state.c.attempt_count, event_state.c.event_id)
Index("ix_event_state_type_retry", event_state.c.event_type, event_state.c.state,
      event_state.c.next_retry_at_us, event_state.c.event_id)

# Counts of events per (type, state), maintained with every transition so `health` does not count history.
# Each (type, state) is split over COUNTER_SHARDS rows: a writer adds to the shard of its process and
# thread, so concurrent workers rarely wait on one row lock until commit (PostgreSQL); readers sum the
# shards (`state_totals`).
COUNTER_SHARDS = 16
state_count = Table(
    "state_count",
    metadata,
    Column("event_type", String(200), primary_key=True),
    Column("state", String(16), primary_key=True),
    Column("shard", Integer, primary_key=True, server_default=text("0")),
    Column("n", BigInteger, nullable=False),
)
state_totals = (
    select(state_count.c.event_type, state_count.c.state, func.sum(state_count.c.n).label("n"))
    .group_by(state_count.c.event_type, state_count.c.state)
    .subquery("state_totals")
)

# The head of each event type's chain of cluster notes (see ``core.chain``); locked by the writer of a note.
note_chain = Table(
    "note_chain",
    metadata,
    Column("event_type", String(200), primary_key=True),
    *chain_columns(),
)

failure_cluster = Table(
    "failure_cluster",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("event_type", String(200), nullable=False),
    Column("window_start_us", BigInteger, nullable=False),
    Column("window_end_us", BigInteger, nullable=False),
    Column("failure_count", Integer, nullable=False),
    Column("event_count", Integer, nullable=False),
    Column("top_fingerprints", Text, nullable=False),  # JSON: [[fingerprint, count], ...], at most 5
    Column("window_seconds", BigInteger, nullable=False),
    Column("min_failures", Integer, nullable=False),
    Column("min_events", Integer, nullable=False),
)
Index("ix_failure_cluster_type_start", failure_cluster.c.event_type, failure_cluster.c.window_start_us)
Index("ix_failure_cluster_end", failure_cluster.c.window_end_us)
# Incidents (SPEC 13) look for clusters of any type starting near a changed one (schema v7).
Index("ix_failure_cluster_start", failure_cluster.c.window_start_us)

# One row: the rule of the clusters in failure_cluster and the last attempt id correlation has read.
correlation_state = Table(
    "correlation_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("window_us", BigInteger, nullable=False),
    Column("min_failures", Integer, nullable=False),
    Column("min_events", Integer, nullable=False),
    Column("last_attempt_id", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    # How many clusters the run left: reports read it instead of counting the table (count(*) of 44k
    # rows was a tenth of an incremental run on PostgreSQL). ``verify`` checks it.
    Column("cluster_count", BigInteger, nullable=False, server_default=text("0")),
)

# Attempts per (type, outcome), maintained in the same transaction as the attempts (``core.totals``), so
# ``/metrics`` reads a counter instead of counting history. Sharded like ``state_count``. Derived: a recount
# of ``attempt`` rebuilds it and ``verify`` compares the two.
attempt_total = Table(
    "attempt_total",
    metadata,
    Column("event_type", String(200), primary_key=True),
    Column("outcome", String(16), primary_key=True),
    Column("shard", Integer, primary_key=True, server_default=text("0")),
    Column("n", BigInteger, nullable=False),
)

# API tokens of ``failure-aware serve`` (SPEC 10): only the SHA-256 of each secret is kept. A revoked
# token keeps its row (its name stays the actor of what it did, and is never given to another token).
api_token = Table(
    "api_token",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("secret_sha256", String(64), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("revoked_at_us", BigInteger),
    UniqueConstraint("secret_sha256", name="uq_api_token_secret"),
    CheckConstraint("scope IN ('read', 'record', 'operate', 'admin')", name="ck_api_token_scope"),
)

# Incidents (SPEC 13, derived, written only by ``correlate``): clusters of several types that start together.
incident = Table(
    "incident",
    metadata,
    Column("id", String(64), primary_key=True),  # i_ + digest of its earliest cluster's id
    Column("start_us", BigInteger, nullable=False),  # earliest window_start of its clusters
    Column("end_us", BigInteger, nullable=False),  # latest window_end
    Column("cluster_count", Integer, nullable=False),
    Column("failure_count", BigInteger, nullable=False),
    Column("event_count", BigInteger, nullable=False),  # distinct events among its clusters' failures
    Column("event_types", Text, nullable=False),  # JSON: [[event type, its distinct events], ...] by name
    Column("shared_fingerprints", Text, nullable=False),  # JSON: [[fingerprint, clusters, failures], ...]
    Column("window_seconds", BigInteger, nullable=False),  # the W that linked them
)
Index("ix_incident_end", incident.c.end_us)
Index("ix_incident_start", incident.c.start_us)
# Which incident each linked cluster belongs to (clusters in no incident have no row).
incident_cluster = Table(
    "incident_cluster",
    metadata,
    Column("cluster_id", String(64), primary_key=True),
    Column("incident_id", String(64), nullable=False),
)
Index("ix_incident_cluster_incident", incident_cluster.c.incident_id)

schema_version = Table(
    "failure_aware_schema",  # engine.SCHEMA_TABLE
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at_us", BigInteger, nullable=False),
)

# Retention (SPEC 15, schema v9). ``archive``: one row per chunk of history an archive removed, written in
# the same transaction as the removal; append-only like history (its triggers refuse UPDATE and DELETE
# always). ``digest`` is the set digest of the removed events' chains (``core.chain.Digest``), so that
# ``verify`` folds it back in; ``attempts`` the removed attempts per type and outcome (JSON), so that
# ``attempt_total`` (a Prometheus counter: it never goes down) reconciles; ``note_heads`` the place where
# each type's chain of cluster notes now starts (JSON: {type: [seq, hash]}).
archive = Table(
    "archive",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("archive_id", String(64), nullable=False),  # one archive run; several chunks
    Column("chunk", Integer, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("horizon_us", BigInteger, nullable=False),  # --before
    Column("event_type", String(200)),  # --type, when given
    Column("file_name", Text, nullable=False),
    Column("file_sha256", String(64), nullable=False),
    Column("events", BigInteger, nullable=False),
    Column("rows", BigInteger, nullable=False),  # history rows removed (events' chains and cluster notes)
    Column("attempts", Text, nullable=False),
    Column("note_heads", Text, nullable=False),
    Column("digest", Text, nullable=False),
    UniqueConstraint("archive_id", "chunk", name="uq_archive_chunk"),
)
# The guard of the SQLite triggers: a row here, written and removed inside an archive's own transaction
# (so never visible to another connection), lets that transaction's DELETEs of history through.
# PostgreSQL uses a transaction-local setting instead (``triggers``).
archive_guard = Table(
    "archive_guard",
    metadata,
    Column("archive_id", String(64), primary_key=True),
)
# How far back correlation looks (SPEC 15): failures before it are ignored by ``correlate`` and its
# checks, since the archive may have removed some of them. One row (id 1), absent before any archive.
retention_horizon = Table(
    "retention_horizon",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("horizon_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
)

HISTORY_TABLES = (event_detected, attempt, transition, annotation)
DERIVED_TABLES = (event_state, state_count, failure_cluster, correlation_state, incident, incident_cluster,
                  note_chain, attempt_total)
RETENTION_TABLES = (archive, archive_guard, retention_horizon)
