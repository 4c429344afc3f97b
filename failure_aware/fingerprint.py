"""Error-message fingerprints (draft v3)."""

from __future__ import annotations

import hashlib
import re

MAX_CHARS = 4096
MASK = "<*>"

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?"
_DAY_OR_MONTH = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun|Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?,?"
_UNITS = (
    r"(?:[nuµm]?s|secs?|seconds?|mins?|minutes?|h|hrs?|hours?|days?|"
    r"(?:[KMGTP]i?)?B|[kKMGTP]b|bytes?|[kKMG]bytes|bits?|[kKMG]?Hz|%)"
)
_D = r"\s,;:()\[\]{}<>\"'=|"  # token delimiters
_TLD_EXT = (
    r"com|net|org|edu|gov|mil|int|io|co|uk|de|cn|jp|fr|ru|us|hk|au|ca|in|br|it|nl|eu|info|biz|local|lan"
    r"|internal|arpa|exe|dll|so|sys|log|txt|xml|json|yaml|yml|conf|cfg|ini|properties|jar|class|java|py"
    r"|js|ts|go|rs|c|h|cc|cpp|hpp|sh|bat|html|htm|css|png|jpg|gif|pdf|zip|gz|tar|tgz|bz2|xz|db|sqlite"
    r"|csv|dat|bin|img|iso|tmp|bak|lock|pid|sock|pem|crt"
)

_SUBS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("..", re.compile(r"\.{2,}"), " ... "),
    ("://", re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>]*"), MASK),  # URL
    ("@", re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+"), MASK),  # e-mail
    ("", re.compile(rf"{_DAY_OR_MONTH}\s+(?:{_MONTH}\s+)?\d{{1,2}}(?:st|nd|rd|th)?,?(?:\s+\d{{4}})?"
                r"(?:\s+\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?)?(?:\s+\d{4})?(?![\w:])"), MASK),
    (":\\", re.compile(r"(?<![\w.])[A-Za-z]:\\[^\s\"'<>|,;()]*"), MASK),  # windows path
    ("/", re.compile(r"(?<![\w.\-/~\]\)])~?(?:/[\w.\-+@%~:#$]+)+/?"), MASK),  # unix path
    ("=", re.compile(r"(?<=[\w\])]=)(?:\"[^\"]*\"|'[^']*'|\w*\{[^{}]*\}|[^\s,;&)\]}>]+)"), MASK),  # key=value
    ("ser", re.compile(r"(?i)(?<=\buser\s)(?!(?:from|by|for|to|at|on|in|with|is|was|has|had|not|and|or|of)\b)"
                r"[^\s,;:()\[\]{}<>]+"), MASK),  # user NAME
    ("", re.compile(
        rf"(?<![^{_D}])(?:"
        rf"[A-Za-z_][\w\-]*(?:\.[\w\-]+)*\.(?:{_TLD_EXT})(?![^{_D}])"  # host or file name
        rf"|(?=[A-Za-z]*[g-zG-Z])([A-Za-z]+)\d[\d.]*(?![^{_D}])"  # name + number: eth0
        rf"|(?:[<>~]=?)?[^{_D}\d]*\d[^{_D}]*(?:\s?{_UNITS}(?!\w))?"  # any token with a digit
        r")"), r"\1" + MASK),
    ("<*>", re.compile(r"<\*>(?:[\s,;:.\-/|#@+*]*<\*>)+"), MASK),  # collapse runs
    ("(", re.compile(r"\s*\((?:\s*|<\*>)\)"), ""),
)


def template(message: str) -> str:
    text = message[:MAX_CHARS]
    for guard, pattern, repl in _SUBS:
        if guard in text:
            text = pattern.sub(repl, text)
    return " ".join(text.split())


def fingerprint(message: str) -> str:
    return hashlib.blake2b(template(message).encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
