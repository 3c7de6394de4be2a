"""DDI-2013 corpus zip (XML per document) -> drug pair interaction classification (label_f1).

Reads the "Test for DDI Extraction task" documents (DrugBank and MedLine). Every `<pair>` becomes
one item: its interaction type (mechanism/effect/advise/int), or `none` when ddi="false".
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

from evaluation.converters import instructions
from evaluation.converters.common import ConvertOptions
from evaluation.schema import EvalItem
from selfspec.errors import InputFileError

log = logging.getLogger(__name__)

LABELS: tuple[str, ...] = ("mechanism", "effect", "advise", "int", "none")
TEST_DIR = "Test for DDI Extraction task/"


def test_members(archive: zipfile.ZipFile) -> list[str]:
    """XML documents of the DDI-extraction test split, in a stable order."""
    return sorted(
        name for name in archive.namelist()
        if TEST_DIR in name and name.endswith(".xml") and "__MACOSX" not in name
        and not name.rsplit("/", 1)[-1].startswith(".")
    )


def _pair_label(pair: ET.Element) -> str | None:
    if pair.get("ddi") != "true":
        return "none"
    kind = (pair.get("type") or "").lower()
    return kind if kind in LABELS else None


def _document_items(root: ET.Element, *, name: str, where: str) -> tuple[list[EvalItem], int]:
    items, untyped = [], 0
    for sentence in root.iter("sentence"):
        text = sentence.get("text", "").strip()
        entities = {e.get("id"): e.get("text", "") for e in sentence.iter("entity")}
        for pair in sentence.iter("pair"):
            first, second = entities.get(pair.get("e1")), entities.get(pair.get("e2"))
            if not first or not second:
                raise InputFileError(where, None, f"pair {pair.get('id')!r} names an unknown entity")
            label = _pair_label(pair)
            if label is None:
                untyped += 1
                label = "int"  # an interaction with no stated type is the corpus's "int" case
            items.append(EvalItem(
                id=str(pair.get("id")), task=name, instruction=instructions.DDI,
                input=f"Drug A: {first} | Drug B: {second} | Sentence: {text}",
                output=label, metric="label_f1", labels=LABELS,
            ))
    return items, untyped


def convert_ddi(src: Path, options: ConvertOptions) -> dict[str, list[EvalItem]]:
    if not zipfile.is_zipfile(src):
        raise InputFileError(str(src), None, "not a zip archive (expected DDICorpus-2013.zip)")
    name = options.task or "ddi"
    items: list[EvalItem] = []
    untyped = 0
    with zipfile.ZipFile(src) as archive:
        members = test_members(archive)
        if not members:
            raise InputFileError(str(src), None, f"no '{TEST_DIR}' XML documents in the archive")
        for member in members:
            where = f"{src}:{member}"
            try:
                root = ET.fromstring(archive.read(member))
            except ET.ParseError as err:
                raise InputFileError(where, None, f"invalid XML: {err}") from err
            doc_items, doc_untyped = _document_items(root, name=name, where=where)
            items.extend(doc_items)
            untyped += doc_untyped
    if untyped:
        log.warning("%s: %d interacting pairs had no type; labelled 'int'", src, untyped)
    return {name: items}
