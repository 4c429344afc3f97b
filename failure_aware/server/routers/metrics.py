"""``/metrics``: Prometheus text, computed on each scrape from counters (SPEC 10), never from history.

Every figure comes from the health report (which reads the ``state_count`` counters and index ranges
bounded by time or by the unresolved events) and the ``attempt_total`` counters. Labels are event types,
states, outcomes and verdicts only: never ids, keys or messages.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from failure_aware.diagnostics.health_report import HealthReport, Verdict
from failure_aware.domain.tokens import Scope
from failure_aware.ledger import Ledger
from failure_aware.server.auth import require_scope
from failure_aware.server.problems import responses


class LedgerMetrics(Collector):
    """The metric families of one scrape, from one health report and the attempt counters."""

    def __init__(self, report: HealthReport, attempts: dict[tuple[str, str], int]) -> None:
        self.report = report
        self.attempts = attempts

    def collect(self) -> Iterator[Metric]:
        """Yield every family (Prometheus client API)."""
        by_type = self.report.by_type
        events = GaugeMetricFamily(
            "failure_aware_events", "Events by type and current state", labels=["event_type", "state"]
        )
        for figures in by_type:
            for state, n in sorted(figures.counts.items()):
                events.add_metric([figures.event_type or "", str(state)], n)
        yield events
        attempts = CounterMetricFamily(
            "failure_aware_attempts",
            "Attempts recorded by type and outcome",
            labels=["event_type", "outcome"],
        )
        for (event_type, outcome), n in sorted(self.attempts.items()):
            attempts.add_metric([event_type, outcome], n)
        yield attempts
        for name, help_text, value in (
            ("failure_aware_retries_due", "FAILED events whose retry time has come", "retries_due"),
            (
                "failure_aware_retries_overdue",
                "Retries due for longer than the overdue threshold",
                "overdue_retries",
            ),
            ("failure_aware_claims_stuck", "IN_FLIGHT events whose lease expired", "stuck_claims"),
        ):
            family = GaugeMetricFamily(name, help_text, labels=["event_type"])
            for figures in by_type:
                family.add_metric([figures.event_type or ""], getattr(figures, value))
            yield family
        oldest = GaugeMetricFamily(
            "failure_aware_oldest_unresolved_age_seconds",
            "Age of the oldest PENDING, IN_FLIGHT or FAILED event (types with one)",
            labels=["event_type"],
        )
        for figures in by_type:
            mark = figures.oldest_unresolved
            if mark is not None and mark.age_seconds is not None:
                oldest.add_metric([figures.event_type or ""], mark.age_seconds)
        yield oldest
        clusters = GaugeMetricFamily(
            "failure_aware_active_clusters", "Active failure clusters", labels=["event_type"]
        )
        for figures in by_type:
            clusters.add_metric([figures.event_type or ""], len(figures.active_clusters))
        yield clusters
        verdict = GaugeMetricFamily(
            "failure_aware_health", "1 for the current verdict, 0 for the others", labels=["verdict"]
        )
        for level in Verdict:
            verdict.add_metric([level.value], 1 if level is self.report.verdict else 0)
        yield verdict


def render(fa: Ledger) -> bytes:
    """The metrics text of ``fa`` now."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerMetrics(*fa.metrics_figures()))
    return generate_latest(registry)


def metrics(request: Request) -> Response:
    """Prometheus metrics (scope ``read``, unless the server was started with ``--public-metrics``)."""
    return Response(render(request.app.state.ledger), media_type=CONTENT_TYPE_LATEST)


def router(*, public: bool) -> APIRouter:
    """The ``/metrics`` route, open to all when ``public``, else for tokens of scope ``read``."""
    made = APIRouter(tags=["metrics"])
    made.add_api_route(
        "/metrics",
        metrics,
        methods=["GET"],
        response_class=Response,
        dependencies=[] if public else [require_scope(Scope.READ)],
        responses={
            200: {
                "content": {"text/plain": {"schema": {"type": "string"}}},
                "description": "Prometheus text format",
            },
            **({} if public else responses(401, 403)),
        },
    )
    return made
