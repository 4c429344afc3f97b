"""Reading what an import is given: records numbered for messages, and JSON Lines parsed line by line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from failure_aware.domain.errors import ValidationError


@dataclass(frozen=True)
class Malformed:
    """An input item that is not a record at all (a line that is not JSON), with the reason."""

    message: str


def number_records(records: Iterable[Any]) -> Iterator[tuple[int, Any]]:
    """Records of ``import_events``, numbered from 1."""
    if isinstance(records, str | bytes) or not isinstance(records, Iterable):
        raise ValidationError("records must be an iterable of mappings (one per event), e.g. a list of dicts")
    return enumerate(records, 1)


def read_lines(lines: Iterable[str | bytes]) -> Iterator[tuple[int, Any]]:
    """JSON Lines parsed one by one, numbered by line; blank lines are skipped, bad ones are ``Malformed``."""
    for number, raw in enumerate(lines, 1):
        if isinstance(raw, bytes):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, Malformed(f"not valid UTF-8 (byte {exc.start + 1})")
                continue
        else:
            line = raw
        if number == 1:
            line = line.removeprefix("\ufeff")  # a byte-order mark some editors write
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, Malformed(f"malformed JSON: {exc.msg} (column {exc.colno})")
        except RecursionError:
            yield number, Malformed("malformed JSON: nested too deeply")
