"""IOB NER files (`token<TAB>tag`, blank line between sentences) -> span-list tasks (entity_f1).

One task per entity type by default (`bc5cdr_chemical`, `bc5cdr_disease`, ...), or one task for a
chosen set of types. Every sentence becomes an item (gold [] when it holds no entity of the task's
types). Tokens are joined with light detokenisation; gold spans are cut from that same text, so
each span occurs verbatim in the input.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from evaluation.converters import instructions
from evaluation.converters.common import ConvertOptions, slug
from evaluation.schema import EvalItem
from selfspec.errors import ConfigError, InputFileError

log = logging.getLogger(__name__)

Token = tuple[str, str]  # (text, tag)
_NO_SPACE_BEFORE = {",", ".", ";", ":", ")", "]", "}", "%", "?", "!", "'s"}
_NO_SPACE_AFTER = {"(", "[", "{"}
_DOCSTART = "-DOCSTART-"


def read_sentences(path: Path) -> list[list[Token]]:
    """Sentences of an IOB file; -DOCSTART- lines are skipped; a malformed line raises file:line."""
    sentences: list[list[Token]] = []
    current: list[Token] = []
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                if current:
                    sentences.append(current)
                current = []
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0]:
                raise InputFileError(str(path), number, f"expected 'token<TAB>tag', got {line[:80]!r}")
            token, tag = parts
            if token == _DOCSTART:
                continue
            if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
                raise InputFileError(str(path), number, f"bad IOB tag {tag!r}")
            current.append((token, tag))
    if current:
        sentences.append(current)
    return sentences


def detokenize(tokens: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Join tokens into readable text; returns the text and each token's (start, end) offsets."""
    text, offsets = "", []
    for i, token in enumerate(tokens):
        glue = i > 0 and token not in _NO_SPACE_BEFORE and tokens[i - 1] not in _NO_SPACE_AFTER
        text += " " if glue else ""
        offsets.append((len(text), len(text) + len(token)))
        text += token
    return text, offsets


def spans(sentence: Sequence[Token]) -> list[tuple[str, int, int]]:
    """(type, first token, last token) per entity. I- after O or after another type opens a new span."""
    found: list[tuple[str, int, int]] = []
    for i, (_, tag) in enumerate(sentence):
        if tag == "O":
            continue
        kind, etype = tag[0], tag[2:]
        if kind == "I" and found and found[-1][0] == etype and found[-1][2] == i - 1:
            found[-1] = (etype, found[-1][1], i)
        else:
            found.append((etype, i, i))
    return found


def entity_types(sentences: Sequence[Sequence[Token]]) -> list[str]:
    return sorted({tag[2:] for sentence in sentences for _, tag in sentence if tag != "O"})


def _instruction(types: Sequence[str]) -> str:
    what = " or ".join(instructions.NER_TYPES.get(t.lower(), f"{t} entity") for t in types)
    return instructions.NER.format(what=what)


_SPLITS = {"test", "devel", "dev", "train", "validation", "valid"}


def _dataset_name(path: Path) -> str:
    """`BC5CDR-IOB/test.tsv` -> bc5cdr; `toy.tsv` -> toy."""
    name = path.parent.name if path.stem.lower() in _SPLITS else path.stem
    return slug(name.removesuffix("-IOB"))


def convert_iob_ner(src: Path, options: ConvertOptions) -> dict[str, list[EvalItem]]:
    path = src / "test.tsv" if src.is_dir() else src
    if not path.is_file():
        raise InputFileError(str(path), None, "IOB file not found")
    sentences = read_sentences(path)
    found = entity_types(sentences)
    if options.types:
        unknown = [t for t in options.types if t not in found]
        if unknown:
            raise ConfigError(f"{path}: entity types {unknown} not found (present: {found})")
        groups = [tuple(options.types)]
    else:
        groups = [(t,) for t in found]
    base = options.task or _dataset_name(path)
    tasks: dict[str, list[EvalItem]] = {}
    single = len(groups) == 1 and (len(found) == 1 or options.task is not None)
    for group in groups:
        name = base if single else f"{base}_{slug('_'.join(group))}"
        instruction = _instruction(group)
        items = []
        for number, sentence in enumerate(sentences, start=1):
            text, offsets = detokenize([token for token, _ in sentence])
            gold = [text[offsets[a][0]:offsets[b][1]] for etype, a, b in spans(sentence) if etype in group]
            items.append(EvalItem(
                id=f"{name}-{number:05d}", task=name, instruction=instruction, input=text,
                output=tuple(dict.fromkeys(gold)), metric="entity_f1",
            ))
        tasks[name] = items
        log.info("%s: %d sentences, %d with %s", name, len(items), sum(1 for i in items if i.output), group)
    return tasks
