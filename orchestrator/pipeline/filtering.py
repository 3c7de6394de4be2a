"""Instruction filters (Self-Instruct / Alpaca rules) and the ROUGE-L near-duplicate index.

Near-duplicates: ROUGE-L F1 > threshold against any kept instruction (or seed) drops a candidate.
Checking every pair is O(n^2) ROUGE computations; instead a MinHash LSH index over token
*occurrences* proposes candidates and exact ROUGE-L runs on those only. ROUGE-L F1 > 0.7 implies a
multiset token Jaccard above ~0.54, so an LSH tuned for a 0.3 threshold and weighted toward recall
misses such pairs only with negligible probability; a test checks the decisions against all-pairs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from datasketch import MinHash, MinHashLSH
from rouge_score.tokenizers import DefaultTokenizer

from selfspec.settings import FiltersSection

_TOKENIZER = DefaultTokenizer(use_stemmer=False)
NUM_PERM = 64
LSH_THRESHOLD = 0.3


def tokenize(text: str) -> list[str]:
    """Same tokens as rouge-score (lowercase alphanumeric words), so scores match the package."""
    return list(_TOKENIZER.tokenize(text))


def lcs_length(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(a: list[str], b: list[str]) -> float:
    """ROUGE-L F1 between token lists (symmetric, equals rouge-score's rougeL fmeasure)."""
    if not a or not b:
        return 0.0
    lcs = lcs_length(a, b)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(b), lcs / len(a)
    return 2 * precision * recall / (precision + recall)


def _occurrence_shingles(tokens: list[str]) -> set[bytes]:
    seen: dict[str, int] = {}
    shingles = set()
    for token in tokens:
        seen[token] = seen.get(token, 0) + 1
        shingles.add(f"{token}#{seen[token]}".encode())
    return shingles


class NearDuplicateIndex:
    """Kept texts, queried for any member with ROUGE-L F1 above the threshold."""

    def __init__(self, threshold: float = 0.7, *, exhaustive: bool = False) -> None:
        self.threshold = threshold
        self.exhaustive = exhaustive  # all-pairs mode: the reference the LSH mode is tested against
        self._tokens: list[list[str]] = []
        self._shingles: list[set[bytes]] = []
        self._lsh = MinHashLSH(threshold=LSH_THRESHOLD, num_perm=NUM_PERM, weights=(0.05, 0.95))
        self.comparisons = 0

    def __len__(self) -> int:
        return len(self._tokens)

    def _minhash(self, shingles: set[bytes]) -> MinHash:
        sketch = MinHash(num_perm=NUM_PERM)
        sketch.update_batch(list(shingles))
        return sketch

    def find(self, text: str) -> tuple[float, int] | None:
        """(score, member index) of the first member above threshold, else None."""
        tokens = tokenize(text)
        if not tokens:
            return None
        shingles = _occurrence_shingles(tokens)
        if self.exhaustive:
            candidates: Iterable[int] = range(len(self._tokens))
        else:
            candidates = sorted(int(key) for key in self._lsh.query(self._minhash(shingles)))
        for index in candidates:
            other = self._tokens[index]
            # Sound bounds before the quadratic LCS: LCS <= shared token occurrences <= min length,
            # and F1 = 2*LCS/(m+n).
            total = len(tokens) + len(other)
            if 2 * min(len(tokens), len(other)) / total <= self.threshold:
                continue
            if not self.exhaustive and 2 * len(shingles & self._shingles[index]) / total <= self.threshold:
                continue
            self.comparisons += 1
            score = rouge_l(tokens, other)
            if score > self.threshold:
                return score, index
        return None

    def add(self, text: str) -> None:
        tokens = tokenize(text)
        shingles = _occurrence_shingles(tokens)
        index = len(self._tokens)
        self._tokens.append(tokens)
        self._shingles.append(shingles)
        if not self.exhaustive and tokens:
            self._lsh.insert(str(index), self._minhash(shingles))


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
