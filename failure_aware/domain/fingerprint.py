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
8. A single word between two prepositions (``Failed password for git from ...``) is a name and masked,
   unless it is a small grammatical word (``sent to the from address``); "as" is no preposition here
   (``stored as bytes in memory`` names a kind).
9. A run of masks separated only by spaces or punctuation (a variable-length list of ids, a date and its
   time, an address and its port) collapses into one ``<*>``; a parenthesised group holding only a mask, or
   nothing, is dropped ("1190 bytes (1.16 KB) sent" and "0 bytes sent" agree).  A ``*`` between masks is
   kept (``( 3552 **** 3515 )``: a placeholder the statement printed is not a separator).
10. Whitespace runs become one space; the ends are trimmed.

What stays are the words that make up the statement.  The known limit: a variable word without digits and
without any of the cues above (``domain root_backup is no longer served``) stays, and splits its statement.

**Knobs.**  Where a rule could reasonably go either way (mask dotted names or not, constants in capitals,
how runs collapse, ...) it is a field of ``Rules``; ``RULES`` holds the defaults the product uses and
``Masker(rules)`` applies any other setting (for the benchmark; stored fingerprints always come from
``RULES``).  ``bench/fingerprint_accuracy.py`` measures the grouping accuracy of these rules on Loghub-2k
logs against their ground truth, side by side with Drain3, and tunes the knobs leave-one-out (on seven logs,
scoring the eighth): the defaults are the setting that search picks on all eight.  Changing a default
changes the fingerprints of failures recorded from then on; stored ones are history and stay as they were.

**Speed.**  ``Masker.template`` is written for speed (1.3x the rules of 0.1 on the Loghub logs,
docs/benchmarks.md section 10): the tests of whether a rule is worth running are inline, and the token
pass's expression is rewritten into a faster form with the same matches.  ``tests/fingerprint_support.py``
keeps the rules as first written, and the tests check that both give the same templates, byte for byte,
under every setting.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MASK", "MAX_CHARS", "RULES", "Masker", "Rules", "fingerprint", "template"]

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

# The regular expressions of rules 2-6 (the test of whether each is worth running is in ``Masker.template``).
_DOT_RUN = re.compile(r"\.{2,}")
_URL = re.compile(r"(?<![\w+.\-])[A-Za-z][\w+.\-]*://[^\s\"'<>]*")
_EMAIL = re.compile(r"(?<![\w.+\-])[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")
_MAC = re.compile(r"(?<![\w:\-])[0-9A-Fa-f]{2}([:\-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}(?![\w:\-])")
_IPV6 = re.compile(
    r"(?<![\w:.])(?=[0-9A-Fa-f:]*\d)(?=[0-9A-Fa-f:]*::|(?:[0-9A-Fa-f]{1,4}:){7})"
    r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])"
)
_TIME = r"\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?"
# "Fri Jun 17 07:07:00 2005", "March 5, 2024 10:00", "Tue, 15 Nov 1994 08:12:31", "10/Oct/2000:13:55:36"
_DATE = re.compile(
    rf"(?:{_DAY},?\s+)?"
    rf"(?:{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?(?:\s+\d{{4}})?|\d{{1,2}}[ \-/]{_MONTH}[ \-/]\d{{2,4}})"
    rf"(?:[\s:]+{_TIME})?(?:\s+\d{{4}})?(?![\w:])"
)
_MONTH_NAME = re.compile(r"Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec")  # what every date above holds
_WINDOWS_PATH = re.compile(r"(?<![\w.])[A-Za-z]:\\[^\s\"'<>|,;()]*")
_UNIX_PATH = re.compile(r"(?<![\w.\-/~\])])~?(?:/[\w.\-+@%~:#$?&=]*[\w\-+@%~#$?&=])+/?")
_KEY_VALUE = re.compile(
    r"=(?<=[\w\])]=)"  # "key=" (the literal '=' first lets the regex engine jump between candidates)
    r"(?:\"[^\"]*\"|'[^']*'|\w*\{[^{}]*\}|\[[^\[\]]*\]|[^\s,;&()\[\]{}<>]+)"
)
_SPACED_KEY_VALUE = re.compile(r"(?<=\w) ?= ?(?=[^\s=])[^\s,;&()\[\]{}<>]+")
_USER_NAME = re.compile(rf"(?i)(?<=\buser\s)(?!(?:{_SMALL_WORDS})\b)[^\s,;:()\[\]{{}}<>]+")
_QUOTED_TOKEN = re.compile(r"(?<!\w)(?:'[^\s']+'|\"[^\s\"]+\")(?!\w)")
# The knobs ``constants`` (1: with an underscore, 2: every capitalised word) and ``snake_words``.
_CONSTANT = re.compile(rf"(?<![^{_DELIMS}])[A-Z][A-Z\d]*(?:_[A-Z\d]+)+(?![^{_DELIMS}])")
_CAPITALISED = re.compile(rf"(?<![^{_DELIMS}])[A-Z][A-Z_]{{3,}}(?![^{_DELIMS}])")
_SNAKE_WORD = re.compile(rf"(?<![^{_DELIMS}])[a-z][a-z\d]*(?:_[a-z\d]+)+(?![^\s,;)\]}}>])")

_PREPOSITIONS = frozenset(("for", "from", "by", "to", "at", "on", "onto", "of", "in", "into", "with", "via"))
_NOT_NAMES = _PREPOSITIONS | frozenset(_SMALL_WORDS.split("|")) | frozenset(
    ("a", "an", "the", "this", "that", "these", "those", "its", "their", "his", "her", "our", "your", "my",
     "each", "every", "all", "any", "some", "no", "one")
)  # a small grammatical word between prepositions is no name
_NAME = re.compile(r"[A-Za-z][\w\-]*")


@dataclass(frozen=True)
class Rules:
    """The knobs of the masking rules; ``RULES`` (the defaults) is what the product uses.

    Every knob is generic: it names a kind of token (a number glued to a word, a dotted name, a constant in
    capitals), never a word or format of one particular system.  The defaults are the setting that
    ``bench/fingerprint_accuracy.py`` finds best on the Loghub-2k logs; its leave-one-out run tunes them on
    seven logs and scores the eighth, which is how well they carry to logs never seen.  Stored fingerprints
    come from the defaults only: a fingerprint is comparable with another only under the same rules.
    """

    dot_runs: bool = True
    """Rule 2: runs of two or more dots become `` ... ``."""
    structured: bool = True
    """Rule 3: URLs, e-mail, MAC and IPv6 addresses, dates with month names and paths are masked."""
    key_value: bool = True
    """Rule 4: the value of ``key=value`` is masked."""
    spaced_key_value: bool = False
    """``key = value`` (spaces around ``=``): the one token after ``= `` is masked too."""
    user_name: bool = True
    """Rule 5: the word after ``user`` is masked."""
    quoted: bool = True
    """Rule 6: a quoted single token is masked."""
    name_number: bool = True
    """Rule 7: a plain word glued to a trailing number keeps the word (``eth0`` -> ``eth<*>``)."""
    hosts_files: bool = True
    """Rule 7: digit-free dotted host and file names (known top-level domain or extension) are masked."""
    dotted_names: int = 0
    """Digit-free dotted names of at least this many labels whose last label is lower-case
    (``com.example.cache.daily``: a property, a job, a package) are masked; 0 keeps them.  A name ending in a
    capitalised label is a class or a constant (``java.io.IOException``, ``action.SCREEN_ON``) and always
    stays: which exception was raised is what went wrong, so no setting masks it."""
    constants: int = 0
    """Words in capitals: 0 keeps them, 1 masks those with an underscore (``CONTAINER_LAUNCH``), 2 masks every
    capitalised word of four or more letters (``SOFTWARE``)."""
    between_prepositions: bool = True
    """A single word between two prepositions (``for alice from``) is a name and masked."""
    snake_words: bool = False
    """A lower-case word with an underscore standing alone (``root_backup``) is an identifier and masked."""
    collapse: int = 1
    """Rule 8: runs of masks collapse into one, parentheses holding only a mask are dropped.  0: no
    collapsing; 1: across whitespace and ``,;:.-/|#@+`` only; 2: ``*`` too (``<*> **** <*>`` collapses)."""
    max_tokens: int = 0
    """Only the first this many tokens of the template are kept; 0 keeps them all."""


RULES = Rules()
"""The default rules: what ``fingerprint`` and ``template`` use."""


# Rule 7.  Candidates are the tokens holding a digit or a dot (with a unit after a space and a leading
# comparison sign); the masker's ``mask_token`` decides.  The look-behind anchors a match at a token start.
# The plain form, ``(?<![^D])(?:[<>~]=?)?[^D\d.]*[\d.][^D]*(?:\s?UNITS(?!\w))?`` (D: the delimiters), is
# written for speed here, matching the same text (tests/fingerprint_support.py keeps the plain form and a
# test compares): the runs are possessive (``*+``: giving characters back cannot make ``[\d.]`` or the end
# of the token match), and a unit is looked for only after a whitespace character followed by a unit's
# first letter (the token ends at a delimiter, and no unit starts with one).  About 0.5 µs a message.
_UNIT_START = "nuµmshdkKMGTPbBH%"  # the first character of every unit in _UNITS
_CANDIDATE = re.compile(
    rf"(?<![^{_DELIMS}])(?:[<>~]=?)?[^{_DELIMS}\d.]*+[\d.][^{_DELIMS}]*+"
    rf"(?:\s(?=[{_UNIT_START}]){_UNITS}(?!\w))?"
)
_DIGIT = re.compile(r"\d")
_DIGIT_OR_DOT = re.compile(r"[\d.]")
_HOST_OR_FILE = re.compile(rf"[A-Za-z_][\w\-]*(?:\.[\w\-]+)*\.(?:{_TLD_OR_EXT})")
_NAME_NUMBER = re.compile(r"(?=[A-Za-z]*[g-zG-Z])([A-Za-z]+)\d[\d.]*")  # a word that is not hex, a number
_DOTTED_NAME = re.compile(r"[A-Za-z_$][\w$\-]*(?:[./][A-Za-z_$][\w$\-]*)+\.?")

# Rule 9.
_COLLAPSE = re.compile(r"<\*>(?:[\s,;:.\-/|#@+*]*<\*>)+")
_COLLAPSE_NO_STAR = re.compile(r"<\*>(?:[\s,;:.\-/|#@+]*<\*>)+")
_EMPTY_PARENS = re.compile(r"\s*\((?:\s*|<\*>)\)")


class Masker:
    """The masking rules compiled for one ``Rules`` setting: ``template`` and ``fingerprint`` of a message."""

    __slots__ = ("_between", "_collapse", "_mask_token", "_max_tokens", "_switches", "_word_rules", "rules")

    def __init__(self, rules: Rules = RULES) -> None:
        self.rules = rules
        self._switches = (
            rules.dot_runs, rules.structured, rules.key_value, rules.spaced_key_value, rules.user_name,
            rules.quoted,
        )
        self._word_rules = _word_rules(rules)
        self._mask_token = _token_masker(rules)
        self._collapse = {0: None, 1: _COLLAPSE_NO_STAR}.get(rules.collapse, _COLLAPSE)
        self._between = rules.between_prepositions
        self._max_tokens = rules.max_tokens

    def template(self, message: str) -> str:
        """The message with its variable parts replaced by ``<*>`` (see the module docstring for the rules).

        Looks at the first ``MAX_CHARS`` characters only; never raises for a ``str``.
        """
        text = message[:MAX_CHARS]
        dot_runs, structured, key_value, spaced_key_value, user_name, quoted = self._switches
        # Rules 2-6, in this order, each on the text the previous ones left.  A rule runs only when a
        # substring test says the text may hold a match, which skips most rules for most messages.  The
        # tests are written out rather than looped over as (test, pattern) pairs: the loop cost about 1 µs a
        # message, more than the rules it skipped (issue 15).  Every test but two only saves time: it is
        # true whenever the rule's pattern can match.  The two (spaced key=value, user name) are part of
        # their rules and are kept exactly as first written.
        if dot_runs and ".." in text:
            text = _DOT_RUN.sub(" ... ", text)
        if structured:
            if "://" in text:
                text = _URL.sub(MASK, text)
            if "@" in text:
                text = _EMAIL.sub(MASK, text)
            colons = text.count(":")
            if colons >= 5 or text.count("-") >= 5:  # a MAC address has five separators of one kind
                text = _MAC.sub(MASK, text)
            # An IPv6 address has "::" or seven colons.  Masking a MAC address can only lower the count,
            # so the count taken before it is still a safe test.
            if colons >= 7 or "::" in text:
                text = _IPV6.sub(MASK, text)
            if _MONTH_NAME.search(text) is not None:
                text = _DATE.sub(MASK, text)
            if ":\\" in text:
                text = _WINDOWS_PATH.sub(MASK, text)
            if "/" in text:
                text = _UNIX_PATH.sub(MASK, text)
        if key_value and "=" in text:
            text = _KEY_VALUE.sub("=" + MASK, text)
        if spaced_key_value and (" =" in text or "= " in text):  # its pattern also matches "a=b"
            text = _SPACED_KEY_VALUE.sub(" = " + MASK, text)
        # This test is part of the rule, not only a shortcut: a text holding neither "ser" nor "SER" keeps
        # the word after "USer" or "useR", and stored fingerprints depend on that.
        if user_name and ("ser" in text or "SER" in text):
            text = _USER_NAME.sub(MASK, text)
        if quoted and ("'" in text or '"' in text):
            text = _QUOTED_TOKEN.sub(MASK, text)
        for needle, pattern in self._word_rules:  # knobs off by default: capitals, snake_case words
            if needle in text:
                text = pattern.sub(MASK, text)
        if _DIGIT_OR_DOT.search(text) is not None:  # a fast scan spares the token pass most digit-free texts
            text = _CANDIDATE.sub(self._mask_token, text)
        if self._collapse is not None and MASK in text:
            text = self._collapse.sub(MASK, text)
            if "(" in text:
                text = _EMPTY_PARENS.sub("", text)
        words = text.split()
        if self._between:  # C-level tests skip the messages without two prepositions (nearly 90 %)
            found = _PREPOSITIONS.intersection(words)
            if len(found) > 1 or (found and words.count(next(iter(found))) > 1):
                _mask_between_prepositions(words)
        if self._max_tokens:
            del words[self._max_tokens :]
        return " ".join(words)

    def fingerprint(self, message: str) -> str:
        """A 16-hex-character signature of ``template(message)``: equal for messages of one log statement.

        Deterministic across processes and runs (blake2b, not ``hash()``); never raises for a ``str`` (lone
        surrogates included).
        """
        data = self.template(message).encode("utf-8", "surrogatepass")
        return hashlib.blake2b(data, digest_size=_DIGEST_BYTES).hexdigest()


def _mask_between_prepositions(words: list[str]) -> None:
    """A single word between two prepositions (``for alice from``) becomes ``<*>``, in place."""
    flags = list(map(_PREPOSITIONS.__contains__, words))
    for i in range(1, len(words) - 1):
        if flags[i - 1] and flags[i + 1] and words[i] not in _NOT_NAMES and _NAME.fullmatch(words[i]):
            words[i] = MASK


def _word_rules(rules: Rules) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """The word-masking knobs ``rules`` turns on, each with a substring every match of its pattern holds."""
    found: list[tuple[str, re.Pattern[str]]] = []
    if rules.constants == 1:
        found.append(("_", _CONSTANT))
    elif rules.constants >= 2:
        found.append(("", _CAPITALISED))  # "" is in every text
    if rules.snake_words:
        found.append(("_", _SNAKE_WORD))
    return tuple(found)


def _token_masker(rules: Rules) -> Callable[[re.Match[str]], str]:
    """Rule 7's decision for one candidate token (one holding a digit or a dot) under ``rules``."""
    hosts_files = rules.hosts_files
    name_number = rules.name_number
    min_dots = rules.dotted_names - 1 if rules.dotted_names > 1 else 0

    def mask_token(match: re.Match[str]) -> str:
        token = match.group()
        if "0" <= token[0] <= "9":  # the common case, a number: masked whole (a word must come first)
            return MASK
        if _DIGIT.search(token) is None:
            if hosts_files and _HOST_OR_FILE.fullmatch(token):
                return MASK
            if (
                min_dots
                and token.count(".") >= min_dots
                and _DOTTED_NAME.fullmatch(token)
                and token.rstrip(".").rpartition(".")[2][:1].islower()
            ):
                return MASK
            return token
        if name_number:
            named = _NAME_NUMBER.fullmatch(token)
            if named:
                return named.group(1) + MASK
        return MASK

    return mask_token


_DEFAULT = Masker(RULES)

template = _DEFAULT.template
fingerprint = _DEFAULT.fingerprint
