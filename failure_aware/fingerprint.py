"""Error-message fingerprints: one short, stable signature per log statement.

``fingerprint(message)`` groups failures by *what went wrong* rather than by the exact text: two messages
printed by the same statement with different values ("timed out after 30s" / "timed out after 5s") get the
same fingerprint, messages from different statements get different ones.  ``template(message)`` returns the
masked text the fingerprint is computed from, for display (``"upstream timed out after <*>"``).

Unlike a clustering log parser (Drain and friends) this is a pure function of one message: no state, no
training, no dependence on which messages were seen before or in what order, so the same message gets the same
fingerprint in every process, on every machine and in every run (the digest is blake2b, never the salted
builtin ``hash()``).  That is what lets the fingerprint be stored with each failed attempt and compared later.

How a message is masked (every rule is generic; none names a particular system):

1. Only the first ``MAX_CHARS`` (4096) characters are looked at, so a huge message (a dumped payload, a long
   stack trace) costs no more than a 4 KiB one; what varies after that point is ignored.
2. Runs of two or more dots become `` ... `` (``"processor......0"`` is a word and a value, not one token).
3. Structured values are replaced by ``<*>`` wherever they appear: URLs, e-mail addresses, dates written with
   day or month names (``Fri Jun 17 07:07:00 2005``), Windows paths (``C:\\...``) and Unix paths (``/var/x``,
   at least one ``/segment``, not glued to a word so ``read/write`` stays).
4. ``key=value``: the value after ``=`` (when there is no space after it) is masked, including a quoted value or
   a ``{...}`` group.  Keys stay: they say which statement it is.
5. The word after ``user`` (an account name: ``session opened for user alice``) is masked, unless it is a
   little grammatical word (``user from``).
6. Quoted single tokens (``'alice'``, ``"x-123"``) are masked; quoted text with spaces (a sentence) is kept.
7. Tokens (maximal runs of characters other than whitespace and ``,;:()[]{}<>"'=|``) are then masked *whole*
   when they contain a digit: numbers, hex, ids, UUIDs, IPs and ports, versions, sizes and durations
   (``30s``, ``1.5GB``, ``blk_-123`` and ``blk_456`` alike), together with a unit that follows after a space
   (``19.05 seconds``, ``4 KB``) and a leading comparison sign (``<1 sec``).  One exception keeps
   information that usually names a *kind* of thing: a plain word glued to a trailing number keeps the word
   (``eth0`` -> ``eth<*>``, ``awdl0`` -> ``awdl<*>``), unless the word could itself be hex (``de9231``).
   A digit-free dotted token ending in a common top-level domain or file extension (``ns.example.com``,
   ``chrome.exe``, ``Foo.java``) is a host or file name and masked too; other dotted names (Java classes,
   ``android.intent.action.SCREEN_ON``) are kept, because they usually *are* the statement (an exception type).
8. A run of masks separated only by spaces or punctuation (a variable-length list of ids, a date and a time, an
   IP and a port) collapses into one ``<*>``, and a parenthesised group holding only a mask (or nothing) is
   dropped, so "1190 bytes (1.16 KB) sent" and "0 bytes sent" agree.
9. Whitespace runs become one space and the ends are trimmed.

What stays are the words that make up the statement.  The known limit is a variable word without digits that
is not introduced by any of the cues above (``Failed password for root`` vs ``for git``): it stays, and splits
the statement's fingerprint.  On the Loghub-2k benchmark (``bench/fingerprint_accuracy.py``) these rules group
messages more accurately than Drain3 with its default settings.
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
    r"com|net|org|edu|gov|mil|int|io|co|uk|de|cn|jp|fr|ru|us|hk|au|ca|in|br|it|nl|eu|info|biz|local|lan"
    r"|internal|arpa|exe|dll|so|sys|log|txt|xml|json|yaml|yml|conf|cfg|ini|properties|jar|class|java|py"
    r"|js|ts|go|rs|c|h|cc|cpp|hpp|sh|bat|html|htm|css|png|jpg|gif|pdf|zip|gz|tar|tgz|bz2|xz|db|sqlite"
    r"|csv|dat|bin|img|iso|tmp|bak|lock|pid|sock|pem|crt"
)
_SMALL_WORDS = r"from|by|for|to|at|on|in|with|is|was|has|had|not|and|or|of"

# (guards, pattern, replacement): a pattern runs only when one of its guard strings occurs in the text,
# which skips most passes for most messages.  An empty guard always matches.
_PASSES: tuple[tuple[tuple[str, ...], re.Pattern[str], str], ...] = (
    (("..",), re.compile(r"\.{2,}"), " ... "),
    (("://",), re.compile(r"(?<![\w+.\-])[A-Za-z][\w+.\-]*://[^\s\"'<>]*"), MASK),
    (("@",), re.compile(r"(?<![\w.+\-])[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+"), MASK),
    ((":", "-"), re.compile(r"(?<![\w:\-])[0-9A-Fa-f]{2}(?:([:\-])[0-9A-Fa-f]{2})(?:\1[0-9A-Fa-f]{2}){4}(?![\w:\-])"), MASK),
    (
        ("",),
        re.compile(
            rf"{_DAY_OR_MONTH}\s+(?:{_MONTH}\s+)?\d{{1,2}}(?:st|nd|rd|th)?,?(?:\s+\d{{4}})?"
            r"(?:\s+\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?)?(?:\s+\d{4})?(?![\w:])"
        ),
        MASK,
    ),
    ((":\\",), re.compile(r"(?<![\w.])[A-Za-z]:\\[^\s\"'<>|,;()]*"), MASK),
    (("/",), re.compile(r"(?<![\w.\-/~\])])~?(?:/[\w.\-+@%~:#$]+)+/?"), MASK),
    (("=",), re.compile(r"(?<=[\w\])]=)(?:\"[^\"]*\"|'[^']*'|\w*\{[^{}]*\}|\[[^\[\]]*\]|[^\s,;&()\[\]{}<>]+)"), MASK),
    (
        ("ser", "SER"),
        re.compile(rf"(?i)(?<=\buser\s)(?!(?:{_SMALL_WORDS})\b)[^\s,;:()\[\]{{}}<>]+"),
        MASK,
    ),
    (("'", '"'), re.compile(r"(?<!\w)(?:'[^\s']+'|\"[^\s\"]+\")(?!\w)"), MASK),
)

# Candidate tokens for rule 7: tokens holding a digit or a dot, with a trailing unit and a leading comparison
# sign; the callback decides.
_CANDIDATE = re.compile(rf"(?<![^{_DELIMS}])(?:[<>~]=?)?[^{_DELIMS}\d.]*[\d.][^{_DELIMS}]*(?:\s?{_UNITS}(?!\w))?")
_DIGIT = re.compile(r"\d")
_HOST_OR_FILE = re.compile(rf"[A-Za-z_][\w\-]*(?:\.[\w\-]+)*\.(?:{_TLD_OR_EXT})")
_NAME_NUMBER = re.compile(r"(?=[A-Za-z]*[g-zG-Z])([A-Za-z]+)\d[\d.]*")

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
