"""``make bench``: run every ``bench/bench_*.py`` module and write one JSON per module plus a summary.

Each module exposes ``run(out_dir: pathlib.Path) -> dict``; the dict is written as
``<out_dir>/<module>.json``. Timings are medians measured side by side in one process, never
asserted in tests.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--only", nargs="*", help="module names to run (default: all)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, object] = {"machine": platform.platform(), "python": sys.version.split()[0],
                                  "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        if args.only and path.stem not in args.only:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        assert spec.loader is not None
        spec.loader.exec_module(module)
        print(f"[bench] {path.stem} …", flush=True)
        result = module.run(args.out)
        (args.out / f"{path.stem}.json").write_text(json.dumps(result, indent=2))
        summary[path.stem] = result
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
