"""Reading what an import is given: records numbered for messages, and JSON Lines parsed line by line."""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from failure_aware.domain.errors import ValidationError
from failure_aware.domain.progress import Progress


@dataclass(frozen=True)
class Malformed:
    """An input item that is not a record at all (a line that is not JSON), with the reason."""

    message: str


def number_records(records: Iterable[Any]) -> Iterator[tuple[int, Any]]:
    """Records of ``import_events``, numbered from 1."""
    if isinstance(records, str | bytes) or not isinstance(records, Iterable):
        raise ValidationError("records must be an iterable of mappings (one per event), e.g. a list of dicts")
    return enumerate(records, 1)


# The kind of the last line of an archive file (SPEC 15, docs/retention.md): the SHA-256 of the lines
# before it is in it.
ARCHIVE_MANIFEST = "archive_manifest"


def read_lines(lines: Iterable[str | bytes]) -> Iterator[tuple[int, Any]]:
    """JSON Lines parsed one by one, numbered by line; blank lines are skipped, bad ones are ``Malformed``.

    An archive's manifest line is checked against the lines before it (since the previous manifest: files
    joined with ``cat`` hold one archive after another): a file changed or damaged after it was written is
    a ``Malformed`` manifest, so the import is refused like any input with a bad line."""
    content = hashlib.sha256()
    for number, raw in enumerate(lines, 1):
        data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
        parsed = _parse(number, raw)
        if type(parsed) is dict and parsed.get("kind") == ARCHIVE_MANIFEST:
            problem = _manifest_problem(parsed, content.hexdigest())
            content = hashlib.sha256()
            if problem is not None:
                yield number, Malformed(problem)
                continue
        else:
            content.update(data)
        if parsed is not _BLANK:
            yield number, parsed


_BLANK = object()


def _parse(number: int, raw: str | bytes) -> Any:
    """One line's JSON value, ``Malformed``, or ``_BLANK``."""
    if isinstance(raw, bytes):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Malformed(f"not valid UTF-8 (byte {exc.start + 1})")
    else:
        line = raw
    if number == 1:
        line = line.removeprefix("\ufeff")  # a byte-order mark some editors write
    if not line.strip():
        return _BLANK
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        return Malformed(f"malformed JSON: {exc.msg} (column {exc.colno})")
    except RecursionError:
        return Malformed("malformed JSON: nested too deeply")


def _manifest_problem(manifest: dict[str, Any], content_sha256: str) -> str | None:
    """Why an archive manifest does not vouch for the lines before it, or None when it does."""
    stated = manifest.get("content_sha256")
    if not isinstance(stated, str):
        return "archive manifest without content_sha256: the lines before it cannot be checked"
    if stated != content_sha256:
        return ("archive manifest: the lines before it are not the ones it was written with (their "
                f"SHA-256 is {content_sha256}, content_sha256 says {stated}): the file was changed or "
                "damaged after the archive wrote it; restore it from a copy whose sha256sum matches the "
                "archive record's file_sha256")
    return None


# What reading a file can raise besides our own errors: the OS, and a gzip file cut short or not gzip.
UNREADABLE = (OSError, EOFError, zlib.error)


def open_file(path: str | Path) -> IO[bytes]:
    """A file opened for reading bytes; through gzip when its name ends in ``.gz``."""
    if str(path).endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    return open(path, "rb")


def describe(error: BaseException) -> str:
    """What went wrong reading a file, for a person."""
    if isinstance(error, gzip.BadGzipFile):
        return "not a gzip file (the name ends in .gz)"
    if isinstance(error, EOFError | zlib.error):
        return "the gzip data is cut short or damaged"
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error)


PROGRESS_EVERY = 1000  # items between two progress calls (each costs a callback, often a redraw)


def counted_file(stream: IO[bytes], on_progress: Progress, total: int | None) -> Iterator[bytes]:
    """``stream``'s lines as they are, telling ``on_progress("read", bytes so far, total)`` every
    ``PROGRESS_EVERY`` lines and at the end (``total``: the file's size, None when unknown). Through gzip
    the compressed bytes read so far are told: the lines' own bytes would pass the file's size."""
    raw = stream.fileobj if isinstance(stream, gzip.GzipFile) else None
    start = raw.tell() if raw is not None else 0

    def so_far(line_bytes: int) -> int:
        if raw is None:
            return line_bytes
        compressed = raw.tell() - start
        return compressed if total is None else min(compressed, total)

    line_bytes = 0
    for number, line in enumerate(stream, 1):
        line_bytes += len(line)
        if number % PROGRESS_EVERY == 0:
            on_progress("read", so_far(line_bytes), total)
        yield line
    done = so_far(line_bytes)
    on_progress("read", done, total if total is not None else done)


def counted(
    numbered: Iterable[tuple[int, Any]], on_progress: Progress,
    total: int | None,
) -> Iterator[tuple[int, Any]]:
    """``numbered`` as it is, telling ``on_progress("check", items so far, total)`` every
    ``PROGRESS_EVERY`` items and at the end."""
    done = 0
    for item in numbered:
        done += 1
        if done % PROGRESS_EVERY == 0:
            on_progress("check", done, total)
        yield item
    on_progress("check", done, total if total is not None else done)
