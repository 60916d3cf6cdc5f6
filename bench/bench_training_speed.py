"""Training speed: what buys iterations per second on this machine (bf16 autocast, NHWC, threads).

One process, the shipped recipe's shapes (batch 12, 64×64 HR patches, G and D of the chosen width),
a toy dataset in the prepared format (speed does not depend on the pixels). Every variant runs
``--repeats`` rounds of ``--steps`` iterations, rounds interleaved across variants so that a
neighbour's load on a shared machine falls on all of them alike; the JSON gives each variant's
median seconds per iteration and its ratio to fp32 NCHW at the same thread count.

bf16 autocast needs bf16 kernels to pay: oneDNN uses AVX512_BF16 or AMX where ``lscpu`` lists
them and emulates (slowly) elsewhere, so the CPU flags are recorded beside the figures.

    python bench/bench_training_speed.py [--width 8] [--steps 6] [--repeats 5] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VARIANTS: tuple[tuple[str, str, bool], ...] = (
    ("fp32", "fp32", False),
    ("fp32-channels-last", "fp32", True),
    ("bf16", "bf16", False),
    ("bf16-channels-last", "bf16", True),
)


def cpu_flags() -> list[str]:
    """The CPU features that decide which kernels oneDNN can use (empty off Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8", "avx_vnni")
    return [f for f in wanted if f in flags]


def run(out_dir: Path, *, width: int = 8, steps: int = 6, repeats: int = 5,
        threads: tuple[int, ...] | None = None) -> dict[str, Any]:
    import torch
    from srscope.training.gan.toydata import write_toy_dataset
    from srscope.training.gan.trainer import TrainConfig, Trainer

    threads = threads or tuple(sorted({1, os.cpu_count() or 1}))
    work = Path(tempfile.mkdtemp(prefix="srscope-trainspeed-"))
    dataset = work / "toy.zarr"
    write_toy_dataset(dataset, n_train=16, n_val=4, n_test=2, size=128)
    trainers: dict[tuple[str, int], Trainer] = {}
    for name, precision, nhwc in VARIANTS:
        for n in threads:
            config = TrainConfig(dataset=str(dataset), out=str(work / f"{name}-{n}"), iterations=10**6,
                                 width=width, batch_size=12, patch_size=64, progress=False, resume=False,
                                 precision=precision, channels_last=nhwc, device="cpu")
            trainers[(name, n)] = Trainer(config)
    times: dict[tuple[str, int], list[float]] = {key: [] for key in trainers}
    for _ in range(repeats + 1):          # the first round warms oneDNN's kernel caches up; dropped
        for (name, n), trainer in trainers.items():
            torch.set_num_threads(n)
            start = time.perf_counter()
            for _ in range(steps):
                trainer.step()
            times[(name, n)].append((time.perf_counter() - start) / steps)
    result: dict[str, Any] = {"bench": "training_speed", "machine": platform.platform(), "cpu_flags": cpu_flags(),
                              "torch": torch.__version__, "width": width, "batch": 12, "patch": 64,
                              "steps_per_round": steps, "rounds": repeats, "variants": {}}
    for (name, n), values in times.items():
        median = statistics.median(values[1:])
        base = statistics.median(times[("fp32", n)][1:])
        result["variants"][f"{name}@{n}t"] = {"threads": n, "s_per_iteration": round(median, 4),
                                               "speedup_vs_fp32": round(base / median, 3)}
    best = min(result["variants"].items(), key=lambda kv: kv[1]["s_per_iteration"])
    result["fastest"] = best[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="*")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    result = run(args.out, width=args.width, steps=args.steps, repeats=args.repeats,
                 threads=tuple(args.threads) if args.threads else None)
    (args.out / "bench_training_speed.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
