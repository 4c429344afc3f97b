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
3. Structured values become ``<*>`` wherever they are: URLs, e-mail and MAC addresses, dates written with day
   or month names (``Fri Jun 17 07:07:00 2005``), Windows paths (``C:\\...``) and Unix paths (``/var/x``,
   query strings included; a slash glued to a word, as in ``read/write``, is no path).
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

__all__ = ["MASK", "MAX_CHARS", "fingerprint", "template"]

MAX_CHARS = 4096
"""Only this many leading characters of a message are looked at."""

MASK = "<*>"
"""What a variable part of a message is replaced with in ``template``."""

_DIGEST_BYTES = 8  # 16 hex characters

# Characters that end a token.  '.', '-', '_', '/', '#', '@', '+', '*' and '%' do not.
_DELIMS = r"\s,;:()\[\]{}<>\"'=|"

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?"
_DAY_OR_MONTH = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun|Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?,?"
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
_DATE = (
    rf"{_DAY_OR_MONTH}\s+(?:{_MONTH}\s+)?\d{{1,2}}(?:st|nd|rd|th)?,?(?:\s+\d{{4}})?"
    r"(?:\s+\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?)?(?:\s+\d{4})?(?![\w:])"
)
_WINDOWS_PATH = r"(?<![\w.])[A-Za-z]:\\[^\s\"'<>|,;()]*"
_UNIX_PATH = r"(?<![\w.\-/~\])])~?(?:/[\w.\-+@%~:#$?&=]+)+/?"
_KEY_VALUE = (
    r"(?<=[\w\])]=)"  # right after "key=" (no space)
    r"(?:\"[^\"]*\"|'[^']*'|\w*\{[^{}]*\}|\[[^\[\]]*\]|[^\s,;&()\[\]{}<>]+)"
)
_USER_NAME = rf"(?i)(?<=\buser\s)(?!(?:{_SMALL_WORDS})\b)[^\s,;:()\[\]{{}}<>]+"
_QUOTED_TOKEN = r"(?<!\w)(?:'[^\s']+'|\"[^\s\"]+\")(?!\w)"

# (guards, pattern, replacement), applied in order.  A pass runs only when one of its guard strings occurs in
# the text (cheap ``in`` tests that skip most passes for most messages); the empty guard always matches.
_PASSES: tuple[tuple[tuple[str, ...], re.Pattern[str], str], ...] = (
    (("..",), re.compile(r"\.{2,}"), " ... "),
    (("://",), re.compile(_URL), MASK),
    (("@",), re.compile(_EMAIL), MASK),
    ((":", "-"), re.compile(_MAC), MASK),
    (("",), re.compile(_DATE), MASK),
    ((":\\",), re.compile(_WINDOWS_PATH), MASK),
    (("/",), re.compile(_UNIX_PATH), MASK),
    (("=",), re.compile(_KEY_VALUE), MASK),
    (("ser", "SER"), re.compile(_USER_NAME), MASK),
    (("'", '"'), re.compile(_QUOTED_TOKEN), MASK),
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
    for guards, pattern, replacement in _PASSES:
        if any(guard in text for guard in guards):
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
