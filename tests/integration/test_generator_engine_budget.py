"""The embedded engine's token budget is per row, on the real tiny model: a prompt that leaves no room
is refused (never a 1-token completion), a long prompt gets what its own context leaves, and it never
shortens another request's completion in the same batch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfspec.errors import ContextLengthExceeded
from services.generator.engine import GenerationEngine, GenerationParams

pytestmark = pytest.mark.integration

CONTEXT = 64


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GenerationEngine]:
    built = GenerationEngine(tiny_model_dir, served_name="tiny", adapters_dir=tmp_path_factory.mktemp("adapters"),
                             max_batch=4, threads=1, max_model_len=CONTEXT)
    yield built
    built.close()


def _params(max_tokens: int) -> GenerationParams:
    return GenerationParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)


def _prompt(engine: GenerationEngine, tokens: int) -> list[int]:
    ids = engine.tokenize_prompt(" ".join(["sun"] * tokens))
    assert len(ids) >= tokens
    return ids[:tokens]


async def test_engine_refuses_a_prompt_that_leaves_no_room(engine: GenerationEngine) -> None:
    for tokens in (CONTEXT, CONTEXT + 5):
        with pytest.raises(ContextLengthExceeded, match=f"your prompt contains {tokens} input tokens"):
            await engine.generate(_prompt(engine, tokens), model="tiny", params=_params(8))


async def test_engine_budget_is_per_row(engine: GenerationEngine) -> None:
    long_ids, short_ids = _prompt(engine, CONTEXT - 14), _prompt(engine, 4)
    # Alone, a long prompt gets what its own context leaves (vLLM's clamp), finish "length".
    alone = await engine.generate(long_ids, model="tiny", params=_params(40))
    assert (alone.completion_tokens, alone.finish_reason) == (14, "length")
    # Together, the short request still gets all it asked for (was cut to 14 by the long prompt).
    long_result, short_result = await asyncio.gather(
        engine.generate(long_ids, model="tiny", params=_params(10)),
        engine.generate(short_ids, model="tiny", params=_params(30)),
    )
    assert long_result.completion_tokens == 10
    assert short_result.completion_tokens == 30
