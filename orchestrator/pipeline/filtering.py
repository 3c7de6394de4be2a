"""Instruction filters (Self-Instruct / Alpaca rules) and the ROUGE-L near-duplicate index.

Near-duplicates: ROUGE-L F1 > threshold against any kept instruction (or seed) drops a candidate.
Checking every pair is O(n^2) ROUGE computations. Instead a prefix-filter index proposes candidates
and exact ROUGE-L runs on those only, with no false negatives: F1 = 2*LCS/(m+n) > tau needs
more than tau*(m+n)/2 shared token occurrences, i.e. a token-occurrence Jaccard above
J = (tau/2)/(1 - tau/2). Under any fixed global order, two sets sharing alpha >= k elements share
their k smallest common ones within their first |x| - ceil(J*|x|) + k elements (at most
|x| - alpha elements of x are not shared, so the k-th shared one sits no later than that). The index
uses k = 2 (pkwise prefix filtering): a member is a candidate only when two occurrences of its
prefix are in the query's, which a pair meeting on one common word never is. Pairs so short that
fewer shared occurrences can pass (m + n < 2(k-1)/tau) are compared directly. PPJoin's positional bound
skips whole posting groups: meeting at position i here and j there, the overlap is at most the
occurrences met so far plus min(rest after i, rest after j).
Ordering frequent words last keeps the prefixes rare, so each lookup touches few members: the order
ranks tokens by their document frequency class (log2 of how many kept texts hold them), measured
when the index was last rebuilt. Any fixed order is correct, so the index re-derives the order and
re-indexes every prefix whenever it has grown by a quarter: a word that turns frequent mid-run stops
being a candidate generator, at an amortised O(1) cost per insertion.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from selfspec.settings import FiltersSection

# rouge-score's tokenizer, inlined: importing the package pulls in nltk (and scikit-learn and pandas
# when present), ~1.5 s on every start. tests/unit/test_filtering.py checks scores against the package.
_NON_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")

# Frequent words go last in the global order; any fixed order is correct, this one is fast.
_COMMON = frozenset("""
a an the of in on at to for from by with and or but not no is are was were be been being this that these
those it its as into than then which what who whom whose when where why how all any each every some such
following given below above text sentence passage input output answer question task list identify extract
classify explain describe name write provide give based using use one two three if do does did your you
""".split())


def tokenize(text: str) -> list[str]:
    """Same tokens as rouge-score (lowercase alphanumeric words), so scores match the package."""
    return _NON_ALPHANUMERIC.sub(" ", text.lower()).split()


def lcs_length(a: list[str], b: list[str]) -> int:
    """Longest common subsequence length, bit-parallel (Hyyro 2004): one pass over `a` with integer
    ops on a bit per token of `b`, instead of the len(a) x len(b) table of Python steps."""
    if not a or not b:
        return 0
    matches: dict[str, int] = {}
    for position, token in enumerate(b):
        matches[token] = matches.get(token, 0) | (1 << position)
    mask = (1 << len(b)) - 1
    row = mask  # a 0 bit marks a column where the LCS grew
    for token in a:
        hit = row & matches.get(token, 0)
        row = ((row + hit) | (row - hit)) & mask
    return len(b) - row.bit_count()


def rouge_l(a: list[str], b: list[str]) -> float:
    """ROUGE-L F1 between token lists (symmetric, equals rouge-score's rougeL fmeasure)."""
    if not a or not b:
        return 0.0
    lcs = lcs_length(a, b)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(b), lcs / len(a)
    return 2 * precision * recall / (precision + recall)


def _occurrences(tokens: list[str]) -> list[tuple[str, int]]:
    """Token occurrences ('the', 1), ('the', 2): set overlap of these = multiset token overlap."""
    seen: dict[str, int] = {}
    result = []
    for token in tokens:
        seen[token] = seen.get(token, 0) + 1
        result.append((token, seen[token]))
    return result


def _postings() -> dict[tuple[str, int], dict[tuple[int, int], list[int]]]:
    return defaultdict(lambda: defaultdict(list))


# k of the pkwise prefix: occurrences a candidate must share within the prefixes. k = 3 cuts candidates
# 3-4x but walks one more prefix position: ~1.5x slower per lookup at 45k kept (bench: Zipf fake).
SHARED = 2
REBUILD_GROWTH = 1.25  # re-derive the token order when the index has grown by this factor
REBUILD_MIN = 256


class NearDuplicateIndex:
    """Kept texts, queried for any member with ROUGE-L F1 above the threshold."""

    def __init__(self, threshold: float = 0.7, *, exhaustive: bool = False) -> None:
        self.threshold = threshold
        self.exhaustive = exhaustive  # all-pairs mode: the reference the indexed mode is tested against
        self.jaccard = (threshold / 2) / (1 - threshold / 2) - 1e-9  # margin for rounding
        self._tokens: list[list[str]] = []
        self._occurrences: list[set[tuple[str, int]]] = []
        # occurrence -> (its position in the member's ordered prefix, member length) -> members
        self._postings: dict[tuple[str, int], dict[tuple[int, int], list[int]]] = _postings()
        self._by_length: dict[int, list[int]] = defaultdict(list)  # for pairs too short for SHARED
        self._document_frequency: Counter[str] = Counter()
        self._frequency_class: dict[str, int] = {}  # frozen between rebuilds: the order must not move
        self._indexed_at = 0  # size at the last rebuild
        self.comparisons = 0  # exact ROUGE-L computations
        self.candidates = 0  # pairs looked at (all kept members in exhaustive mode)
        self.rebuilds = 0

    def __len__(self) -> int:
        return len(self._tokens)

    def _order_key(self, item: tuple[str, int]) -> tuple[bool, int, int, int, str]:
        """A total order on token occurrences: rare tokens, and later repeats of a token, first."""
        token, occurrence = item
        return (token in _COMMON, self._frequency_class.get(token, 0), -occurrence, zlib.crc32(token.encode()),
                token)

    def _prefix(self, occurrences: list[tuple[str, int]]) -> list[tuple[str, int]]:
        ordered = sorted(occurrences, key=self._order_key)
        return ordered[: len(ordered) - math.ceil(self.jaccard * len(ordered)) + SHARED]

    def find(self, text: str) -> tuple[float, int] | None:
        """(score, member index) of the first member above threshold, else None."""
        tokens = tokenize(text)
        if not tokens:
            return None
        occurrences = _occurrences(tokens)
        if self.exhaustive:
            candidates: Iterable[int] = range(len(self._tokens))
        else:
            candidates = self._candidates(len(tokens), self._prefix(occurrences))
        occurrence_set = set(occurrences)
        for index in candidates:
            self.candidates += 1
            other = self._tokens[index]
            # Sound bounds before the quadratic LCS: LCS <= shared occurrences <= min length.
            total = len(tokens) + len(other)
            # Strict '<': a bound equal to the threshold may still score a hair above it in floating point.
            if 2 * min(len(tokens), len(other)) / total < self.threshold:
                continue
            if 2 * len(occurrence_set & self._occurrences[index]) / total < self.threshold:
                continue
            self.comparisons += 1
            score = rouge_l(tokens, other)
            if score > self.threshold:
                return score, index
        return None

    def _candidates(self, length: int, prefix: list[tuple[str, int]]) -> list[int]:
        """Members sharing SHARED occurrences of the prefixes, plus members short enough that fewer
        shared occurrences may pass; in member order. Postings are grouped by (position, member length)
        so one bound settles a whole group: where even a member met SHARED - 1 times before cannot reach
        the needed overlap, the group is skipped. Skips only ever cut a suffix of a member's meetings
        (both positions grow), so the others are all counted; set operations keep the counting in C:
        met[c] holds the members met more than c times."""
        met: list[set[int]] = [set() for _ in range(SHARED)]
        for i, key in enumerate(prefix):
            for (j, other), members in self._postings.get(key, {}).items():
                if SHARED + min(length - i - 1, other - j - 1) >= self.threshold * (length + other) / 2:
                    for count in range(SHARED - 1, 0, -1):
                        met[count].update(met[count - 1].intersection(members))
                    met[0].update(members)
        found = list(met[-1])
        for other in range(1, math.ceil(2 * (SHARED - 1) / self.threshold - length)):
            found += [index for index in self._by_length.get(other, ()) if index not in met[-1]]
        found.sort()
        return found

    def _post(self, index: int, occurrences: list[tuple[str, int]]) -> None:
        length = len(occurrences)
        for position, key in enumerate(self._prefix(occurrences)):
            self._postings[key][(position, length)].append(index)

    def add(self, text: str) -> None:
        tokens = tokenize(text)
        occurrences = _occurrences(tokens)
        index = len(self._tokens)
        self._tokens.append(tokens)
        self._occurrences.append(set(occurrences))
        if self.exhaustive:
            return
        self._by_length[len(tokens)].append(index)
        self._document_frequency.update(set(tokens))
        if len(self._tokens) >= max(REBUILD_MIN, REBUILD_GROWTH * self._indexed_at):
            self._rebuild()
            return
        self._post(index, occurrences)

    def _rebuild(self) -> None:
        """New order from the current document frequencies, then every member's prefix again."""
        self._frequency_class = {token: n.bit_length() for token, n in self._document_frequency.items() if n > 1}
        self._postings = _postings()
        for index, tokens in enumerate(self._tokens):
            self._post(index, _occurrences(tokens))
        self._indexed_at = len(self._tokens)
        self.rebuilds += 1


@dataclass(frozen=True)
class Candidate:
    text: str
    input: str = ""


_BAD_START = re.compile(r"^[^A-Za-z0-9\"'(\[]")


class InstructionFilter:
    """Applies the rules in order and remembers what it kept; one verdict per candidate."""

    def __init__(self, config: FiltersSection, *, exhaustive: bool = False) -> None:
        self.config = config
        self.near = NearDuplicateIndex(config.rouge_l_threshold, exhaustive=exhaustive)
        self._exact: set[str] = set()
        words = sorted(config.blacklist, key=len, reverse=True)
        self._blacklist = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.I) if words else None

    @staticmethod
    def _key(text: str, input_text: str = "") -> str:
        return " ".join(tokenize(text)) + " || " + " ".join(tokenize(input_text))

    def remember(self, text: str, input_text: str = "") -> None:
        """Add an already-accepted text (a seed, an earlier round's instruction, a resumed item)."""
        self._exact.add(self._key(text, input_text))
        self.near.add(text)

    def verdict(self, candidate: Candidate) -> tuple[str, str]:
        """(verdict, reason) for a candidate, without remembering it."""
        text = candidate.text.strip()
        words = len(text.split())
        if words < self.config.min_words:
            return "too_short", f"{words} words < {self.config.min_words}"
        if words > self.config.max_words:
            return "too_long", f"{words} words > {self.config.max_words}"
        if self._blacklist is not None and (match := self._blacklist.search(text)):
            return "blacklisted", f"mentions {match.group(0)!r} (not a text task)"
        if re.search(r"\bwrite a (program|code|script)\b", text, re.I):
            return "blacklisted", "asks for a program"
        if _BAD_START.match(text) or not text[0].isascii():
            return "bad_start", f"starts with {text[0]!r}"
        if self._key(text, candidate.input) in self._exact:
            return "exact_duplicate", "same instruction and input as a kept one"
        found = self.near.find(text)
        if found is not None:
            return "near_duplicate", f"ROUGE-L {found[0]:.2f} > {self.near.threshold}"
        return "kept", ""

    def check(self, candidate: Candidate) -> tuple[str, str]:
        """Verdict, remembering the candidate when kept (so later candidates are compared to it)."""
        verdict, reason = self.verdict(candidate)
        if verdict == "kept":
            self.remember(candidate.text, candidate.input)
        return verdict, reason
