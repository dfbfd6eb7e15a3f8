#!/usr/bin/env bash
# Move the SmolLM2-135M GGUF (98,362,432 bytes) and the `gguf` wheel to a GPU machine that
# has no network and accepts at most 64 MiB of files per command, the repository's own
# tracked files included (about 36 MiB today, so a part must stay below about 27 MiB).
#
# On this machine (with network):
#   experiments/gpu_weights.sh split        # .weights/smollm2.gguf.part00 .. part03 (24 MiB
#                                           # each, PART_MIB=N to change), the sha256 file and
#                                           # .weights/gguf-*.whl
# Then send the parts one command at a time while the GPU machine stays up (files already
# there are kept): the first command carries .weights/smollm2.gguf.part00, the sha256 file
# and the wheel, each later one the next part. On the GPU machine:
#   experiments/gpu_weights.sh join         # joins the parts into the weights cache,
#                                           # checks sha256, pip install --no-index the wheel
# Both take --dry-run (print the plan, touch nothing). `.weights/` is git-ignored.
#
# Where the weights live: python -m recall_theory.lm.hub.fetch puts them in
# $RECALL_THEORY_CACHE, else $XDG_CACHE_HOME/recall-theory, else ~/.cache/recall-theory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEIGHTS_DIR="${WEIGHTS_DIR:-$ROOT/.weights}"
PART_PREFIX="$WEIGHTS_DIR/smollm2.gguf.part"
PART_MIB="${PART_MIB:-24}"            # + the tracked tree (~36 MiB) stays below the 64 MiB limit
PART_BYTES=$((PART_MIB * 1024 * 1024))
PY="${PYTHON:-python3}"

usage() {
  echo "usage: $0 split|join [--dry-run]" >&2
  exit 2
}

MODE="${1:-}"
DRY=0
[[ "${2:-}" == "--dry-run" ]] && DRY=1
[[ $# -gt 2 || ( $# -eq 2 && $DRY -eq 0 ) ]] && usage
[[ "$MODE" == "split" || "$MODE" == "join" ]] || usage

run() {  # print, then run unless --dry-run
  echo "+ $*"
  [[ $DRY -eq 1 ]] || "$@"
}

cache_path() {  # where recall_theory looks for the GGUF (no network, no jax import)
  PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c \
    "from recall_theory.lm.hub.fetch import weights_path; print(weights_path())"
}

expected_sha() {
  PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c \
    "from recall_theory.lm.hub.fetch import SMOLLM2_135M_INSTRUCT as s; print(s.sha256)"
}

if [[ "$MODE" == "split" ]]; then
  GGUF="$(cache_path)"
  if [[ ! -f "$GGUF" ]]; then
    echo "error: $GGUF is missing; fetch it first with: $PY -m recall_theory.lm.hub.fetch" >&2
    exit 2
  fi
  run mkdir -p "$WEIGHTS_DIR"
  run rm -f "$PART_PREFIX"*
  run split -b "$PART_BYTES" -d -a 2 "$GGUF" "$PART_PREFIX"
  if [[ $DRY -eq 0 ]]; then
    echo "$(expected_sha)  smollm2.gguf" > "$WEIGHTS_DIR/smollm2.gguf.sha256"
  fi
  GGUF_VERSION="$("$PY" -c 'import importlib.metadata as m; print(m.version("gguf"))' 2>/dev/null \
                  || echo 0.19.0)"
  # --no-deps: its requirements (numpy, pyyaml, requests, tqdm) are in the GPU image already
  run "$PY" -m pip download --quiet --no-deps --only-binary=:all: "gguf==$GGUF_VERSION" \
      -d "$WEIGHTS_DIR"
  if [[ $DRY -eq 0 ]]; then
    ls -l "$WEIGHTS_DIR"
    for part in "$PART_PREFIX"*; do
      size=$(stat -c %s "$part")
      if (( size > PART_BYTES )); then
        echo "error: $part is $size bytes, above PART_MIB=$PART_MIB MiB" >&2
        exit 1
      fi
    done
  fi
  wheel="$(cd "$WEIGHTS_DIR" 2>/dev/null && ls gguf-*.whl 2>/dev/null | head -n 1 \
           || echo "gguf-$GGUF_VERSION-py3-none-any.whl")"
  echo "send, one command each, while the GPU machine stays up:"
  n=0
  for part in "$PART_PREFIX"*; do
    extra=""
    [[ $n -eq 0 ]] && extra=" .weights/smollm2.gguf.sha256 .weights/$wheel"
    echo "  command $((n + 1)): carry .weights/$(basename "$part")$extra"
    n=$((n + 1))
  done
  echo "  then, in the last command: experiments/gpu_weights.sh join"
  exit 0
fi

# -- join (on the GPU machine) --------------------------------------------------------------
shopt -s nullglob
parts=("$PART_PREFIX"*)
wheels=("$WEIGHTS_DIR"/gguf-*.whl)
if [[ ${#parts[@]} -lt 1 ]]; then
  echo "error: no parts $PART_PREFIX* found; send them first" >&2
  exit 2
fi
GGUF="$(cache_path)"
run mkdir -p "$(dirname "$GGUF")"
if [[ $DRY -eq 1 ]]; then
  echo "+ cat ${parts[*]} > $GGUF.tmp && check sha256 $(expected_sha) && mv $GGUF.tmp $GGUF"
else
  cat "${parts[@]}" > "$GGUF.tmp"
  got="$(sha256sum "$GGUF.tmp" | cut -d' ' -f1)"
  if [[ "$got" != "$(expected_sha)" ]]; then
    rm -f "$GGUF.tmp"
    echo "error: joined file has sha256 $got, expected $(expected_sha); resend the parts" >&2
    exit 2
  fi
  mv "$GGUF.tmp" "$GGUF"
  echo "weights: $GGUF (sha256 ok)"
fi
if "$PY" -c "import gguf" 2>/dev/null; then
  echo "gguf: already importable"
elif [[ ${#wheels[@]} -ge 1 ]]; then
  run "$PY" -m pip install --quiet --no-index --no-deps "${wheels[0]}"
else
  echo "error: gguf is not installed and no gguf wheel is in $WEIGHTS_DIR" >&2
  exit 2
fi
