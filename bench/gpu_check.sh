#!/usr/bin/env bash
# One script for a bare GPU machine: install onnxruntime-gpu from its wheel pieces, prove that
# inference runs on CUDA (and TensorRT when its libraries are there), and write bench_runtime JSON
# (bench/results/bench_runtime_gpu.json): ms per 1024² frame, fp32 and fp16, whole and tiled,
# with IO binding, CUDA graphs and batched tiles (bench/gpu_frames.py says what each figure is).
#
#   bash bench/gpu_check.sh [--out DIR]      # on the GPU machine (torch 2.11 CUDA 13, onnx, CPU onnxruntime there)
#   bash bench/gpu_check.sh --dry-run        # anywhere: CPU provider, tiny sizes, installs nothing
#
# The wheel (onnxruntime-gpu 1.31.1, ~255 MB) travels in pieces made by shared/tools/split-wheel.sh:
# .part1/piece-00, .part2/piece-01, ... found at $ORT_WHEEL_PIECES, the repository root, or ../shared.
# It is installed with pip --target into a cache dir (no internet, no change to the system
# site-packages) and put first on PYTHONPATH so it shadows the CPU onnxruntime. Its CUDA 13 and
# cuDNN libraries come from torch's nvidia-* wheels (nvidia/*/lib on LD_LIBRARY_PATH).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
OUT="$ROOT/bench/results"
DRY=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) DRY=1; shift ;;
        --out) OUT="$2"; shift 2 ;;
        *) echo "gpu_check: unknown argument $1" >&2; exit 2 ;;
    esac
done
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"; else PY="$(command -v python3)"; fi
fi
log() { echo "[gpu_check] $*" >&2; }

if [[ $DRY -eq 1 ]]; then
    log "dry run: CPU provider, tiny sizes, nothing installed"
    exec "$PY" "$HERE/gpu_frames.py" --dry-run --out "$OUT"
fi

# 1. srscope itself (runtime + training for the fp16 converter), if this python lacks it.
if ! "$PY" -c "import srscope.runtime, srscope.training" 2>/dev/null; then
    log "installing srscope runtime/training from the checkout (no dependencies fetched)"
    "$PY" -m pip install --quiet --no-deps --no-build-isolation -e "$ROOT/runtime" -e "$ROOT/training" \
        || "$PY" -m pip install --quiet --no-deps -e "$ROOT/runtime" -e "$ROOT/training"
fi

# 2. onnxruntime-gpu from its pieces, into a target dir of its own.
TARGET="${ORT_GPU_TARGET:-${XDG_CACHE_HOME:-$HOME/.cache}/srscope/onnxruntime-gpu}"
if ! PYTHONPATH="$TARGET${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c \
        "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" 2>/dev/null; then
    pieces=""
    for base in "${ORT_WHEEL_PIECES:-}" "$ROOT" "$ROOT/shared" "$ROOT/../shared"; do
        [[ -n "$base" ]] || continue
        if compgen -G "$base/.part*/piece-*" >/dev/null; then pieces="$base"; break; fi
    done
    if [[ -z "$pieces" ]]; then
        log "no wheel pieces (.part*/piece-*) in \$ORT_WHEEL_PIECES, $ROOT, $ROOT/shared or $ROOT/../shared"
        exit 3
    fi
    tmp="$(mktemp -d)"
    whl="$tmp/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
    # split numbers the pieces piece-00, piece-01, ... across .part1, .part2, ...: order by piece name
    find "$pieces" -path "$pieces/.part*/piece-*" -type f -printf '%f\t%p\n' | sort | cut -f2 | xargs cat > "$whl"
    "$PY" - "$whl" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    bad = z.testzip()
    assert bad is None, f"corrupt member {bad}: pieces missing or out of order"
    name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    print("[gpu_check] wheel ok:", name.split("/")[0], file=sys.stderr)
EOF
    log "pip install --target $TARGET (no index, no dependencies)"
    "$PY" -m pip install --quiet --no-deps --no-index --upgrade --target "$TARGET" "$whl"
    rm -rf "$tmp"
fi
export PYTHONPATH="$TARGET${PYTHONPATH:+:$PYTHONPATH}"

# 3. torch's CUDA libraries for onnxruntime-gpu (libcudart, libcublas, libcudnn, libcufft, ...).
NV_LIBS="$("$PY" - <<'EOF'
import glob, os, sys
dirs = []
for p in sys.path:
    for d in sorted(glob.glob(os.path.join(p, "nvidia", "*", "lib")) + glob.glob(os.path.join(p, "nvidia", "*", "*", "lib"))):
        if d not in dirs:
            dirs.append(d)
print(":".join(dirs))
EOF
)"
[[ -n "$NV_LIBS" ]] || log "warning: no nvidia/*/lib folders found next to torch"
export LD_LIBRARY_PATH="$NV_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# TensorRT's libnvinfer, when a tensorrt wheel is installed, sits in tensorrt_libs/.
TRT_LIBS="$("$PY" -c 'import tensorrt_libs, os; print(os.path.dirname(tensorrt_libs.__file__))' 2>/dev/null || true)"
[[ -n "$TRT_LIBS" ]] && export LD_LIBRARY_PATH="$TRT_LIBS:$LD_LIBRARY_PATH"

# 4. The providers must load for real: a session whose primary provider is CUDA.
"$PY" - <<'EOF'
import sys
import onnxruntime as ort
from srscope.runtime import create_session
from srscope.runtime.synthetic import build_test_model
import tempfile, pathlib
print(f"[gpu_check] onnxruntime {ort.__version__} from {ort.__file__}; providers {ort.get_available_providers()}", file=sys.stderr)
path = build_test_model(pathlib.Path(tempfile.mkdtemp()) / "probe.onnx")
session, info = create_session(path, "cuda")  # raises if ORT falls back to the CPU
assert info.provider == "CUDAExecutionProvider", info
print(f"[gpu_check] CUDA session ok: {info.providers}", file=sys.stderr)
try:
    session, info = create_session(path, "tensorrt")
    print(f"[gpu_check] TensorRT session ok: {info.providers}", file=sys.stderr)
except Exception as exc:  # TensorRT libraries absent: measured on CUDA only
    print(f"[gpu_check] TensorRT unavailable: {str(exc).splitlines()[0][:200]}", file=sys.stderr)
EOF

# 5. The figures.
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
exec "$PY" "$HERE/gpu_frames.py" --out "$OUT"
