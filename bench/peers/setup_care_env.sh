#!/usr/bin/env bash
# Create bench/peers/.venv-care: CAREamics 0.3.5 (the CARE peer) on a CPU-usable torch 2.11.0 and
# torchvision 0.26.0, in a venv of its own so srscope's main install stays lean. Never touches the
# main venv (/work/main/.venv or whatever is activated). Idempotent: a stamp file holds the hash of
# the pin files; a second run with the same pins only re-checks the imports.
#
#   bash bench/peers/setup_care_env.sh          # env: CARE_VENV=path, PYTHON=python3.11, FORCE=1
#
# Prints one line on success: "care env ready: <venv> (careamics X, torch Y, torchvision Z, ...)".
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${CARE_VENV:-$HERE/.venv-care}"
LOCK="$HERE/requirements-care.txt"
CUDA_LOCK="$HERE/requirements-care-cuda.txt"
STAMP="$VENV/.care-env-stamp"
LOG="$VENV/setup.log"

# Nothing from an activated venv or the caller's PYTHONPATH leaks in (srscope must stay out).
unset VIRTUAL_ENV PYTHONPATH PYTHONHOME PIP_REQUIRE_VIRTUALENV PIP_USER 2>/dev/null || true

pick_python() {
    if [[ -n "${PYTHON:-}" ]]; then echo "$PYTHON"; return; fi
    for cand in python3.11 /usr/bin/python3.11 /usr/local/bin/python3.11 python3; do
        if command -v "$cand" >/dev/null 2>&1 \
            && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            echo "$cand"; return
        fi
    done
    echo "setup_care_env: need CPython 3.11 (set PYTHON=...)" >&2
    exit 1
}

arch="$(uname -m)"
pin_files=("$LOCK")
[[ "$arch" == "x86_64" ]] && pin_files+=("$CUDA_LOCK")
want="$(cat "${pin_files[@]}" | sha256sum | cut -c1-16)-$arch"

check_imports() {
    OMP_NUM_THREADS=1 "$VENV/bin/python" - <<'EOF'
import torch, torchvision, careamics, zarr, numpy
from torchvision.ops import nms  # the op that a mismatched torch/torchvision pair lacks
torch.set_num_threads(1)
assert nms(torch.tensor([[0, 0, 1, 1.0], [0, 0, 1, 1.0]]), torch.tensor([1.0, 0.5]), 0.5).tolist() == [0]
print(f"careamics {careamics.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"zarr {zarr.__version__}, numpy {numpy.__version__}, cuda available: {torch.cuda.is_available()}")
EOF
}

if [[ -z "${FORCE:-}" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    if versions="$(check_imports 2>/dev/null)"; then
        echo "care env ready: $VENV ($versions; already set up)"
        exit 0
    fi
    echo "setup_care_env: $VENV is stamped but does not import; rebuilding" >&2
fi

t0=$(date +%s)
py="$(pick_python)"
rm -rf "$VENV"
"$py" -m venv "$VENV"
mkdir -p "$VENV"
{
    "$VENV/bin/python" -m pip install --quiet --upgrade "pip>=24"
    # --no-deps with exact pins: pip must not resolve torch's own CUDA pins (1.2 GB more download).
    "$VENV/bin/python" -m pip install --no-deps -r "$LOCK"
    if [[ "$arch" == "x86_64" ]]; then
        "$VENV/bin/python" -m pip install --no-deps -r "$CUDA_LOCK"
    fi
} >"$LOG" 2>&1 || { echo "setup_care_env: pip failed, see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }

if ! versions="$(check_imports 2>>"$LOG")"; then
    echo "setup_care_env: the new venv does not import careamics/torch, see $LOG" >&2
    tail -20 "$LOG" >&2
    exit 1
fi
echo "$want" >"$STAMP"
echo "care env ready: $VENV ($versions; built in $(( $(date +%s) - t0 )) s)"
