"""Error-message fingerprints: one short, stable signature per log statement.

``fingerprint(message)`` groups failures by *what went wrong* rather than by the exact text: two messages
printed by the same statement with different values ("timed out after 30s" / "timed out after 5s") get the
same fingerprint, messages from different statements get different ones.  ``template(message)`` returns the
masked text the fingerprint is computed from, for display (``"upstream timed out after <*>"``).

Unlike a clustering log parser (Drain and friends) this is a pure function of one message: no state, no
training, no dependence on which messages were seen before or in what order, so the same message gets the same
fingerprint in every process, on every machine and in every run (the digest is blake2b, never the salted
builtin ``hash()``).  That is what lets the fingerprint be stored with each failed attempt and compared later.

How a message is masked (every rule is generic: none names a particular system or its words):

1. Only the first ``MAX_CHARS`` (4096) characters are looked at, so a huge message (a dumped payload, a long
   stack trace) costs no more than a 4 KiB one; whatever differs after that point is ignored.
2. Runs of two or more dots become `` ... `` (``processor......0`` is a word and a value, not one token).
3. Structured values become ``<*>`` wherever they are: URLs, e-mail, MAC and IPv6 addresses, dates written
   with month names (``Fri Jun 17 07:07:00 2005``, ``15 Nov 1994``; numeric ones fall under rule 7), Windows
   paths (``C:\\...``) and Unix paths (``/var/x``, query strings included; a slash glued to a word, as in
   ``read/write``, is no path).
4. ``key=value`` (no space after ``=``): the value is masked, a quoted value or a ``{...}``/``[...]`` group
   included.  The key stays: it says which statement this is.
5. The word after ``user`` is an account name and is masked (``session opened for user alice``), unless it is
   a small grammatical word (``user from``).
6. A quoted single token (``'alice'``, ``"x-123"``) is masked; quoted text with spaces (a sentence) stays.
7. Tokens (runs of characters other than whitespace and ``,;:()[]{}<>"'=|``) holding a digit are masked
   *whole*: numbers, hex, ids, UUIDs, IP addresses and ports, versions, sizes and durations (``30s``,
   ``1.5GB``; ``blk_-123`` and ``blk_456`` alike), together with a unit after a space (``19.05 seconds``,
   ``4 KB``) and a leading comparison sign (``<1 sec``).  One exception keeps what usually names a *kind*
   of thing: a plain word glued to a trailing number keeps the word (``eth0`` -> ``eth<*>``), unless the
   word could be hex itself (``de9231`` is masked whole).  A digit-free dotted token whose last label is a
   common top-level domain or file extension (``ns.example.com``, ``chrome.exe``) is a host or file name
   and masked too; other dotted names (``java.lang.NullPointerException``) stay, as they usually *are* the
   statement.
8. A run of masks separated only by spaces or punctuation (a variable-length list of ids, a date and its
   time, an address and its port) collapses into one ``<*>``; a parenthesised group holding only a mask, or
   nothing, is dropped ("1190 bytes (1.16 KB) sent" and "0 bytes sent" agree).
9. Whitespace runs become one space; the ends are trimmed.

What stays are the words that make up the statement.  The known limit: a variable word without digits and
without any of the cues above (``Failed password for root`` / ``for git``) stays, and splits its statement.
``bench/fingerprint_accuracy.py`` measures the grouping accuracy of these rules on Loghub-2k logs against
their ground truth, side by side with Drain3.
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
