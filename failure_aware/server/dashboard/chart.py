"""The failures-over-time picture (``clusters --timeline``) as SVG geometry, computed on the server.

Pure: a ``Timeline`` in, rows of bars and cluster spans (numbers and text) out; the template draws them
as inline ``<svg>`` with presentation attributes only (the page's CSP allows no inline style).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from failure_aware.domain.cluster_records import Timeline
from failure_aware.domain.timeutil import format_time

ROW_HEIGHT = 34
BAR_AREA = 24
LABEL_WIDTH = 180
PLOT_WIDTH = 600
MAX_ROWS = 20  # the types with most failures; the page says how many more there are


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Span:
    x: float
    width: float
    title: str
    cluster_id: str


@dataclass(frozen=True)
class ChartRow:
    event_type: str
    y: float
    total: int
    bars: tuple[Bar, ...]
    spans: tuple[Span, ...]


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    label_width: int
    rows: tuple[ChartRow, ...]
    start: str
    end: str
    hidden_types: int  # rows left out (fewer failures than the ones drawn)


def chart(timeline: Timeline) -> Chart | None:
    """The geometry of ``timeline``, or None when it has no failure and no cluster."""
    if timeline.start is None or timeline.end is None or not timeline.rows:
        return None
    ranked = sorted(timeline.rows, key=lambda r: (-sum(r.counts), r.event_type))
    shown = sorted(ranked[:MAX_ROWS], key=lambda r: r.event_type)
    start_s = timeline.start.timestamp()
    span_s = max(timeline.end.timestamp() - start_s, 1e-6)
    buckets = max((len(r.counts) for r in shown), default=1) or 1
    step = PLOT_WIDTH / buckets
    peak = max((max(r.counts, default=0) for r in shown), default=0) or 1
    rows = []
    for index, row in enumerate(shown):
        top = index * ROW_HEIGHT + 4
        bars = tuple(
            Bar(LABEL_WIDTH + i * step, top + BAR_AREA - BAR_AREA * n / peak, max(step - 1, 1),
                BAR_AREA * n / peak, f"{n} failures from {_bucket_time(timeline, i)}")
            for i, n in enumerate(row.counts) if n
        )
        spans = []
        for cluster in row.clusters:
            left = max(0.0, (cluster.window_start.timestamp() - start_s) / span_s)
            right = min(1.0, (cluster.window_end.timestamp() - start_s) / span_s)
            spans.append(Span(
                LABEL_WIDTH + left * PLOT_WIDTH, max((right - left) * PLOT_WIDTH, 2.0),
                f"cluster {cluster.id}: {cluster.failure_count} failures of {cluster.event_count} events, "
                f"{_text(cluster.window_start)} to {_text(cluster.window_end)}",
                cluster.id,
            ))
        rows.append(ChartRow(row.event_type, top, sum(row.counts), bars, tuple(spans)))
    return Chart(LABEL_WIDTH + PLOT_WIDTH + 10, len(rows) * ROW_HEIGHT + 24, LABEL_WIDTH, tuple(rows),
                 _text(timeline.start), _text(timeline.end), len(ranked) - len(shown))


def _text(moment: datetime | None) -> str:
    return format_time(moment) or ""


def _bucket_time(timeline: Timeline, index: int) -> str:
    start = timeline.start
    return _text(start + timedelta(seconds=index * timeline.bucket_seconds) if start else None)


__all__ = ["Chart", "chart"]
