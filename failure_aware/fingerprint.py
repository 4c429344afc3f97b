"""Error-message fingerprints (draft v2)."""

from __future__ import annotations

import hashlib
import re

MAX_CHARS = 4096
MASK = "<*>"

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
_WDAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*\.?,?"
_UNITS = (
    r"(?:[nuµm]?s|secs?|seconds?|mins?|minutes?|h|hrs?|hours?|days?|"
    r"[KMGTP]?i?B|[kKMGTP]b|bytes?|[kKMG]bytes|bits?|[kKMG]?Hz|%)"
)

_SUBS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\.{2,}"), " ... "),
    (re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>]*"), MASK),  # URL
    (re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+"), MASK),  # e-mail
    (re.compile(rf"(?:{_WDAY}\s+)?{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?(?:\s+\d{{4}})?"
                r"(?:\s+\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?)?(?:\s+\d{4})?(?![\w:])"), MASK),
    (re.compile(rf"\b\d{{1,2}}[\s\-/]{_MONTH}[\s\-/]\d{{2,4}}\b"), MASK),
    (re.compile(r"(?<![\w.])[A-Za-z]:\\[^\s\"'<>|,;()]*"), MASK),  # windows path
    (re.compile(r"(?<![\w.\-/~\]\)])~?(?:/[\w.\-+@%~:#$]+)+/?"), MASK),  # unix path
    (re.compile(rf"(?:[<>]=?\s?)?\d[\d.,]*\s?{_UNITS}(?![\w])"), MASK),  # number with a unit
    (re.compile(r"(?<=[\w\])]=)(?:\"[^\"]*\"|'[^']*'|\w*\{[^{}]*\}|[^\s,;&)\]}>]+)"), MASK),  # key=value
    (re.compile(r"(?i)(?<=\buser\s)(?!(?:from|by|for|to|at|on|in|with|is|was|has|had|not|and|or|of)\b)"
                r"[^\s,;:()\[\]{}<>]+"), MASK),  # user NAME
    (re.compile(r"(?<![\w.\-])[A-Za-z_][\w\-]*(?:\.[\w\-]+)*\.[a-z]{2,4}(?![\w.\-])"), MASK),  # host/file
    (re.compile(r"[^\s,;:()\[\]{}<>\"'=|]*\d[^\s,;:()\[\]{}<>\"'=|]*"), MASK),  # token with a digit
    (re.compile(r"<\*>(?:[\s,;:.\-/|#@+*]*<\*>)+"), MASK),  # collapse runs
    (re.compile(r"\s*\((?:\s*|<\*>)\)"), ""),
    (re.compile(r"\s+"), " "),
)


def template(message: str) -> str:
    text = message[:MAX_CHARS]
    for pattern, repl in _SUBS:
        text = pattern.sub(repl, text)
    return text.strip()


def fingerprint(message: str) -> str:
    return hashlib.blake2b(template(message).encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
