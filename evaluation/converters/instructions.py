"""Task instructions the converters attach to every item, written for selfspec (kept in one place).

They name the answer format the scorer reads: a semicolon list or None for span tasks, one label
word for classification tasks.
"""

from __future__ import annotations

NER = (
    "List every {what} mentioned in the sentence, copying each name exactly as it appears. "
    "Separate the names with semicolons, and write None if the sentence mentions none."
)
# Entity type (lower case, as tagged in the IOB files) -> what the instruction asks for.
NER_TYPES: dict[str, str] = {
    "chemical": "chemical or drug",
    "disease": "disease, disorder or symptom",
    "anatomy": "anatomical entity (organ, tissue, cell, body part or body substance)",
    "gene": "gene or gene product",
    "protein": "protein or protein complex",
    "dna": "DNA element (gene, promoter, binding site or other DNA region)",
    "rna": "RNA molecule",
    "cell_line": "cell line",
    "cell_type": "cell type",
    "species": "species or organism (scientific or common name)",
}

CHEMPROT = (
    "In the sentence, one entity is marked << like this >> and another [[ like this ]]; one of them is a "
    "chemical and the other a gene or protein. State how the chemical acts on the gene or protein. "
    "Answer with one of: upregulator (it increases the gene's expression or the protein's activity), "
    "downregulator (it decreases or inhibits them), agonist (it binds and activates a receptor), "
    "antagonist (it binds and blocks a receptor), substrate (the protein converts it or produces it)."
)

DDI = (
    "Drug A and Drug B both occur in the sentence. Decide what the sentence says about taking them "
    "together. Answer with one of: mechanism (one drug changes how the other is absorbed, distributed, "
    "metabolised or excreted), effect (the combination changes a drug effect or causes an adverse "
    "reaction), advise (a recommendation or warning about combining them), int (an interaction is stated "
    "without any detail), none (no interaction between these two drugs is stated)."
)

PUBMEDQA = (
    "Answer the research question from the findings reported in the context alone. "
    "Answer with one of: yes, no, maybe."
)

HOC = (
    "Decide which hallmarks of cancer the sentence from a cancer research abstract gives evidence about. "
    "Choose any number from: {labels}. Write the chosen hallmarks separated by semicolons, or None if "
    "the sentence concerns no hallmark."
)
