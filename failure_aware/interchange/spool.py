"""The spool: checked records parked between the importer's checking pass and its writing pass."""

from __future__ import annotations

import gc
import marshal
import tempfile
from collections.abc import Iterator
from typing import IO, Any

CHUNK_EVENTS = 5000
SPOOL_MEMORY_BYTES = 64 * 1024 * 1024  # checked records beyond this go to a temporary file
WRITE_BATCH = 500  # records serialized at a time (see Spool)


class Spool:
    """Checked records parked between the two passes: serialized with ``marshal`` (fast, and only ever read
    back by this process) into a temporary file that stays in memory while small.

    Records are written in small batches and read back in chunks of ``chunk_size``. The batches keep a
    record in memory only briefly, so it dies young: records held until a whole chunk was written outlived
    the garbage collector's young generations and made it run full collections of the whole heap.
    """

    def __init__(self, chunk_size: int = CHUNK_EVENTS) -> None:
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
        self._pending: list[tuple[Any, ...]] = []
        self._chunk_size = chunk_size
        self._batch_size = min(chunk_size, WRITE_BATCH)
        self.count = 0

    def add(self, record: tuple[Any, ...]) -> None:
        """Park one record, in the plain form of ``model.to_plain`` (``marshal`` refuses NamedTuples)."""
        self._pending.append(record)
        self.count += 1
        if len(self._pending) >= self._batch_size:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            data = marshal.dumps(self._pending)
            self._file.write(len(data).to_bytes(8, "big"))
            self._file.write(data)
            self._pending = []

    def chunks(self, size: int | None = None) -> Iterator[list[tuple[Any, ...]]]:
        """The parked records in their order as ``to_plain`` tuples, in chunks of ``size`` (by default the
        spool's ``chunk_size``; a multiple of ``WRITE_BATCH`` gives exact chunks, except the last).

        Each call reads them again from the start (the PostgreSQL writer makes one pass per table); a pass
        must end before the next one starts, and no record can be added after the first."""
        self._flush()
        self._file.seek(0)
        wanted = size or self._chunk_size
        chunk: list[tuple[Any, ...]] = []
        while length := int.from_bytes(self._file.read(8), "big"):
            chunk += _loads(self._file.read(length))
            if len(chunk) >= wanted:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def close(self) -> None:
        """Drop the parked records."""
        self._file.close()


def _loads(data: bytes) -> Any:
    """``marshal.loads`` with the cyclic garbage collector paused: unmarshalling a chunk creates tens of
    thousands of tuples, each allocation counting towards a collection (measured: 4x slower with it on). No
    other Python code runs during the call (it holds the GIL), and the new objects are collected normally
    afterwards."""
    if not gc.isenabled():
        return marshal.loads(data)
    gc.disable()
    try:
        return marshal.loads(data)
    finally:
        gc.enable()
