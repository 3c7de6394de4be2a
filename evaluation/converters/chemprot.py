"""ChemProt relation JSONL (`{"text","label","metadata"}`, entities marked << >> and [[ ]]) -> label_f1.

The 13 fine-grained labels map onto the 5 CPR groups used by BoX; each group gets a readable label.
Every source line becomes one item (ids follow line numbers), so counts match the source file.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from evaluation.converters import instructions
from evaluation.converters.common import ConvertOptions
from evaluation.schema import EvalItem
from selfspec.errors import InputFileError
from selfspec.jsonl import iter_jsonl_lines

log = logging.getLogger(__name__)

CPR_GROUPS: dict[str, str] = {
    "UPREGULATOR": "CPR:3", "ACTIVATOR": "CPR:3", "INDIRECT-UPREGULATOR": "CPR:3",
    "DOWNREGULATOR": "CPR:4", "INHIBITOR": "CPR:4", "INDIRECT-DOWNREGULATOR": "CPR:4",
    "AGONIST": "CPR:5", "AGONIST-ACTIVATOR": "CPR:5", "AGONIST-INHIBITOR": "CPR:5",
    "ANTAGONIST": "CPR:6",
    "SUBSTRATE": "CPR:9", "PRODUCT-OF": "CPR:9", "SUBSTRATE_PRODUCT-OF": "CPR:9",
}
GROUP_LABELS: dict[str, str] = {
    "CPR:3": "upregulator", "CPR:4": "downregulator", "CPR:5": "agonist", "CPR:6": "antagonist",
    "CPR:9": "substrate",
}
LABELS: tuple[str, ...] = tuple(GROUP_LABELS.values())


def convert_chemprot(src: Path, options: ConvertOptions) -> dict[str, list[EvalItem]]:
    path = src / "test.jsonl" if src.is_dir() else src
    if not path.is_file():
        raise InputFileError(str(path), None, "ChemProt file not found")
    name = options.task or "chemprot"
    items: list[EvalItem] = []
    for number, line in iter_jsonl_lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputFileError(str(path), number, f"invalid JSON: {err.msg}") from err
        text, label = (row.get("text"), row.get("label")) if isinstance(row, dict) else (None, None)
        if not isinstance(text, str) or "<<" not in text or "[[" not in text:
            raise InputFileError(str(path), number, "expected 'text' with << >> and [[ ]] entity markers")
        if label not in CPR_GROUPS:
            raise InputFileError(str(path), number, f"unknown ChemProt label {label!r}")
        items.append(EvalItem(
            id=f"{name}-{number:05d}", task=name, instruction=instructions.CHEMPROT,
            input=f"Sentence: {text}", output=GROUP_LABELS[CPR_GROUPS[label]], metric="label_f1", labels=LABELS,
        ))
    ambiguous = sum(1 for n in Counter(i.input for i in items).values() if n > 1)
    if ambiguous:
        log.info("%s: %d sentences occur on several lines (the source lists each relation of a pair)",
                 path, ambiguous)
    return {name: items}
