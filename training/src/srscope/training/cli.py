"""``srtrain``: one entry point, one sub-command per stage of the pipeline.

Each sub-command lives in the module that does the work and exposes ``add_arguments(parser)``
and ``run(args) -> int``. Modules are imported only when their command runs, so ``srtrain
simulate`` does not pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: command name → (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("srscope.training.data.simulate_cli", "simulate physically faithful LR/HR pairs"),
    "prepare": ("srscope.training.data.prepare_cli", "register LR/HR pairs and extract training patches"),
    "train": ("srscope.training.gan.train_cli", "train the GAN (or the CNN-only ablation)"),
    "export": ("srscope.training.gan.export_cli", "export a checkpoint to a self-describing ONNX model"),
    "evaluate": ("srscope.training.evaluation.cli", "compare the model with baselines and write a report"),
    "card": ("srscope.training.evaluation.modelcard",
             "score an exported model on held-out simulated fields and write its MODEL.md card"),
    "probe": ("srscope.training.evaluation.probe", "score training checkpoints on simulated fields without exporting"),
    "calibrate-consistency": ("srscope.training.gan.calibrate_cli", "fit a model card's consistency check"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srtrain", description=__doc__.splitlines()[0])
    from importlib.metadata import PackageNotFoundError, version
    try:
        release = version("srscope-training")
    except PackageNotFoundError:  # a source tree without installed metadata
        release = "unknown"
    parser.add_argument("--version", action="version", version=f"srtrain (srscope-training) {release}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("srtrain: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
