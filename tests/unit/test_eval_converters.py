"""Converters: counts on the public reference files (counted here independently), synthetic files otherwise."""

from __future__ import annotations

import json
import re
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from evaluation.converters import convert, convert_tasks
from evaluation.converters.chemprot import CPR_GROUPS, GROUP_LABELS
from evaluation.converters.hoc import HALLMARKS
from evaluation.converters.iob_ner import detokenize
from evaluation.schema import load_task_file
from selfspec.errors import ConfigError, InputFileError

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared/reference/eval"
NER_DIRS = ["AnatEM-IOB", "BC2GM-IOB", "BC5CDR-IOB", "JNLPBA", "NCBI-disease-IOB", "linnaeus-IOB"]


def _reference(relative: str) -> Path:
    path = REFERENCE / relative
    if not path.exists():
        pytest.skip(f"reference data not present: {path}")
    return path


# ---- IOB NER ----

def _raw_ner_counts(path: Path) -> tuple[int, Counter[str]]:
    """Sentences (blank-line separated, -DOCSTART- blocks ignored) and, per type, sentences holding it."""
    sentences, with_type = 0, Counter[str]()
    for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
        rows = [line.split("\t") for line in block.splitlines() if line.strip()]
        rows = [row for row in rows if row[0] != "-DOCSTART-"]
        if not rows:
            continue
        sentences += 1
        for etype in {row[1][2:] for row in rows if row[1] != "O"}:
            with_type[etype] += 1
    return sentences, with_type


@pytest.mark.parametrize("dataset", NER_DIRS)
def test_iob_ner_counts_match_source(dataset: str) -> None:
    path = _reference(f"ner_mtl2016/{dataset}/test.tsv")
    sentences, with_type = _raw_ner_counts(path)
    tasks = convert_tasks("iob_ner", path)
    assert len(tasks) == len(with_type)  # one task per entity type
    for items in tasks.values():
        assert len(items) == sentences
        assert len({item.id for item in items}) == sentences
    by_type = {items[0].task: sum(1 for item in items if item.output) for items in tasks.values()}
    assert sorted(by_type.values()) == sorted(with_type.values())
    for items in tasks.values():
        for item in items:
            assert item.answer_text().strip()  # spans, or "None"
            for span in item.gold_entities:
                assert span in item.input


def test_iob_ner_reference_sentence_counts_are_the_documented_ones() -> None:
    counts = {name: len(next(iter(convert_tasks("iob_ner", _reference(f"ner_mtl2016/{name}"))
                                  .values()))) for name in ("AnatEM-IOB", "BC5CDR-IOB", "NCBI-disease-IOB")}
    assert counts == {"AnatEM-IOB": 3830, "BC5CDR-IOB": 4797, "NCBI-disease-IOB": 940}


def test_iob_ner_type_set_makes_one_task(tmp_path: Path) -> None:
    path = _reference("ner_mtl2016/BC5CDR-IOB/test.tsv")
    written = convert("iob_ner", path, tmp_path / "out", types=["Chemical", "Disease"], limit=50, seed=3)
    assert [p.name for p in written] == ["bc5cdr_chemical_disease.jsonl"]
    items = load_task_file(written[0])
    assert len(items) == 50
    assert "chemical or drug or disease" in items[0].instruction


def _write_iob(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_iob_ner_spans_from_b_and_i_tags(tmp_path: Path) -> None:
    src = _write_iob(tmp_path / "toy.tsv", (
        "-DOCSTART-\tO\n\n"
        "Aspirin\tB-Chemical\nreduces\tO\nheart\tB-Disease\nattack\tI-Disease\nrisk\tO\n(\tO\nMI\tB-Disease\n)\tO\n.\tO\n\n"
        "Plain\tO\nsentence\tO\n\n"
        "stray\tI-Chemical\ntag\tI-Chemical\nand\tO\nsodium\tB-Chemical\nchloride\tI-Chemical\n"
    ))
    tasks = convert_tasks("iob_ner", src)
    assert set(tasks) == {"toy_chemical", "toy_disease"}
    disease = tasks["toy_disease"]
    assert disease[0].input == "Aspirin reduces heart attack risk (MI)."
    assert disease[0].output == ("heart attack", "MI")
    assert disease[1].output == () and disease[1].answer_text() == "None"
    assert tasks["toy_chemical"][2].output == ("stray tag", "sodium chloride")


def test_iob_ner_bad_line_names_file_and_line(tmp_path: Path) -> None:
    src = _write_iob(tmp_path / "bad.tsv", "Aspirin\tB-Chemical\nbroken line without tab\n")
    with pytest.raises(InputFileError, match=r"bad\.tsv:2"):
        convert_tasks("iob_ner", src)


def test_detokenize_offsets_point_at_tokens() -> None:
    tokens = ["IL", "-", "2", "(", "human", ")", ",", "as", "shown", "."]
    text, offsets = detokenize(tokens)
    assert text == "IL - 2 (human), as shown."
    assert [text[a:b] for a, b in offsets] == tokens


# ---- ChemProt ----

def test_chemprot_counts_and_cpr_groups_match_source() -> None:
    path = _reference("chemprot/test.jsonl")
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    items = convert_tasks("chemprot", path)["chemprot"]
    assert len(items) == len(raw) == 3469
    expected = Counter(GROUP_LABELS[CPR_GROUPS[row["label"]]] for row in raw)
    assert Counter(item.output for item in items) == expected
    assert expected["downregulator"] == sum(1 for r in raw if r["label"] in
                                            ("INHIBITOR", "DOWNREGULATOR", "INDIRECT-DOWNREGULATOR"))
    assert all(item.output and item.output in item.label_set for item in items)
    assert all("<<" in item.input and "[[" in item.input for item in items)


def test_chemprot_unknown_label_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "c.jsonl"
    src.write_text(json.dumps({"text": "<< a >> binds [[ b ]]", "label": "BINDS", "metadata": []}) + "\n")
    with pytest.raises(InputFileError, match=r"c\.jsonl:1: unknown ChemProt label"):
        convert_tasks("chemprot", src)


# ---- DDI-2013 ----

def test_ddi_counts_match_source_xml() -> None:
    path = _reference("ddi/DDICorpus-2013.zip")
    pairs, types = 0, Counter[str]()
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if "Test for DDI Extraction task/" not in name or not name.endswith(".xml"):
                continue
            xml = archive.read(name).decode("utf-8")
            for tag in re.findall(r"<pair\b[^>]*>", xml):
                pairs += 1
                kind = re.search(r'\btype="([^"]+)"', tag)
                types[kind.group(1) if 'ddi="true"' in tag and kind else "none"] += 1
    items = convert_tasks("ddi", path)["ddi"]
    assert len(items) == pairs == 5716
    assert Counter(item.output for item in items) == types
    assert sum(n for label, n in types.items() if label != "none") == 979
    assert len({item.id for item in items}) == len(items)
    assert all(item.output and item.input.startswith("Drug A: ") for item in items)


# ---- PubMedQA (synthetic) ----

def test_pubmedqa_original_layout(tmp_path: Path) -> None:
    src = tmp_path / "pqal.json"
    src.write_text(json.dumps({
        "101": {"QUESTION": "Does drug X lower blood pressure?", "CONTEXTS": ["Trial one.", "Trial two."],
                "final_decision": "yes", "LONG_ANSWER": "It does."},
        "102": {"QUESTION": "Is Y safe?", "CONTEXTS": ["No harms were seen."], "final_decision": "maybe"},
        "103": {"QUESTION": "Does Z work?", "CONTEXTS": ["It did not."], "final_decision": "NO"},
    }))
    items = convert_tasks("pubmedqa", src)["pubmedqa"]
    assert [i.id for i in items] == ["pubmedqa-101", "pubmedqa-102", "pubmedqa-103"]
    assert [i.output for i in items] == ["yes", "maybe", "no"]
    assert items[0].input == "Context: Trial one. Trial two. Question: Does drug X lower blood pressure?"
    assert items[0].metric == "yes_no"


def test_pubmedqa_hf_layout_jsonl_and_missing_label(tmp_path: Path) -> None:
    src = tmp_path / "pqa.jsonl"
    rows = [{"pubid": 7, "question": "Q?", "context": {"contexts": ["C."]}, "final_decision": "no"}]
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    items = convert_tasks("pubmedqa", src)["pubmedqa"]
    assert items[0].id == "pubmedqa-7" and items[0].output == "no"
    src.write_text(json.dumps({"pubid": 8, "question": "Q?", "context": {"contexts": ["C."]}}) + "\n")
    with pytest.raises(InputFileError, match=r"pqa\.jsonl:1"):
        convert_tasks("pubmedqa", src)


# ---- Hallmarks of Cancer (synthetic) ----

def test_hoc_original_directory_layout(tmp_path: Path) -> None:
    (tmp_path / "text").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "text" / "12345.txt").write_text(
        "Cells proliferated rapidly.\nApoptosis was blocked by the drug.\nThe weather was fine.\n")
    (tmp_path / "labels" / "12345.txt").write_text(
        "<Sustaining proliferative signaling--growth factors"
        "<Resisting cell death--apoptosis AND Sustaining proliferative signaling<\n")
    items = convert_tasks("hoc", tmp_path)["hoc"]
    assert [i.output for i in items] == [
        ("Sustaining proliferative signaling",),
        ("Resisting cell death", "Sustaining proliferative signaling"),
        (),
    ]
    assert items[2].answer_text() == "None"
    assert items[0].labels == HALLMARKS and items[0].metric == "entity_f1"


def test_hoc_jsonl_layout_and_unknown_hallmark(tmp_path: Path) -> None:
    src = tmp_path / "hoc.jsonl"
    src.write_text(json.dumps({"id": "s1", "text": "VEGF drives new vessels.", "labels": ["Inducing angiogenesis"]})
                   + "\n" + json.dumps({"text": "Nothing here.", "labels": []}) + "\n")
    items = convert_tasks("hoc", src)["hoc"]
    assert [i.id for i in items] == ["hoc-s1", "hoc-00002"]
    src.write_text(json.dumps({"text": "x", "labels": ["Making coffee"]}) + "\n")
    with pytest.raises(InputFileError, match="unknown hallmark"):
        convert_tasks("hoc", src)


# ---- convert(): writing, limits ----

def test_convert_writes_loadable_files_and_limit_is_seeded(tmp_path: Path) -> None:
    src = tmp_path / "pqal.json"
    src.write_text(json.dumps({str(i): {"QUESTION": f"Q{i}?", "CONTEXTS": [f"C{i}."], "final_decision": "yes"}
                               for i in range(20)}))
    first = convert("pubmedqa", src, tmp_path / "a.jsonl", limit=5, seed=1)
    again = convert("pubmedqa", src, tmp_path / "b.jsonl", limit=5, seed=1)
    other = convert("pubmedqa", src, tmp_path / "c.jsonl", limit=5, seed=2)
    ids = [[i.id for i in load_task_file(p[0])] for p in (first, again, other)]
    assert len(ids[0]) == 5 and ids[0] == ids[1] and ids[0] != ids[2]
    assert ids[0] == sorted(ids[0], key=lambda x: int(x.split("-")[1]))  # source order kept
    line = json.loads((tmp_path / "a.jsonl").read_text().splitlines()[0])
    assert set(line) == {"id", "task", "instruction", "input", "output", "metric", "labels"}


def test_convert_several_tasks_into_one_file_is_refused(tmp_path: Path) -> None:
    src = _write_iob(tmp_path / "toy.tsv", "a\tB-Chemical\nb\tB-Disease\n")
    with pytest.raises(ConfigError, match="2 tasks"):
        convert("iob_ner", src, tmp_path / "one.jsonl")
    assert not (tmp_path / "one.jsonl").exists()
    with pytest.raises(ConfigError, match="unknown converter"):
        convert("nope", src, tmp_path / "x")
