"""failure_aware.domain.fingerprint: deterministic, stateless error-message fingerprints (SPEC section 7)."""

from __future__ import annotations

import csv
import hashlib
import importlib
import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import fields, replace
from pathlib import Path

import fingerprint_support as reference
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from failure_aware.domain.fingerprint import MASK, MAX_CHARS, RULES, Masker, Rules, fingerprint, template

REPO_ROOT = Path(__file__).resolve().parents[2]
LOGHUB = REPO_ROOT.parent / "shared" / "datasets" / "loghub-2k"
HOSTILE = REPO_ROOT.parent / "shared" / "datasets" / "hostile" / "strings.json"

FORMAT = re.compile(r"[0-9a-f]{16}")


# -- format and determinism ------------------------------------------------------------------------------


def test_format_is_16_lowercase_hex() -> None:
    for message in ("", "x", "upstream timed out after 30s", "é" * 10_000):
        assert FORMAT.fullmatch(fingerprint(message))


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        # Pinned: fingerprints are stored with failed attempts, so changing the rules changes stored data.
        ("upstream timed out after 30s", "651a8f7319cedfca"),
        ("Failed password for invalid user webmaster from 173.234.31.186 port 38926", "fe326ffb7897a8bd"),
        ("", "e4a6a0577479b2b4"),
    ],
)
def test_output_is_stable_across_versions(message: str, expected: str) -> None:
    assert fingerprint(message) == expected


def test_fingerprint_is_a_digest_of_the_template() -> None:
    assert fingerprint("timed out after 30s") == fingerprint("timed out after <*>")
    assert template("timed out after 30s") == "timed out after <*>"


def test_same_in_every_process() -> None:
    messages = ["upstream timed out after 30s", "disk /dev/sda1 is 95% full", "ünïcode 42 ✓"]
    code = (
        "import sys\n"
        "from failure_aware.domain.fingerprint import fingerprint\n"
        "print(' '.join(fingerprint(m) for m in sys.argv[1:]))\n"
    )
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO_ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", code, *messages], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(done.stdout.strip())
    assert outputs == {" ".join(fingerprint(m) for m in messages)}


def test_stateless_order_does_not_matter() -> None:
    messages = [f"job {i} failed on host-{i % 7}" for i in range(50)]
    forward = [fingerprint(m) for m in messages]
    backward = [fingerprint(m) for m in reversed(messages)]
    assert forward == list(reversed(backward))
    assert len(set(forward)) == 1


# -- masking, one category at a time ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("upstream timed out after 30s", "upstream timed out after <*>"),
        ("retry 3 of 5 failed", "retry <*> of <*> failed"),
        ("negative offset -12 and ratio 0.75", "negative offset <*> and ratio <*>"),
        ("bad pointer 0x7fed806eb5d", "bad pointer <*>"),
        ("object 9f4ef63 vanished", "object <*> vanished"),
        ("instance b9000564-fe1a-409b-b8cc-1e88b294cd1d not found", "instance <*> not found"),
        ("no route to 10.250.19.102", "no route to <*>"),
        ("connect to 10.250.19.102:50010 refused", "connect to <*> refused"),
        ("connect to [fe80::1ff:fe23:4567:890a]:443 refused", "connect to [<*>]:<*> refused"),
        ("peer 2001:db8::ff00:42:8329 reset", "peer <*> reset"),
        ("lease for 00:11:43:e3:ba:c3 expired", "lease for <*> expired"),
        ("cannot resolve db.example.com", "cannot resolve <*>"),
        ("GET https://api.example.com/v1/orders?id=7 failed", "GET <*> failed"),
        ("mail to ops+alerts@example.org bounced", "mail to <*> bounced"),
        ("cannot open /var/lib/app/data.db: permission denied", "cannot open <*>: permission denied"),
        (r"cannot open C:\Windows\System32\config\SAM", "cannot open <*>"),
        ("read/write error on disk", "read/write error on disk"),
        ("crash in chrome.exe", "crash in <*>"),
        ("KeyError: 'order_id'", "KeyError: <*>"),
        ('unknown column "x-12"', "unknown column <*>"),
        ("quoted text 'stays as it is' here", "quoted text 'stays as it is' here"),
        (
            'acquire lock=2335704, flags=0x1, tag="View Lock", ws=null',
            "acquire lock=<*>, flags=<*>, tag=<*>, ws=<*>",
        ),
        ("flush done state=idle", "flush done state=<*>"),
        ("Took 19.05 seconds to spawn", "Took <*> to spawn"),
        ("sent 1190 bytes (1.16 KB), lifetime <1 sec", "sent <*>, lifetime <*>"),
        ("0 bytes sent", "<*> sent"),
        ("1190 bytes (1.16 KB) sent", "<*> sent"),
        ("heap at 512 MiB, limit 2GB", "heap at <*>, limit <*>"),
        ("connection at Fri Jun 17 07:07:00 2005 dropped", "connection at <*> dropped"),
        ("Date: Tue, 15 Nov 1994 08:12:31 GMT", "Date: <*> GMT"),
        ("Marking 3 notifications as seen", "Marking <*> notifications as seen"),
        ("job ended 2024-05-01T12:00:00.123Z with errors", "job ended <*> with errors"),
        ("job ended 2023-12-31 23:59:59,001 with errors", "job ended <*> with errors"),
        ("session opened for user alice by (uid=0)", "session opened for user <*> by (uid=<*>)"),
        ("Invalid user bob from 1.2.3.4", "Invalid user <*> from <*>"),
        ("check pass; user unknown", "check pass; user <*>"),
        ("deleting blk_-1608999687919862906 and blk_7128370237687728475", "deleting <*> and <*>"),
        ("replicate to 10.0.0.1:50010 10.0.0.2:50010 10.0.0.3:50010", "replicate to <*>"),
        ("nodes [3, 4, 5, 17] unreachable", "nodes [<*>] unreachable"),
        ("Link Up on eth0", "Link Up on eth<*>"),
        ("auxiliary processor.........................0", "auxiliary processor ... <*>"),
        (
            "java.lang.NullPointerException at com.acme.Foo.bar(Foo.java:42)",
            "java.lang.NullPointerException at com.acme.Foo.bar",
        ),
        ("  spaced \t out\n message  ", "spaced out message"),
        (
            "Failed password for root from 1.2.3.4 port 22 ssh2",
            "Failed password for <*> from <*> port <*> ssh<*>",
        ),
        ("sent to the from address", "sent to the from address"),
        ("Block rdd_1 stored as bytes in memory", "Block <*> stored as bytes in memory"),
        ("Fan speeds ( 3552 3534 **** 3515 )", "Fan speeds ( <*> **** <*> )"),
    ],
)
def test_masks(message: str, expected: str) -> None:
    assert template(message) == expected


# -- grouping ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("upstream timed out after 30s", "upstream timed out after 5s"),
        (
            "Receiving block blk_-1608999687919862906 src: /10.250.19.102:54106 dest: /10.250.19.102:50010",
            "Receiving block blk_7503483334202473044 src: /10.251.215.16:55695 dest: /10.251.215.16:50010",
        ),
        (
            "Failed password for invalid user webmaster from 173.234.31.186 port 38926 ssh2",
            "Failed password for invalid user test9 from 52.80.34.196 port 36060 ssh2",
        ),
        (
            "proxy.example.edu:5070 close, 1190 bytes (1.16 KB) sent, 1671 bytes received, lifetime 00:02",
            "www.google.com:443 close, 0 bytes sent, 0 bytes received, lifetime <1 sec",
        ),
        (
            "connection from 24.54.76.216 (24-54-76-216.example.net) at Fri Jun 17 07:07:00 2005",
            "connection from 82.252.162.81 () at Sun Jul 17 15:03:37 2005",
        ),
        (
            "BLOCK* ask 10.250.14.224:50010 to delete blk_1 blk_2 blk_3",
            "BLOCK* ask 10.251.71.68:50010 to delete blk_-9",
        ),
        (
            '10.11.10.1 "GET /v2/54fadb41/servers/detail HTTP/1.1" status: 200 len: 1893 time: 0.2477829',
            '10.11.21.122,10.11.10.1 "GET /openstack/2013-10-17 HTTP/1.1" status: 404 len: 157 time: 0.00082',
        ),
        (
            "payment pay_8HJkd7 declined after 3 retries (elapsed 12.5s)",
            "payment pay_a1b2c3 declined after 10 retries (elapsed 800ms)",
        ),
    ],
)
def test_same_statement_same_fingerprint(a: str, b: str) -> None:
    assert fingerprint(a) == fingerprint(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("upstream timed out after 30s", "upstream refused connection after 30s"),
        ("Invalid user bob from 1.2.3.4", "Accepted password for bob from 1.2.3.4 port 22 ssh2"),
        ('"GET /v2/x HTTP/1.1" status: 200', '"POST /v2/x HTTP/1.1" status: 200'),
        ("java.lang.NullPointerException: x", "java.io.IOException: x"),
        ("VM Started (Lifecycle Event)", "VM Paused (Lifecycle Event)"),
        ("state=1 ok", "state=1 failed"),
        ("", " x"),
        ("Fan speeds ( 3552 3534 3375 4245 )", "Fan speeds ( 3552 3534 **** 4245 )"),
        ("Block rdd_1 stored as bytes in memory", "Block rdd_1 stored as values in memory"),
    ],
)
def test_different_statements_differ(a: str, b: str) -> None:
    assert fingerprint(a) != fingerprint(b)


words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)


@given(st.lists(st.one_of(words, st.integers(min_value=0)), min_size=1, max_size=12), st.data())
def test_other_numbers_same_fingerprint(parts: list[str | int], data: st.DataObject) -> None:
    other = [data.draw(st.integers(min_value=0)) if isinstance(p, int) else p for p in parts]
    assert fingerprint(" ".join(map(str, parts))) == fingerprint(" ".join(map(str, other)))


@given(st.lists(words, min_size=1, max_size=12), st.integers(min_value=1, max_value=4))
def test_whitespace_does_not_matter(parts: list[str], width: int) -> None:
    assert fingerprint(" ".join(parts)) == fingerprint((" " * width).join(parts) + "\n")


# -- the knobs (Rules) ------------------------------------------------------------------------------------


def test_module_functions_use_the_default_rules() -> None:
    assert Rules() == RULES
    masker = Masker()
    for message in ("upstream timed out after 30s", "Failed password for git from 1.2.3.4 port 22", ""):
        assert masker.template(message) == template(message)
        assert masker.fingerprint(message) == fingerprint(message)


@pytest.mark.parametrize(
    ("knobs", "message", "expected"),
    [
        ({"dot_runs": False}, "processor.....0", "<*>"),
        ({"structured": False}, "open /var/lib/app/data.db now", "open /var/lib/app/data.db now"),
        ({"key_value": False}, "flush done state=idle", "flush done state=idle"),
        ({"spaced_key_value": True}, "packageName = com.example.health", "packageName = <*>"),
        ({"user_name": False}, "session closed for user alice", "session closed for user alice"),
        ({"quoted": False}, "KeyError: 'order_id'", "KeyError: 'order_id'"),
        ({"name_number": False}, "Link Up on eth0", "Link Up on <*>"),
        ({"hosts_files": False}, "crash in chrome.exe", "crash in chrome.exe"),
        ({"dotted_names": 3}, "job com.example.cache.daily late", "job <*> late"),
        ({"dotted_names": 4}, "job com.example.daily late", "job com.example.daily late"),
        ({"constants": 1}, "event CONTAINER_REMOTE_LAUNCH for", "event <*> for"),
        ({"constants": 2}, "hive: SOFTWARE, into", "hive: <*>, into"),
        ({"between_prepositions": False}, "password for root from x", "password for root from x"),
        ({"snake_words": True}, "domain root_backup is gone", "domain <*> is gone"),
        ({"collapse": 0}, "nodes 1 2 3 down", "nodes <*> <*> <*> down"),
        ({"collapse": 2}, "speeds 1 **** 2", "speeds <*>"),
        ({"max_tokens": 2}, "upstream timed out after 30s", "upstream timed"),
    ],
)
def test_each_knob(knobs: dict[str, bool | int], message: str, expected: str) -> None:
    assert Masker(replace(RULES, **knobs)).template(message) == expected  # type: ignore[arg-type]


_SETTINGS = [RULES] + [
    replace(RULES, **{f.name: value})  # type: ignore[arg-type]
    for f in fields(Rules)
    for value in ((not getattr(RULES, f.name)) if isinstance(getattr(RULES, f.name), bool) else 0, 2, 3)
    if value != getattr(RULES, f.name) and not (f.name == "max_tokens" and value)
]


@pytest.mark.parametrize("rules", _SETTINGS, ids=str)
def test_no_setting_masks_what_went_wrong(rules: Rules) -> None:
    """Which exception was raised, and words of the statement, stay under every setting."""
    masker = Masker(rules)
    npe, ioe = "java.lang.NullPointerException: x", "java.io.IOException: x"
    assert masker.fingerprint(npe) != masker.fingerprint(ioe)
    assert masker.fingerprint("upstream timed out") != masker.fingerprint("upstream refused connection")


knob_settings = st.builds(
    Rules,
    **{
        f.name: st.booleans() if isinstance(getattr(RULES, f.name), bool) else st.integers(0, 5)
        for f in fields(Rules)
    },
)


@settings(max_examples=150)
@given(knob_settings, st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from("0123456789.:/=_ ")))
def test_every_setting_is_a_pure_function(rules: Rules, message: str) -> None:
    first = Masker(rules)
    assert FORMAT.fullmatch(first.fingerprint(message))
    assert Masker(rules).fingerprint(message) == first.fingerprint(message)


# Words of the rules that occur in the templates of only one Loghub log, each reviewed as generic: English
# function words, units, file extensions, top-level domains.  A new rule word found in one log only fails
# the test below until it is added here, i.e. until someone has decided it is not that system's word.
GENERIC_WORDS = frozenset((
    "bytes", "class", "com", "conf", "dat", "days", "dll", "had", "int", "into", "jar", "local", "net", "pid",
    "properties", "seconds", "sock", "was",
))


@pytest.mark.skipif(not LOGHUB.is_dir(), reason=f"{LOGHUB} not present")
def test_no_rule_names_a_word_of_one_system() -> None:
    module = importlib.import_module("failure_aware.domain.fingerprint")
    # Every regular expression of the module (each rule and each knob's), and the words it keeps.
    sources = [value.pattern for value in vars(module).values() if isinstance(value, re.Pattern)]
    sources += sorted(module._NOT_NAMES)
    rule_words = {w.lower() for source in sources for w in re.findall(r"[A-Za-z]{3,}", source)}
    logs_of: dict[str, set[str]] = defaultdict(set)
    for path in sorted(LOGHUB.glob("*_2k.log_structured.csv")):
        with path.open(newline="", encoding="utf-8", errors="replace") as fh:
            for row in csv.DictReader(fh):
                for word in re.findall(r"[A-Za-z]+", row["EventTemplate"]):
                    logs_of[word.lower()].add(path.name)
    one_log = {w: sorted(logs_of[w]) for w in rule_words if len(logs_of[w]) == 1}
    assert set(one_log) <= GENERIC_WORDS, {w: v for w, v in one_log.items() if w not in GENERIC_WORDS}


# -- the fast masker equals the plain reference (tests/fingerprint_support.py) -----------------------------
# Masker applies the rules with inline tests and regular expressions rewritten for speed (issue 15); its
# templates must stay byte-identical to those of the rules as first written, under every setting.


def _loghub_contents() -> dict[str, list[str]]:
    contents = {}
    for path in sorted(LOGHUB.glob("*_2k.log_structured.csv")):
        with path.open(newline="", encoding="utf-8", errors="replace") as fh:
            contents[path.name.split("_")[0]] = [row["Content"] for row in csv.DictReader(fh)]
    return contents


# A digest of each log's fingerprints (blake2b of them joined by spaces) under RULES: what 0.2.0 stores.
LOGHUB_DIGESTS = {
    "Android": "5a07b4e291055772", "Apache": "9fe47d9c0bcd0e20", "HPC": "bb41e189d3b2fd5f",
    "Hadoop": "d173b2f12c9657e6", "OpenSSH": "d2127f5f35f0dd23", "Spark": "141cac1c123bc312",
    "Windows": "07da140f97db0f10", "Zookeeper": "af58d4f7a5e09b9d",
}


@pytest.mark.skipif(not LOGHUB.is_dir(), reason=f"{LOGHUB} not present")
def test_same_templates_as_the_reference_on_loghub() -> None:
    logs = _loghub_contents()
    assert set(logs) == set(LOGHUB_DIGESTS)
    plain = reference.Masker(RULES)
    for name, contents in logs.items():
        assert [template(c) for c in contents] == [plain.template(c) for c in contents], name
        fingerprints = " ".join(fingerprint(c) for c in contents)
        digest = hashlib.blake2b(fingerprints.encode(), digest_size=8).hexdigest()
        assert digest == LOGHUB_DIGESTS[name], f"the fingerprints of {name} changed"
    sample = [c for contents in logs.values() for c in contents[::10]]
    for rules in _SETTINGS:  # every knob away from its default, on a tenth of the lines
        fast, plain = Masker(rules), reference.Masker(rules)
        assert [fast.template(c) for c in sample] == [plain.template(c) for c in sample], rules


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [s for item in value for s in _strings(item)] if isinstance(value, list) else []


@pytest.mark.skipif(not HOSTILE.is_file(), reason=f"{HOSTILE} not present")
def test_same_templates_as_the_reference_on_hostile_inputs() -> None:
    data = json.loads(HOSTILE.read_text(encoding="utf-8"))
    texts = _strings(data)
    joined = " ".join(texts)
    length = data["json_generators"]["long_error_message_chars"]
    texts.append((joined * (length // len(joined) + 1))[:length])
    for rules in [RULES, *_SETTINGS]:
        fast, plain = Masker(rules), reference.Masker(rules)
        for text in texts:
            assert fast.template(text) == plain.template(text), (rules, text[:200])


# Pieces that meet at the edges the rewritten expressions care about: token starts and ends, units after a
# space, comparison signs, the guards' substrings, masks already in the text.
PIECES = (
    "1", "42", "0x1f", "3.5", "٣", " ", "  ", "\t", "\n", ".", "..", "<", ">", "~", "=", "<=", "~=", " s",
    "s", " ms", "MB", " KB", "%", " %", "Hz", " bytes", " seconds", "µs", "a", "eth", "de9", "x.y", "a.com",
    "s.sh", "java.lang.X", "/", "/var/x", "C:\\x", "@", "a@b.com", "http://x/y", ":", "::", "-", "_", "'",
    '"', "(", ")", "[", "]", "{", "}", ",", ";", "|", "*", "<*>", "user", "USer", "SER", "ser", "for",
    "from", "the", "bob", "USer bob", "Jan", "Fri Jun 17 07:07:00 2005", "12:30", "fe80::1",
    "fe80:ab:cd:ef:aa:bb:cc:dd", "aa:bb:cc:dd:ee:ff", "aa-bb-cc-dd-ee-ff", "k=v", " = ", "A_B", "CONST",
    "snake_case", "#", "+", "é",
)


@settings(max_examples=500)
@given(
    knob_settings,
    st.lists(st.sampled_from(PIECES), max_size=30).map("".join) | st.text(),
)
@example(RULES, "USer bob")  # the user-name rule's substring test is part of the rule: the word stays
@example(Rules(key_value=False, spaced_key_value=True), "a=b")  # so is the spaced key=value knob's
@example(RULES, "x.y s.sh 5 s.5 7<a.com 8 %.x")  # a unit glued to what follows; a token after "<"
@example(RULES, "x ~=5 <=7")  # comparison signs before a number
@example(RULES, "at fe80:ab:cd:ef:aa:bb:cc:dd")  # seven colons: an IPv6 address only its rule masks
@example(RULES, "mac aa:bb:cc:dd:ee:ff")  # five colons: a MAC address only its rule masks
@example(RULES, "mac aa-bb-cc-dd-ee-ff")  # or five hyphens
def test_same_templates_as_the_reference(rules: Rules, message: str) -> None:
    assert Masker(rules).template(message) == reference.Masker(rules).template(message)
    assert template(message) == reference.template(message)


# -- robustness -------------------------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.text())
def test_never_raises(message: str) -> None:
    assert FORMAT.fullmatch(fingerprint(message))
    assert isinstance(template(message), str)


@given(st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from("0123456789.:/=@'\"<>()[]{}-_x ")))
def test_never_raises_on_punctuation_soup(message: str) -> None:
    assert FORMAT.fullmatch(fingerprint(message))


@pytest.mark.parametrize("message", ["\ud800", "a\udfffb 12", "\x00\x01\x02", "\u2028\u2029", "٣٤ ١٢"])
def test_odd_strings(message: str) -> None:
    assert FORMAT.fullmatch(fingerprint(message))


def test_only_the_first_max_chars_count() -> None:
    head = "error " * (MAX_CHARS // 6 + 1)
    assert fingerprint(head + "alpha") == fingerprint(head + "beta")
    assert fingerprint("alpha " + head) != fingerprint("beta " + head)


@pytest.mark.parametrize(
    "chunk",
    ["a", "1", "a1-", "'", '"', "=", "a=", "/", "/a", ".", "a.", "(", "<*>", "user ", "Mon ", "a@b.", "<1 "],
)
def test_huge_and_pathological_inputs_are_fast(chunk: str) -> None:
    message = chunk * (2_000_000 // len(chunk))
    start = time.perf_counter()
    result = fingerprint(message)
    assert time.perf_counter() - start < 0.5
    assert FORMAT.fullmatch(result)


def test_typical_messages_are_fast() -> None:
    messages = [
        "upstream timed out after 30s",
        "Receiving block blk_-1608999687919862906 src: /10.250.19.102:54106 dest: /10.250.19.102:50010",
        "session opened for user alice by (uid=0)",
        "[instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] Took 19.05 seconds to spawn the instance.",
    ] * 500
    start = time.perf_counter()
    for m in messages:
        fingerprint(m)
    per_message = (time.perf_counter() - start) / len(messages)
    assert per_message < 200e-6  # about 10 µs here; generous for slow machines


def test_mask_constant() -> None:
    assert MASK == "<*>"
    assert template("12") == MASK


# -- accuracy on real logs (skipped without the shared data set) ------------------------------------------


def _grouping_accuracy(truth: list[str], predicted: list[str]) -> float:
    truth_groups: dict[str, list[int]] = defaultdict(list)
    predicted_groups: dict[str, list[int]] = defaultdict(list)
    for i, (t, p) in enumerate(zip(truth, predicted, strict=True)):
        truth_groups[t].append(i)
        predicted_groups[p].append(i)
    correct = sum(
        len(group) for group in truth_groups.values() if predicted_groups[predicted[group[0]]] == group
    )
    return correct / len(truth)


@pytest.mark.skipif(not LOGHUB.is_dir(), reason=f"{LOGHUB} not present")
def test_loghub_mean_grouping_accuracy() -> None:
    files = sorted(LOGHUB.glob("*_2k.log_structured.csv"))
    assert files
    scores = {}
    for path in files:
        with path.open(newline="", encoding="utf-8", errors="replace") as fh:
            rows = list(csv.DictReader(fh))
        scores[path.name] = _grouping_accuracy(
            [r["EventId"] for r in rows], [fingerprint(r["Content"]) for r in rows]
        )
    mean = sum(scores.values()) / len(scores)
    assert mean >= 0.90, scores
