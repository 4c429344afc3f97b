"""The foreground worker: ``loop`` runs it; ``slots`` holds the handler threads it hands claims to."""

from __future__ import annotations

from failure_aware.worker.loop import AttemptReport, Worker, WorkerSummary

__all__ = ["AttemptReport", "Worker", "WorkerSummary"]
