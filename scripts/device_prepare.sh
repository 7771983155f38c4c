#!/usr/bin/env bash
# Fill device_kit/ (git-ignored) with what a bare GPU machine needs for scripts/device_check.sh and cannot fetch:
#   device_kit/wheels/     pure-Python wheels for Python 3.12 (the GPU image's), the versions installed here:
#                          trl, datasets and its dill + multiprocess (the image has pyarrow, pandas, xxhash, fsspec,
#                          pyyaml, accelerate, transformers), gguf (the default model's GGUF conversion) and peft
#                          (the image's may be older than 0.21.2); device_check.sh installs only those missing there
#                          or older there. torch, transformers and their CUDA libraries are the image's own.
#   device_kit/model/      the default model's config, generation config and tokenizer (no weights, 3.5 MB): with
#                          them device_check.sh builds a randomly initialised model of SmolLM2-135M's exact shape,
#                          which runs at the real model's speed, and the shipped generator loads onto it.
#   device_kit/kit.json    what is in the kit.
# Run here after scripts/setup.sh; then carry device_kit in the device call (docs/benchmarks.md, "On a GPU").
# The real model's weights travel separately, in parts: scripts/device_model_parts.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
KIT=${KIT:-device_kit}
REMOTE_PYTHON=${REMOTE_PYTHON:-3.12}
PACKAGES=(trl datasets dill multiprocess gguf peft)
# DeepSpeed for the sharded stage, where this machine has it (the `deepspeed` extra): its dependencies as wheels, and
# deepspeed itself (an sdist) built here into a pure-Python wheel
DEEPSPEED=$("$PYTHON" -c "import importlib.metadata as m; print(m.version('deepspeed'))" 2>/dev/null || true)
[ -n "$DEEPSPEED" ] && PACKAGES+=(hjson msgpack py-cpuinfo einops ninja)

if [ ! -x "$PYTHON" ]; then
  echo "device_prepare: $PYTHON not found; run scripts/setup.sh first (or set PYTHON)" >&2
  exit 2
fi
rm -rf "$KIT.tmp"
mkdir -p "$KIT.tmp/wheels" "$KIT.tmp/model"

pins=()
for name in "${PACKAGES[@]}"; do
  version=$("$PYTHON" -c "import importlib.metadata as m; print(m.version('$name'))")
  pins+=("$name==$version")
done
echo "device_prepare: downloading ${pins[*]} for Python $REMOTE_PYTHON"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$REMOTE_PYTHON" \
  --implementation cp --abi "cp${REMOTE_PYTHON/./}" --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$KIT.tmp/wheels" "${pins[@]}"

if [ -n "$DEEPSPEED" ]; then
  echo "device_prepare: building deepspeed==$DEEPSPEED (pure Python; its ops build on the GPU machine when used)"
  "$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$KIT.tmp/wheels" "deepspeed==$DEEPSPEED"
  pins+=("deepspeed==$DEEPSPEED")
fi

echo "device_prepare: copying the default model's config and tokenizer"
model_dir=$("$PYTHON" -c "from peft_generative.default_model import default_model_path; print(default_model_path())")
for file in config.json generation_config.json tokenizer.json tokenizer_config.json chat_template.jinja; do
  if [ -f "$model_dir/$file" ]; then cp "$model_dir/$file" "$KIT.tmp/model/"; fi
done

"$PYTHON" - "$KIT.tmp" "${pins[@]}" <<'PY'
import json, sys, datetime
from pathlib import Path
kit, pins = Path(sys.argv[1]), sys.argv[2:]
files = {str(p.relative_to(kit)): p.stat().st_size for p in sorted(kit.rglob("*")) if p.is_file()}
(kit / "kit.json").write_text(json.dumps({"made": datetime.date.today().isoformat(), "pins": pins, "files": files},
                                         indent=1) + "\n")
PY
rm -rf "$KIT"
mv "$KIT.tmp" "$KIT"
kit_bytes=$(du -sb "$KIT" | cut -f1)
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null \
  | tail -1 | cut -f1)
echo "device_prepare: $KIT is $((kit_bytes / 1024)) KiB; the working tree that travels with it is" \
     "$((tree_bytes / 1048576)) MiB (a call carries at most 64 MiB)"
if [ $((kit_bytes + tree_bytes)) -gt $((60 * 1048576)) ]; then
  echo "device_prepare: tree + kit exceed 60 MiB: the device call would be refused; ignore or remove large files" >&2
  exit 1
fi
echo "device_prepare: done"
