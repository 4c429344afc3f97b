"""The fingerprint rules of 0.1 (before issue 15), frozen: the baseline fingerprint_accuracy.py compares with.

A verbatim copy of ``failure_aware/fingerprint.py`` (now ``failure_aware/domain/fingerprint.py``) as it
was before its rules got knobs (see that module for what each rule does).  Benchmark code only: the product
never imports it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

__all__ = ["MASK", "MAX_CHARS", "fingerprint", "template"]

MAX_CHARS = 4096
"""Only this many leading characters of a message are looked at."""

MASK = "<*>"
"""What a variable part of a message is replaced with in ``template``."""

_DIGEST_BYTES = 8  # 16 hex characters

# Characters that end a token.  '.', '-', '_', '/', '#', '@', '+', '*' and '%' do not.
_DELIMS = r"\s,;:()\[\]{}<>\"'=|"

_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t|tember)?"
    r"|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\b\.?"
)
_DAY = r"(?:Mon|Tue(?:s)?|Wed(?:nes)?|Thu(?:rs)?|Fri|Sat(?:ur)?|Sun)(?:day)?\b\.?"
_UNITS = (
    r"(?:[nuµm]?s|secs?|seconds?|mins?|minutes?|h|hrs?|hours?|days?|"
    r"(?:[KMGTP]i?)?B|[kKMGTP]b|bytes?|[kKMG]bytes|bits?|[kKMG]?Hz|%)"
)
# Last label of a host name (common top-level domains) or of a file name (common extensions).
_TLD_OR_EXT = (
    r"com|net|org|edu|gov|mil|int|io|co|uk|de|cn|jp|fr|ru|us|hk|au|ca|br|nl|eu|info|biz|local|lan"
    r"|internal|arpa|exe|dll|so|sys|log|txt|xml|json|yaml|yml|conf|cfg|ini|properties|jar|class|java|py"
    r"|js|ts|go|rs|c|h|cc|cpp|hpp|sh|bat|html|htm|css|png|jpg|gif|pdf|zip|gz|tar|tgz|bz2|xz|db|sqlite"
    r"|csv|dat|bin|img|iso|tmp|bak|lock|pid|sock|pem|crt"
)
_SMALL_WORDS = r"from|by|for|to|at|on|in|with|is|was|has|had|not|and|or|of"

_URL = r"(?<![\w+.\-])[A-Za-z][\w+.\-]*://[^\s\"'<>]*"
_EMAIL = r"(?<![\w.+\-])[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+"
_MAC = r"(?<![\w:\-])[0-9A-Fa-f]{2}([:\-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}(?![\w:\-])"
_IPV6 = (
    r"(?<![\w:.])(?=[0-9A-Fa-f:]*\d)(?=[0-9A-Fa-f:]*::|(?:[0-9A-Fa-f]{1,4}:){7})"
    r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])"
)
_TIME = r"\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?"
# "Fri Jun 17 07:07:00 2005", "March 5, 2024 10:00", "Tue, 15 Nov 1994 08:12:31", "10/Oct/2000:13:55:36"
_DATE = (
    rf"(?:{_DAY},?\s+)?"
    rf"(?:{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?(?:\s+\d{{4}})?|\d{{1,2}}[ \-/]{_MONTH}[ \-/]\d{{2,4}})"
    rf"(?:[\s:]+{_TIME})?(?:\s+\d{{4}})?(?![\w:])"
)
_WINDOWS_PATH = r"(?<![\w.])[A-Za-z]:\\[^\s\"'<>|,;()]*"
_UNIX_PATH = r"(?<![\w.\-/~\])])~?(?:/[\w.\-+@%~:#$?&=]*[\w\-+@%~#$?&=])+/?"
_KEY_VALUE = (
    r"=(?<=[\w\])]=)"  # "key=" (the literal '=' first lets the regex engine jump between candidates)
    r"(?:\"[^\"]*\"|'[^']*'|\w*\{[^{}]*\}|\[[^\[\]]*\]|[^\s,;&()\[\]{}<>]+)"
)
_USER_NAME = rf"(?i)(?<=\buser\s)(?!(?:{_SMALL_WORDS})\b)[^\s,;:()\[\]{{}}<>]+"
_QUOTED_TOKEN = r"(?<!\w)(?:'[^\s']+'|\"[^\s\"]+\")(?!\w)"


def _has(*needles: str) -> Callable[[str], bool]:
    if len(needles) == 1:  # most guards: a plain substring test, without a generator per call
        needle = needles[0]
        return lambda text: needle in text
    return lambda text: any(needle in text for needle in needles)


_MONTH_NAME = re.compile(r"Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec")


def _maybe_date(text: str) -> bool:
    return _MONTH_NAME.search(text) is not None


def _maybe_mac(text: str) -> bool:
    return text.count(":") >= 5 or text.count("-") >= 5


def _maybe_ipv6(text: str) -> bool:
    return "::" in text or text.count(":") >= 7


# (guard, pattern, replacement), applied in order.  A pass runs only when its guard says the text may hold a
# match: cheap substring tests that skip most passes for most messages.
_PASSES: tuple[tuple[Callable[[str], bool], re.Pattern[str], str], ...] = (
    (_has(".."), re.compile(r"\.{2,}"), " ... "),
    (_has("://"), re.compile(_URL), MASK),
    (_has("@"), re.compile(_EMAIL), MASK),
    (_maybe_mac, re.compile(_MAC), MASK),
    (_maybe_ipv6, re.compile(_IPV6), MASK),
    (_maybe_date, re.compile(_DATE), MASK),
    (_has(":\\"), re.compile(_WINDOWS_PATH), MASK),
    (_has("/"), re.compile(_UNIX_PATH), MASK),
    (_has("="), re.compile(_KEY_VALUE), "=" + MASK),
    (_has("ser", "SER"), re.compile(_USER_NAME), MASK),
    (_has("'", '"'), re.compile(_QUOTED_TOKEN), MASK),
)

# Rule 7.  Candidates are the tokens holding a digit or a dot (with a unit after a space and a leading
# comparison sign); ``_mask_token`` decides.  The look-behind anchors a match at the start of a token.
_CANDIDATE = re.compile(
    rf"(?<![^{_DELIMS}])(?:[<>~]=?)?[^{_DELIMS}\d.]*[\d.][^{_DELIMS}]*(?:\s?{_UNITS}(?!\w))?"
)
_DIGIT = re.compile(r"\d")
_HOST_OR_FILE = re.compile(rf"[A-Za-z_][\w\-]*(?:\.[\w\-]+)*\.(?:{_TLD_OR_EXT})")
_NAME_NUMBER = re.compile(r"(?=[A-Za-z]*[g-zG-Z])([A-Za-z]+)\d[\d.]*")  # a word that is not hex, a number

# Rule 8.
_COLLAPSE = re.compile(r"<\*>(?:[\s,;:.\-/|#@+*]*<\*>)+")
_EMPTY_PARENS = re.compile(r"\s*\((?:\s*|<\*>)\)")


def _mask_token(match: re.Match[str]) -> str:
    token = match.group()
    if _DIGIT.search(token) is None:
        return MASK if _HOST_OR_FILE.fullmatch(token) else token
    named = _NAME_NUMBER.fullmatch(token)
    return named.group(1) + MASK if named else MASK


def template(message: str) -> str:
    """The message with its variable parts replaced by ``<*>`` (see the module docstring for the rules).

    Looks at the first ``MAX_CHARS`` characters only; never raises for a ``str``.
    """
    text = message[:MAX_CHARS]
    for guard, pattern, replacement in _PASSES:
        if guard(text):
            text = pattern.sub(replacement, text)
    text = _CANDIDATE.sub(_mask_token, text)
    if MASK in text:
        text = _COLLAPSE.sub(MASK, text)
        if "(" in text:
            text = _EMPTY_PARENS.sub("", text)
    return " ".join(text.split())


def fingerprint(message: str) -> str:
    """A 16-hex-character signature of ``template(message)``: equal for messages of one log statement.

    Deterministic across processes and runs (blake2b, not ``hash()``); never raises for a ``str`` (lone
    surrogates included).
    """
    data = template(message).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=_DIGEST_BYTES).hexdigest()
