"""The spool: checked records parked between the importer's checking pass and its writing pass."""

from __future__ import annotations

import marshal
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from .model import EventIn, to_plain

CHUNK_EVENTS = 5000
SPOOL_MEMORY_BYTES = 64 * 1024 * 1024  # checked records beyond this go to a temporary file


class Spool:
    """Checked records parked between the two passes: chunks serialized with ``marshal`` (fast, and only
    ever read back by this process) into a temporary file that stays in memory while small."""

    def __init__(self, chunk_size: int = CHUNK_EVENTS) -> None:
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
        self._pending: list[tuple[Any, ...]] = []
        self._chunk_size = chunk_size
        self.count = 0

    def add(self, record: EventIn) -> None:
        """Park one record."""
        self._pending.append(to_plain(record))
        self.count += 1
        if len(self._pending) >= self._chunk_size:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            data = marshal.dumps(self._pending)
            self._file.write(len(data).to_bytes(8, "big"))
            self._file.write(data)
            self._pending = []

    def chunks(self) -> Iterator[list[tuple[Any, ...]]]:
        """The parked records in their order as ``to_plain`` tuples, a chunk at a time (read once)."""
        self._flush()
        self._file.seek(0)
        while size := int.from_bytes(self._file.read(8), "big"):
            yield marshal.loads(self._file.read(size))

    def close(self) -> None:
        """Drop the parked records."""
        self._file.close()
