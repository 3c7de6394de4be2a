"""Answer normalisation and prediction parsing, one rule set shared by every metric.

- `normalize_answer`: lower case, punctuation to spaces, drop English articles, collapse whitespace.
- `parse_label`: free model text -> one label of the task's set, or None (invalid, scored as wrong).
- `parse_entities`: free model text -> list of span strings (`;`, newline, bullet or ", " separated).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_SPACES = re.compile(r"\s+")
_NON_WORD = re.compile(r"[\W_]+")  # anything but letters and digits
_ANSWER_PREFIX = re.compile(
    r"^\s*(?:(?:final\s+)?answer|label|output|response|prediction|classification|relation|sentiment|"
    r"entities|entity|result)\s*(?:is)?\s*[:=-]\s*",
    re.IGNORECASE,
)
_THE_ANSWER_IS = re.compile(r"^\s*the\s+(?:correct\s+)?answer\s+is\s*:?\s*", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*\u2022\u00b7]+|\(?\d{1,3}[.)]|\d{1,3}\s*[:.)])\s+")
_TYPE_TAG = re.compile(r"\s*<[^<>]{1,40}>\s*$")  # BoX style "entity <Type>"
_ITEM_SPLIT = re.compile(r"[;\n]|(?<!\s),\s+")  # ", " splits; " , " (tokenised text) does not
_QUOTES = "\"'`\u201c\u201d\u2018\u2019"

# Alias spellings accepted for a canonical label, used only when that label is in the task's set.
LABEL_ALIASES: dict[str, tuple[str, ...]] = {
    "yes": ("true", "y", "correct", "yes it does", "yes it is"),
    "no": ("false", "n", "incorrect"),
    "maybe": ("possibly", "perhaps", "unclear", "uncertain", "unknown", "not sure", "cannot be determined",
              "can not be determined", "inconclusive"),
    "positive": ("pos",),
    "negative": ("neg",),
    "neutral": ("neu", "mixed"),
    "mechanism": ("pharmacokinetic", "mechanism interaction"),
    "effect": ("pharmacodynamic", "effect interaction"),
    "advise": ("advice", "recommendation", "advise interaction"),
    "int": ("int interaction",),
    "none": ("no interaction", "no relation", "false", "no"),
    "upregulator": ("cpr 3", "cpr3", "activation", "activator", "upregulation", "up regulator"),
    "downregulator": ("cpr 4", "cpr4", "inhibition", "inhibitor", "downregulation", "down regulator"),
    "agonist": ("cpr 5", "cpr5"),
    "antagonist": ("cpr 6", "cpr6"),
    "substrate": ("cpr 9", "cpr9", "product", "substrate or product"),
}
# Whole answers meaning "no entities"; compared after normalize_answer.
NONE_ANSWERS = frozenset({
    "none", "no", "n", "nil", "null", "n a", "na", "empty", "nothing", "no entities", "no entity",
    "there are none", "there are no entities", "not applicable", "none found",
})


# A whole answer saying there is nothing to list ("There are no diseases mentioned in the sentence.").
_NONE_SENTENCE = re.compile(
    r"^(?:none\b|there (?:are|is|were) no\b|no (?:\w+ ){0,3}(?:are |is |were )?"
    r"(?:mentioned|found|named|present|identified|listed)\b)"
)


def normalize_answer(text: str) -> str:
    """Case-fold, turn punctuation and symbols into spaces, remove articles and collapse whitespace."""
    text = _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).lower())
    return _SPACES.sub(" ", _ARTICLES.sub(" ", text)).strip()


def _first_line(text: str) -> str:
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def _strip_prefixes(text: str) -> str:
    text = _THE_ANSWER_IS.sub("", text)
    return _ANSWER_PREFIX.sub("", text)


@lru_cache(maxsize=256)
def _label_candidates(labels: tuple[str, ...]) -> tuple[dict[str, str], tuple[str, ...]]:
    """Normalised spelling -> canonical label (the labels' own spellings win over aliases), and the
    spellings longest first. Cached per label set; callers must not modify the result."""
    candidates: dict[str, str] = {}
    for label in labels:
        for alias in LABEL_ALIASES.get(normalize_answer(label), ()):
            candidates.setdefault(normalize_answer(alias), label)
    for label in labels:
        candidates[normalize_answer(label)] = label
    return candidates, tuple(sorted(candidates, key=len, reverse=True))


def parse_label(text: str, labels: Sequence[str]) -> str | None:
    """Map a model answer onto one label of `labels`; None when no single label can be read from it.

    Rules, in order, on the first non-blank line: exact (after normalisation and alias lookup),
    then the answer starts with a label ("Yes, because ..."), then exactly one distinct label
    appears as whole words ("The interaction is mechanism."). An answer naming several labels is invalid.
    """
    line = normalize_answer(_strip_prefixes(_first_line(text)))
    if not line:
        return None
    candidates, by_length = _label_candidates(tuple(labels))
    if line in candidates:
        return candidates[line]
    for spelling in by_length:
        if line.startswith(spelling + " "):
            return candidates[spelling]
    found: set[str] = set()
    remaining = f" {line} "
    for spelling in by_length:  # longest first so "no interaction" is not also read as "no"
        if f" {spelling} " in remaining:
            found.add(candidates[spelling])
            remaining = remaining.replace(f" {spelling} ", "  ")
    return found.pop() if len(found) == 1 else None


def _clean_span(part: str) -> str:
    part = _BULLET.sub("", part.strip())
    part = _TYPE_TAG.sub("", part)
    part = re.sub(r"^(?:and|or)\s+", "", part.strip(), flags=re.IGNORECASE)
    part = part.strip().rstrip(".").strip().strip(_QUOTES).strip()
    return part


def _json_list(text: str) -> list[str] | None:
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def parse_entities(text: str) -> list[str]:
    """Split a model answer into entity strings; "None"-like answers give []. Order kept, duplicates dropped."""
    text = _strip_prefixes(text.strip())
    whole = normalize_answer(text)
    if whole in NONE_ANSWERS or (len(_ITEM_SPLIT.split(text)) == 1 and _NONE_SENTENCE.match(whole)):
        return []
    parts = _json_list(text)
    if parts is None:
        parts = _ITEM_SPLIT.split(text)
    spans: list[str] = []
    seen: set[str] = set()
    for part in parts:
        span = _clean_span(part)
        key = normalize_answer(span)
        if not key or key in NONE_ANSWERS or key in seen:
            continue
        seen.add(key)
        spans.append(span)
    return spans
