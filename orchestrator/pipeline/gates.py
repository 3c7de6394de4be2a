"""Response-quality gates: pure checks of one generated response, one verdict and reason each.

The paper filters instructions only; responses from a small model also come back empty, looping,
cut off, parroting the prompt, or in prose where the instruction asked for one of its own labels.
Such samples teach exactly the habits self-specialization should remove, so each is gated: counted
by gate name (`GATES`, a fixed set: also the /metrics label values) and its instruction replaced.

Thresholds, and the crafted cases that justify them (tests/unit/test_gates.py):
- repetitive: the share of word 3-grams that repeat an earlier 3-gram of the same response.
  An answer said twice scores ~0.45, a phrase looping to the token limit 0.7-0.9; fluent answers
  and semicolon lists score ~0, a templated three-part answer 0.14. 0.3 sits between, and needs
  at least MIN_REPETITION_WORDS words (a 5-word answer has too few 3-grams to judge).
- copied: ROUGE-L F1 >= 0.8 with the instruction or the input means the response is that text
  again (a grammar fix of a long input scores ~0.7-0.8, a parroted instruction ~1.0). For a passage,
  which is longer than any answer, what counts is the share of the response's words found in order
  in it (LCS / response length) >= 0.9, for responses of at least MIN_PASSAGE_COPY_WORDS words:
  a short extraction ('CYP3A4') is an answer, not a copy.
- off_options: only when the instruction names its options unambiguously (yes/no[/maybe],
  true/false, a list after 'as'/'answer'/'choose from'/':' that ends the sentence, lettered
  choices); lists introduced by 'e.g.', 'such as' or 'including' are examples, never options, and
  'one sentence or less' is no option list (options never start with an article, number word or
  preposition). The answer must name an option in its first sentence.
- too_short: min_words defaults to 1 (only a response without words, or only a label such as
  'Answer:', is too short): half the biomedical seed outputs are one- or two-word labels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.pipeline.filtering import lcs_length, rouge_l, tokenize
from selfspec.settings import GatesSection

# Every value a gated sample's status can take (bounded: /metrics labels), in the order checked.
GATES = ("empty", "too_short", "repetitive", "truncated", "copied", "off_options", "judge_low", "judge_unparsed")
# A kept sample whose judge reply had no score is still counted, under this name (judge_unparsed = "keep").
JUDGE_UNPARSED_KEPT = "judge_unparsed_kept"
GATE_REASONS = (*GATES, JUDGE_UNPARSED_KEPT)

MIN_REPETITION_WORDS = 10
REPETITION_N = 3
MIN_PASSAGE_COPY_WORDS = 20
OPTION_CHECK_WORDS = 40  # an answer names its option early; later words are explanation

_LABEL_WORDS = frozenset({"answer", "output", "input", "response", "instruction", "task"})


@dataclass(frozen=True)
class GateVerdict:
    status: str  # "ok" or one of GATES
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


OK = GateVerdict("ok")


def repeated_ngram_share(tokens: Sequence[str], n: int = REPETITION_N) -> float:
    """Share of the n-grams that repeat an earlier n-gram (0: none repeats; (k-1)/k: said k times)."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def passage_copy_share(response: Sequence[str], passage: Sequence[str]) -> float:
    """Share of the response's words that appear, in order, in the passage."""
    return lcs_length(list(response), list(passage)) / len(response) if response else 0.0


# ---- options the instruction lists ----

_OPTION = r"[\"'\u201c]?[A-Za-z0-9][\w\-]*(?:[ \t]+[A-Za-z0-9][\w\-]*){0,2}[\"'\u201d]?"
_OPTION_LIST = re.compile(
    rf"(?:\b(?:as|into|with|answer|reply|respond|label\s+it)\s+|[:(]\s*)(?!(?:with|as|into|using)\b)"
    rf"(?:(?:only|either|one\s+of|one\s+label|"
    rf"one\s+of\s+the\s+following)\s*:?\s*)?"
    rf"(?P<list>{_OPTION}(?:\s*[,;/]\s*{_OPTION})*\s*,?\s*(?:\bor\b|\band\b|/)\s*{_OPTION}"
    rf"|{_OPTION}(?:\s*[,;/]\s*{_OPTION}){{2,}})"
    rf"\s*\)?\s*[.?!]?\s*$",
    re.I,
)
_ANSWER_FORMAT = re.compile(
    r"\b(?:answer|reply|respond|classify|categori[sz]e|label|choose|select|pick|output|options?|choices?)\b", re.I)
_EXAMPLES = re.compile(r"\b(?:e\.g\.|for example|such as|including|etc)\b|\bi\.e\.", re.I)
_YES_NO = re.compile(r"\byes\s*(?:,|/|\bor\b)\s*no\b(?:\s*,?\s*(?:\bor\b|/)?\s*(maybe)\b)?", re.I)
_TRUE_FALSE = re.compile(r"\btrue\s*(?:/|\bor\b)\s*false\b", re.I)
_LETTER = re.compile(r"(?:(?<=\s)|^)\(?([A-H])\)\s+", re.M)
_SPLIT = re.compile(r"\s*(?:,|;|/|\bor\b|\band\b)\s*", re.I)
_NOT_AN_OPTION_START = frozenset("""
a an the one two three some any each every your his her their its this that these those short brief
single more less other another in on at by for from to of with within using based briefly""".split())
_SENTENCE = re.compile(r"(?<=[.?!])\s+(?=[A-Z(])")
_FIRST_SENTENCE = re.compile(r"(?<=[.?!])\s|\n")


@dataclass(frozen=True)
class Options:
    """The answers an instruction allows: option texts, and their letters for lettered choices."""

    texts: tuple[str, ...]
    letters: tuple[str, ...] = ()


def _lettered(text: str) -> Options | None:
    marks = list(_LETTER.finditer(text))
    letters = [m.group(1) for m in marks]
    # A run 'A) ... B) ...' (consecutive letters from A); anything else is not a choice list.
    if len(marks) < 2 or letters != [chr(ord("A") + i) for i in range(len(letters))]:
        return None
    ends = [m.start() for m in marks[1:]] + [len(text)]
    texts = tuple(text[m.end():end].strip().splitlines()[0].strip() if text[m.end():end].strip() else ""
                  for m, end in zip(marks, ends, strict=True))
    return Options(texts, tuple(letters))


def _word_list(sentence: str) -> tuple[str, ...] | None:
    if not _ANSWER_FORMAT.search(sentence) or _EXAMPLES.search(sentence):
        return None
    match = _OPTION_LIST.search(sentence)
    if match is None:
        return None
    options = tuple(o.strip(" \t\"'\u201c\u201d") for o in _SPLIT.split(match.group("list")) if o.strip())
    if len(options) < 2 or any(o.split()[0].lower() in _NOT_AN_OPTION_START for o in options):
        return None
    return options


def listed_options(instruction: str, input_text: str = "") -> Options | None:
    """The options the instruction names, when unambiguous; None when it names none (or vaguely)."""
    if (match := _YES_NO.search(instruction)) is not None:
        return Options(("yes", "no", "maybe") if match.group(1) else ("yes", "no"))
    if _TRUE_FALSE.search(instruction):
        return Options(("true", "false"))
    for sentence in _SENTENCE.split(instruction.strip()):
        if (options := _word_list(sentence)) is not None:
            return Options(options)
    return _lettered(f"{instruction}\n{input_text}")


def _contains(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return n > 0 and any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


def answers_an_option(response: str, options: Options) -> bool:
    """The response's first sentence names an option: its text (or, leniently, the option's first word:
    'unsafe' answers 'safe or unsafe for pregnancy'), or its letter as 'B)', '(B)', 'B.', 'B:' or 'B'."""
    head = response.strip()
    if options.letters:
        match = re.match(r"^(?:the\s+answer\s+is\s*:?\s*|answer\s*:\s*)?\(?([A-H])(?:[).:]|\s*$)", head, re.I)
        if match is not None and match.group(1).upper() in options.letters:
            return True
    first = _FIRST_SENTENCE.split(head, maxsplit=1)[0]
    words = tokenize(first)[:OPTION_CHECK_WORDS]
    return any(_contains(words, tokenize(option)[:1]) for option in options.texts)


# ---- the gates ----

def check_response(
    response: str,
    *,
    instruction: str,
    input_text: str = "",
    passages: Sequence[str] = (),
    truncated: bool = False,
    config: GatesSection,
) -> GateVerdict:
    """The first gate this response fails, in `GATES` order, or OK. `truncated`: the generator stopped
    at the token limit (finish_reason 'length') before any stop sequence."""
    words = tokenize(response)
    if not words:
        return GateVerdict("empty", "no words" if response.strip() else "empty response")
    if config.too_short:
        if len(words) < config.min_words:
            return GateVerdict("too_short", f"{len(words)} words < {config.min_words}")
        if all(w in _LABEL_WORDS for w in words):
            return GateVerdict("too_short", f"only a label: {response.strip()[:40]!r}")
    if config.repetitive and len(words) >= MIN_REPETITION_WORDS:
        share = repeated_ngram_share(words)
        if share >= config.max_repeated_ngrams:
            return GateVerdict("repetitive", f"{share:.0%} of word {REPETITION_N}-grams repeat")
    if config.truncated and truncated:
        return GateVerdict("truncated", "cut off by the token limit")
    if config.copied:
        if (verdict := _copied(words, instruction, input_text, passages, config)) is not None:
            return verdict
    if config.off_options and (options := listed_options(instruction, input_text)) is not None:
        if not answers_an_option(response, options):
            shown = ", ".join(options.letters or options.texts)
            return GateVerdict("off_options", f"answer is none of: {shown}"[:200])
    return OK


def _copied(words: list[str], instruction: str, input_text: str, passages: Sequence[str],
            config: GatesSection) -> GateVerdict | None:
    for name, source in (("instruction", instruction), ("input", input_text)):
        score = rouge_l(words, tokenize(source))
        if score >= config.copy_rouge_l:
            return GateVerdict("copied", f"repeats the {name} (ROUGE-L {score:.2f})")
    if len(words) >= MIN_PASSAGE_COPY_WORDS:
        for number, passage in enumerate(passages, start=1):
            share = passage_copy_share(words, tokenize(passage))
            if share >= config.copy_passage_share:
                return GateVerdict("copied", f"{share:.0%} of its words copied from passage [{number}]")
    return None
