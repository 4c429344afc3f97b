"""The fingerprint rules as they were written before they were made fast: the reference the product equals.

A frozen copy of ``failure_aware/domain/fingerprint.py`` at commit 69a40d3 (issue 15, session 4): one guarded
pass per rule, a loop over them, a token callback.  The product's ``Masker`` applies the same rules with
faster regular expressions and inline guards (issue 15, session 5); tests/unit/test_fingerprint.py checks
that both give byte-identical templates, on the Loghub logs, the hostile inputs and generated text, under
every setting of ``Rules``.  Change a rule in both places, deliberately: stored fingerprints depend on it.
See the product module for what each rule does.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from failure_aware.domain.fingerprint import RULES, Rules

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


_PREPOSITIONS = frozenset(("for", "from", "by", "to", "at", "on", "onto", "of", "in", "into", "with", "via"))
_NOT_NAMES = _PREPOSITIONS | frozenset(_SMALL_WORDS.split("|")) | frozenset(
    ("a", "an", "the", "this", "that", "these", "those", "its", "their", "his", "her", "our", "your", "my",
     "each", "every", "all", "any", "some", "no", "one")
)  # a small grammatical word between prepositions is no name
_NAME = re.compile(r"[A-Za-z][\w\-]*")




def _has(*needles: str) -> str | Callable[[str], bool]:
    if len(needles) == 1:  # most guards: a plain substring, tested inline (no function call per pass)
        return needles[0]
    return lambda text: any(needle in text for needle in needles)


def _always(text: str) -> bool:
    return True


_MONTH_NAME = re.compile(r"Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec")


def _maybe_date(text: str) -> bool:
    return _MONTH_NAME.search(text) is not None


def _maybe_mac(text: str) -> bool:
    return text.count(":") >= 5 or text.count("-") >= 5


def _maybe_ipv6(text: str) -> bool:
    return "::" in text or text.count(":") >= 7


_Pass = tuple[str | Callable[[str], bool], re.Pattern[str], str]  # (substring or test, pattern, replacement)

# Rule 7.  Candidates are the tokens holding a digit or a dot (with a unit after a space and a leading
# comparison sign); the masker's ``mask_token`` decides.  The look-behind anchors a match at a token start.
_CANDIDATE = re.compile(
    rf"(?<![^{_DELIMS}])(?:[<>~]=?)?[^{_DELIMS}\d.]*[\d.][^{_DELIMS}]*(?:\s?{_UNITS}(?!\w))?"
)
_DIGIT = re.compile(r"\d")
_DIGIT_OR_DOT = re.compile(r"[\d.]")
_HOST_OR_FILE = re.compile(rf"[A-Za-z_][\w\-]*(?:\.[\w\-]+)*\.(?:{_TLD_OR_EXT})")
_NAME_NUMBER = re.compile(r"(?=[A-Za-z]*[g-zG-Z])([A-Za-z]+)\d[\d.]*")  # a word that is not hex, a number
_DOTTED_NAME = re.compile(r"[A-Za-z_$][\w$\-]*(?:[./][A-Za-z_$][\w$\-]*)+\.?")

# Rule 8.
_COLLAPSE = re.compile(r"<\*>(?:[\s,;:.\-/|#@+*]*<\*>)+")
_COLLAPSE_NO_STAR = re.compile(r"<\*>(?:[\s,;:.\-/|#@+]*<\*>)+")
_EMPTY_PARENS = re.compile(r"\s*\((?:\s*|<\*>)\)")


class Masker:
    """The masking rules compiled for one ``Rules`` setting: ``template`` and ``fingerprint`` of a message."""

    __slots__ = ("_between", "_collapse", "_mask_token", "_max_tokens", "_passes", "rules")

    def __init__(self, rules: Rules = RULES) -> None:
        self.rules = rules
        self._passes = _compile_passes(rules)
        self._mask_token = _token_masker(rules)
        self._collapse = {0: None, 1: _COLLAPSE_NO_STAR}.get(rules.collapse, _COLLAPSE)
        self._between = rules.between_prepositions
        self._max_tokens = rules.max_tokens

    def template(self, message: str) -> str:
        """The message with its variable parts replaced by ``<*>`` (see the module docstring for the rules).

        Looks at the first ``MAX_CHARS`` characters only; never raises for a ``str``.
        """
        text = message[:MAX_CHARS]
        for guard, pattern, replacement in self._passes:
            if (guard in text) if guard.__class__ is str else guard(text):  # type: ignore[operator]
                text = pattern.sub(replacement, text)
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


def _compile_passes(rules: Rules) -> tuple[_Pass, ...]:
    """The (guard, pattern, replacement) passes of ``rules``, in order.  A pass runs only when its guard says
    the text may hold a match: cheap substring tests that skip most passes for most messages."""
    passes: list[_Pass] = []
    if rules.dot_runs:
        passes.append((_has(".."), re.compile(r"\.{2,}"), " ... "))
    if rules.structured:
        passes += [
            (_has("://"), re.compile(_URL), MASK),
            (_has("@"), re.compile(_EMAIL), MASK),
            (_maybe_mac, re.compile(_MAC), MASK),
            (_maybe_ipv6, re.compile(_IPV6), MASK),
            (_maybe_date, re.compile(_DATE), MASK),
            (_has(":\\"), re.compile(_WINDOWS_PATH), MASK),
            (_has("/"), re.compile(_UNIX_PATH), MASK),
        ]
    if rules.key_value:
        passes.append((_has("="), re.compile(_KEY_VALUE), "=" + MASK))
    if rules.spaced_key_value:
        passes.append((_has(" = ", " =", "= "), re.compile(r"(?<=\w) ?= ?(?=[^\s=])[^\s,;&()\[\]{}<>]+"),
                       " = " + MASK))
    if rules.user_name:
        passes.append((_has("ser", "SER"), re.compile(_USER_NAME), MASK))
    if rules.quoted:
        passes.append((_has("'", '"'), re.compile(_QUOTED_TOKEN), MASK))
    if rules.constants == 1:
        constant = rf"(?<![^{_DELIMS}])[A-Z][A-Z\d]*(?:_[A-Z\d]+)+(?![^{_DELIMS}])"
        passes.append((_has("_"), re.compile(constant), MASK))
    elif rules.constants >= 2:
        passes.append((_always, re.compile(rf"(?<![^{_DELIMS}])[A-Z][A-Z_]{{3,}}(?![^{_DELIMS}])"), MASK))
    if rules.snake_words:
        passes.append((
            _has("_"),
            re.compile(rf"(?<![^{_DELIMS}])[a-z][a-z\d]*(?:_[a-z\d]+)+(?![^\s,;)\]}}>])"),
            MASK,
        ))
    return tuple(passes)


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
