"""An archive's manifest vouches for the lines before it: ``read_lines`` refuses a file changed since."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from failure_aware.interchange.inputs import Malformed, read_lines


def archive_lines(records: list[dict[str, Any]], **manifest: Any) -> list[bytes]:
    lines = [(json.dumps(r, ensure_ascii=False) + "\n").encode() for r in records]
    content = hashlib.sha256(b"".join(lines)).hexdigest()
    body = {"kind": "archive_manifest", "content_sha256": content, **manifest}
    return [*lines, (json.dumps(body) + "\n").encode()]


RECORDS = [{"event_type": "pay", "key": "k1", "payload": {"n": "é"}}, {"event_type": "pay", "key": "k2"}]


def problems(lines: list[bytes]) -> list[tuple[int, str]]:
    return [(n, item.message) for n, item in read_lines(lines) if isinstance(item, Malformed)]


def test_an_unchanged_archive_reads_with_its_manifest() -> None:
    parsed = list(read_lines(archive_lines(RECORDS)))
    assert [item for _, item in parsed[:2]] == RECORDS
    assert parsed[-1][1]["kind"] == "archive_manifest"


def test_a_changed_line_makes_the_manifest_malformed() -> None:
    lines = archive_lines(RECORDS)
    lines[1] = lines[1].replace(b"k2", b"k3")
    [(number, message)] = problems(lines)
    assert number == 3 and "content_sha256" in message and "changed or damaged" in message


def test_a_removed_line_is_found_too() -> None:
    lines = archive_lines(RECORDS)
    [(number, _)] = problems([lines[0], lines[2]])
    assert number == 2


def test_a_manifest_without_content_sha256_is_malformed() -> None:
    lines = archive_lines(RECORDS)
    lines[-1] = b'{"kind": "archive_manifest"}\n'
    [(_, message)] = problems(lines)
    assert "without content_sha256" in message


def test_archives_joined_one_after_another_each_check_their_own_lines() -> None:
    joined = archive_lines(RECORDS[:1]) + archive_lines(RECORDS[1:])
    assert problems(joined) == []
    joined[2] = joined[2].replace(b"k2", b"kX")
    assert [n for n, _ in problems(joined)] == [4]


def test_plain_json_lines_without_a_manifest_are_not_affected() -> None:
    lines = [(json.dumps(r) + "\n").encode() for r in RECORDS]
    assert [item for _, item in read_lines(lines)] == RECORDS
