"""The archive file: JSON Lines (SPEC 8; gzip when the name ends in ``.gz``) and a manifest line last.

Written next to its final name (``.NAME.part``), flushed and ``fsync``ed, then given its name without ever
replacing an existing file, and the directory synced: only then may anything be removed from the database
(``run``). The SHA-256 of the file's bytes is computed while writing (``file_sha256``, recorded with each
chunk's removal); the manifest carries the SHA-256 of the lines before it (``content_sha256``), so the
file can be checked on its own: ``sha256sum`` against the archive record, or the content against the
manifest.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path
from typing import IO, Any

from failure_aware.domain.errors import ValidationError
from failure_aware.interchange.inputs import ARCHIVE_MANIFEST

MANIFEST = ARCHIVE_MANIFEST  # the ``kind`` of the manifest line (checked by every import: inputs.read_lines)
CLUSTER = "archived_cluster"  # the ``kind`` of a cluster taken along for the record
FORMAT = 1
# gzip(1)'s default level; GzipFile's own, 9, took 6x the CPU for a file 8 % smaller on the archive
# benchmark's history (5.3 MB of JSON Lines), and an archive shares the machine with workers
GZIP_LEVEL = 6
_encode = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(..., ensure_ascii=False) without a new
# encoder per record


def lines(records: list[dict[str, Any]]) -> bytes:
    """``records`` as the file holds them: one JSON line each, UTF-8 (a dry run counts these bytes)."""
    return "".join(_encode(record) + "\n" for record in records).encode()


class _Hashing:
    """A binary file that hashes what is written through it (below gzip: the file's own bytes)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def check_target(path: Path) -> None:
    """Refuse a target that exists (it may be an earlier archive: never overwritten) or has no directory."""
    if path.exists():
        raise ValidationError(f"{path} exists: an archive never overwrites a file (it may hold history "
                              "already removed); choose a new name")
    if not path.parent.is_dir():
        raise ValidationError(f"cannot write {path}: directory {path.parent} does not exist")


class ArchiveWriter:
    """Writes one archive file; ``finish`` syncs it and gives it its name, ``abort`` leaves nothing."""

    def __init__(self, path: Path) -> None:
        check_target(path)
        self.path = path
        self.partial = path.with_name(f".{path.name}.part")
        try:
            self._raw = open(self.partial, "wb")  # noqa: SIM115 - closed by finish or abort
        except OSError as error:
            raise ValidationError(f"cannot write {path}: {error.strerror or error}") from None
        self._hashing = _Hashing(self._raw)
        self._out: Any = (gzip.GzipFile(filename="", mode="wb", fileobj=self._hashing, mtime=0,
                                        compresslevel=GZIP_LEVEL)
                          if path.name.endswith(".gz") else self._hashing)
        self._content = hashlib.sha256()

    def write(self, record: dict[str, Any]) -> None:
        """Append one record as a line."""
        self.write_many([record])

    def write_many(self, records: list[dict[str, Any]]) -> None:
        """Append records, one line each, in one write (gzip compresses a page at a time, not a line)."""
        block = lines(records)
        self._content.update(block)
        self._out.write(block)

    def finish(self, manifest: dict[str, Any]) -> tuple[str, int]:
        """Write the manifest line, sync the file and its directory, name it; returns (sha256, size)."""
        self.write({**manifest, "content_sha256": self._content.hexdigest()})
        if self._out is not self._hashing:
            self._out.close()  # writes the gzip trailer through the hashing file
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        try:
            os.link(self.partial, self.path)  # fails if the name was taken meanwhile: never replaces
        except FileExistsError:
            self.partial.unlink(missing_ok=True)
            raise ValidationError(f"{self.path} appeared while the archive was written; nothing was "
                                  "removed; run again with a new name") from None
        self.partial.unlink()
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return self._hashing.sha.hexdigest(), self._hashing.size

    def abort(self) -> None:
        """Close and remove the partial file (nothing was removed from the database)."""
        try:
            if self._out is not self._hashing:
                self._out.close()
        except (OSError, ValueError):
            pass
        self._raw.close()
        self.partial.unlink(missing_ok=True)
