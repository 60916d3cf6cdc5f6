#!/usr/bin/env bash
# End-to-end check of the CARE peer on a tiny fake dataset: set up the venv, write 64 fake 128²
# training patches (LR = blurred HR), train for MINUTES (default 2), predict two whole images
# (320×288, tiled 256/48; 128×128) and check that the outputs have the input shapes and a lower
# MSE to HR than the input itself. About 4 minutes on one CPU thread once the venv exists.
#
#   bash bench/peers/smoke_care_peer.sh [WORKDIR (default: a new /tmp dir)] [MINUTES]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="${1:-$(mktemp -d /tmp/care_smoke.XXXXXX)}"
MINUTES="${2:-2}"
PY="${CARE_VENV:-$HERE/.venv-care}/bin/python"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
unset PYTHONPATH

bash "$HERE/setup_care_env.sh"
mkdir -p "$WORK"
"$PY" "$HERE/fake_dataset.py" "$WORK/fake.zarr" "$WORK/lr.npz" "$WORK/hr.npz" >"$WORK/fake.json"
"$PY" "$HERE/care_peer.py" train "$WORK/fake.zarr" "$WORK/run" --minutes "$MINUTES" --seed 0 \
    >"$WORK/train.json" 2>"$WORK/train.log"
"$PY" "$HERE/care_peer.py" predict "$WORK/run" "$WORK/lr.npz" "$WORK/care.npz" \
    >"$WORK/predict.json" 2>"$WORK/predict.log"
"$PY" - "$WORK" <<'EOF'
import json, sys
import numpy as np
work = sys.argv[1]
lr, hr, care = (np.load(f"{work}/{n}.npz") for n in ("lr", "hr", "care"))
train = json.load(open(f"{work}/train.json"))
pred = json.load(open(f"{work}/predict.json"))
result, ok = {}, True
for name in lr.files:
    out = care[name]
    mse_in = float(((lr[name] - hr[name]) ** 2).mean())
    mse_care = float(((out - hr[name]) ** 2).mean())
    good = out.shape == lr[name].shape and out.dtype == np.float32 and mse_care < mse_in
    ok &= good
    result[name] = {"shape": list(out.shape), "mse_input": round(mse_in, 6), "mse_care": round(mse_care, 6),
                    "predict_s": pred["images"][name]["seconds"], "ok": bool(good)}
print(json.dumps({"ok": bool(ok), "work": work, "train": train, "images": result}))
sys.exit(0 if ok else 1)
EOF
