"""Log-probabilities from hidden states, without materialising [batch, seq, vocab] logits.

The engine runs the model once per batch of rows and keeps only the last hidden state; the output
layer is then applied to a few positions at a time (`CHUNK_ELEMENTS` logits per step, ~64 MB in
fp32), and only what a response needs is gathered: the target token's log-probability and rank,
and the top-k. With Gemma 3's 262k-token vocabulary a 512-token prompt would otherwise need
512 MB of logits per row.

`choose_greedy` is constrained decoding over a fixed set of choices (vLLM's `structured_outputs.
choice`): a walk down the trie of the choices' token sequences, picking at each node the best
allowed token (a child, or end-of-sequence where a choice is complete), from the logits of one
batched forward pass over prompt + each choice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

CHUNK_ELEMENTS = 1 << 24  # logits computed per step (positions x vocab): 64 MB in fp32

Head = Callable[[torch.Tensor], torch.Tensor]  # hidden [n, d] -> logits [n, vocab] (softcapped)


@dataclass
class PromptLogprobs:
    """Per position of a token sequence: the token, its log-probability given the tokens before it,
    its rank in that distribution (1 = most likely) and the top-k alternatives; position 0 has none."""

    token_ids: list[int]
    logprobs: list[float | None]
    ranks: list[int | None]
    top: list[list[tuple[int, float]] | None]


def output_head(model: Any, softcap: float | None) -> Head:
    """The model's output layer as `model(...).logits` applies it (Gemma's final soft-capping included)."""
    lm_head = model.get_output_embeddings()
    if lm_head is None:
        raise ValueError("model has no output embeddings")

    def head(hidden: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = lm_head(hidden).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return logits

    return head


def final_softcap(config: object) -> float | None:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    value = getattr(text, "final_logit_softcapping", None)
    return float(value) if value else None


def gather_logprobs(hidden: torch.Tensor, targets: torch.Tensor, head: Head, *,
                    top_k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """For hidden states [n, d] predicting `targets` [n]: log-probabilities [n], ranks [n] and the
    top-k (values [n, k], ids [n, k]); the output layer runs on `CHUNK_ELEMENTS // vocab` rows at a time."""
    n = hidden.shape[0]
    vocab = int(head(hidden[:1]).shape[-1]) if n else 1
    step = max(1, CHUNK_ELEMENTS // vocab)
    logprobs = torch.empty(n, dtype=torch.float32)
    ranks = torch.empty(n, dtype=torch.long)
    top_values = torch.empty((n, top_k), dtype=torch.float32)
    top_ids = torch.empty((n, top_k), dtype=torch.long)
    for start in range(0, n, step):
        logits = head(hidden[start:start + step])
        target = targets[start:start + step].to(logits.device)
        norm = torch.logsumexp(logits, dim=-1)
        chosen = logits.gather(1, target[:, None]).squeeze(1)
        logprobs[start:start + step] = (chosen - norm).cpu()
        ranks[start:start + step] = ((logits > chosen[:, None]).sum(dim=-1) + 1).cpu()
        if top_k:
            values, ids = logits.topk(top_k, dim=-1)
            top_values[start:start + step] = (values - norm[:, None]).cpu()
            top_ids[start:start + step] = ids.cpu()
    return logprobs, ranks, top_values, top_ids


def prompt_logprobs(rows: Sequence[Sequence[int]], hidden: torch.Tensor, head: Head, *,
                    top_k: int) -> list[PromptLogprobs]:
    """Log-probabilities of every token of each row after the first, from right-padded hidden states
    [rows, seq, d] (position t predicts token t + 1)."""
    picks = [(row, pos) for row, ids in enumerate(rows) for pos in range(len(ids) - 1)]
    value_list: list[float] = []
    rank_list: list[int] = []
    top_value_list: list[list[float]] = []
    top_id_list: list[list[int]] = []
    if picks:
        index_row = torch.tensor([r for r, _ in picks])
        index_pos = torch.tensor([p for _, p in picks])
        targets = torch.tensor([rows[r][p + 1] for r, p in picks])
        values, ranks, top_values, top_ids = gather_logprobs(hidden[index_row, index_pos], targets, head,
                                                             top_k=top_k)
        value_list, rank_list = values.tolist(), ranks.tolist()
        top_value_list, top_id_list = top_values.tolist(), top_ids.tolist()
    out: list[PromptLogprobs] = []
    cursor = 0
    for ids in rows:
        count = len(ids) - 1
        span = range(cursor, cursor + max(count, 0))
        out.append(PromptLogprobs(
            token_ids=list(ids),
            logprobs=[None, *(value_list[i] for i in span)],
            ranks=[None, *(rank_list[i] for i in span)],
            top=[None, *([*zip(top_id_list[i], top_value_list[i], strict=True)] for i in span)],
        ))
        cursor += max(count, 0)
    return out


@dataclass
class _Node:
    children: dict[int, _Node]
    ends: int | None = None  # index of the choice complete at this node
    row: int = -1  # a row whose prompt + choice passes through this node
    depth: int = 0


def _trie(choices: Sequence[Sequence[int]]) -> _Node:
    root = _Node({})
    for index, ids in enumerate(choices):
        node = root
        node.row = index if node.row < 0 else node.row
        for depth, token in enumerate(ids, start=1):
            node = node.children.setdefault(token, _Node({}, depth=depth))
            node.row = index if node.row < 0 else node.row
        if node.ends is None:
            node.ends = index
    return root


def choose_greedy(prompt_len: int, choices: Sequence[Sequence[int]], hidden: torch.Tensor, head: Head, *,
                  eos_id: int, temperature: float = 0.0, generator: torch.Generator | None = None) -> int:
    """Index of the choice constrained decoding picks, given hidden states [len(choices), seq, d] of
    the rows prompt + choice (right-padded). Greedy at temperature 0, else sampled among the
    allowed tokens at each step."""
    node = _trie(choices)
    while True:
        options = list(node.children)
        if node.ends is not None:
            if not options:
                return node.ends
            options.append(eos_id)
        if len(options) == 1:
            token = options[0]
        else:
            logits = head(hidden[node.row, prompt_len - 1 + node.depth][None])[0]
            allowed = logits[torch.tensor(options)]
            if temperature > 0:
                weights = torch.softmax(allowed / temperature, dim=-1)
                token = options[int(torch.multinomial(weights, 1, generator=generator))]
            else:
                token = options[int(torch.argmax(allowed))]
        if node.ends is not None and token == eos_id and eos_id not in node.children:
            return node.ends
        node = node.children[token]
