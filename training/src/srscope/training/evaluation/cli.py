"""``srtrain evaluate MODEL OUT/``: the network against the paper's baselines, as one report.

Examples::

    # simulated test set of structures the model was not trained on
    srtrain evaluate models/widefield-10x0.4-to-20x0.75.onnx out/eval-wf \\
        --ablation models/ablation/widefield-10x0.4-to-20x0.75-cnn-only.onnx --structure mitochondria -n 8

    # confocal → STED beads: adds the PSF-FWHM histograms of the paper's Fig. 4
    srtrain evaluate models/confocal-to-sted-beads.onnx out/eval-beads --structure beads -n 6

    # registered real pairs <name>_lr.ome.tif / <name>_hr.ome.tif
    srtrain evaluate MODEL out/eval-real --data pairs/ --modality widefield
    # semi-real: real fluorescence specimens from PyPI packages, Gaussian optics, sCMOS/EMCCD cameras
    srtrain evaluate models/widefield-10x0.4-to-20x0.75.onnx out/eval-semireal --semireal \
        --ablation models/ablation/widefield-10x0.4-to-20x0.75-cnn-only.onnx \
        --compare v3.0=models/legacy/widefield-10x0.4-to-20x0.75-v3.0.onnx
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from srscope.training.evaluation.baselines import (
    DEFAULT_LR_DAMPINGS,
    DEFAULT_LR_ITERATIONS,
    PAPER_LR_DAMPING,
    PAPER_LR_ITERATIONS,
    LucyRichardsonChoice,
    search_lucy_richardson,
)
from srscope.training.evaluation.methods import (
    Method,
    baseline_methods,
    baseline_psf,
    deconvolution_input,
    describe_optics,
    exact_lucy_richardson_method,
    input_optics,
    network_method,
)
from srscope.training.evaluation.metrics import score_image
from srscope.training.evaluation.testset import (
    EvalPair,
    directory_pairs,
    simulated_pairs,
    simulated_validation_pair,
)

#: First test seed. Training datasets simulate from seeds 0+, 100000+ (validation) and 200000+
#: (held-out test), so a model trained on beads is never evaluated on a bead field it saw.
DEFAULT_TEST_SEED = 500_000
#: The semi-real source that tunes the Lucy–Richardson baselines (left out of the test set).
SEMIREAL_VALIDATION_SOURCE = "neuron"
#: Structures measured for PSF FWHM when ``--fwhm auto``: point-like samples.
SPOT_STRUCTURES = {"beads", "ccps"}
_CARD_MODALITY_PREFIXES = {"widefield": "widefield", "confocal": "confocal-sted", "sted": "confocal-sted",
                           "tirf": "tirf-sim"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="exported generator (.onnx with an srscope card)")
    parser.add_argument("out", type=Path, help="output directory for report.md, figures and summary.json")
    parser.add_argument("--ablation", type=Path, help="CNN-only ablation model (.onnx), evaluated as 'cnn-only'")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=MODEL",
                        help="another network to score beside the GAN, e.g. v3.0=models/legacy/…onnx (repeatable)")
    source = parser.add_argument_group("test set (simulated unless --data is given)")
    source.add_argument("--data", type=Path, help="directory of registered <name>_lr / <name>_hr pairs")
    source.add_argument("--semireal", action="store_true",
                        help="semi-real widefield set: real specimens shipped in PyPI packages, imaged with "
                             "Gaussian PSFs, area binning and sCMOS/EMCCD cameras (not the training simulator); "
                             f"the '{SEMIREAL_VALIDATION_SOURCE}' source tunes Lucy–Richardson and is left out")
    source.add_argument("--validation-data", type=Path,
                        help="directory of pairs for the LR search (default with --data: its first pair, "
                             "which is then left out of the test set)")
    source.add_argument("--emission-nm", type=float,
                        help="emission wavelength of --data pairs for the deconvolution PSF "
                             "(default: the model card's)")
    source.add_argument("--modality", help="widefield | confocal-sted | tirf-sim (default: from the model card)")
    source.add_argument("--structure", default="mitochondria",
                        help="simulated structure; pick one the model was NOT trained on (default: mitochondria)")
    source.add_argument("-n", "--n-images", type=int, default=8, help="simulated test images (default 8)")
    source.add_argument("--seed", type=int, default=DEFAULT_TEST_SEED,
                        help=f"first simulation seed (default {DEFAULT_TEST_SEED}: disjoint from the seeds "
                             "srscope's training datasets use)")
    source.add_argument("--hr-size", type=int, default=512, help="simulated ground-truth edge in pixels (default 512)")
    parser.add_argument("--lr-metric", choices=("ssim", "psnr"), default="ssim",
                        help="metric that picks Lucy–Richardson's iterations and damping (default ssim)")
    parser.add_argument("--search-size", type=int, default=512,
                        help="the LR search runs on the central N×N ground-truth pixels of the validation "
                             "pair (default 512), which bounds its cost")
    parser.add_argument("--no-lr-search", action="store_true",
                        help=f"skip the search; use the paper's {PAPER_LR_ITERATIONS} iterations / "
                             f"{PAPER_LR_DAMPING * 100:.1f}%% damping")
    parser.add_argument("--fwhm", choices=("auto", "on", "off"), default="auto",
                        help="PSF-FWHM spot analysis (auto: for beads/ccps)")
    parser.add_argument("--examples", type=int, default=3, help="test images shown in the figures (default 3)")
    parser.add_argument("--device", default="auto", help="ONNX Runtime device for the networks (default auto)")
    parser.add_argument("--tile", type=int, default=512, help="network tile edge in input pixels (default 512)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def modality_from_card(card: object) -> str | None:
    """Guess the simulator modality key from a card's input modality text (e.g. 'widefield 10x/0.4')."""
    text = str(getattr(card, "input_modality", "")).lower()
    for prefix, modality in _CARD_MODALITY_PREFIXES.items():
        if text.startswith(prefix):
            return modality
    return None


def _card_summary(card: object) -> dict[str, object]:
    return {key: getattr(card, key, None) for key in
            ("name", "version", "input_modality", "output_modality", "input_pixel_size_um",
             "output_pixel_size_um", "emission_wavelength_nm", "precision")}


def choose_lucy_richardson(validation: EvalPair, modality: str, metric: str, search: bool) -> LucyRichardsonChoice:
    if not search:
        return LucyRichardsonChoice(PAPER_LR_ITERATIONS, PAPER_LR_DAMPING, "paper", float("nan"))

    def score(candidate, truth) -> float:
        return getattr(score_image(candidate, truth), metric)

    return search_lucy_richardson(deconvolution_input(validation), validation.hr, baseline_psf(validation, modality),
                                  score, metric=metric, iterations=DEFAULT_LR_ITERATIONS,
                                  dampings=DEFAULT_LR_DAMPINGS)


def _semireal_set(seed: int) -> tuple[EvalPair, list[EvalPair], object, str]:
    """(validation pair, test pairs, exact LR PSF on the HR grid, description) of the semi-real set."""
    from srscope.training.evaluation.semireal import (
        DEFAULT_CAMERAS,
        available_sources,
        gaussian_psf_sigma_um,
        semireal_pairs,
    )

    from .methods import gaussian_box_psf

    names = available_sources()
    test_names = [n for n in names if n != SEMIREAL_VALIDATION_SOURCE]
    if SEMIREAL_VALIDATION_SOURCE not in names or not test_names:
        raise ValueError("the semi-real set needs its source packages: pip install 'srscope-training[semireal]'")
    validation = semireal_pairs([SEMIREAL_VALIDATION_SOURCE], seed=seed + 1, cameras=DEFAULT_CAMERAS[:1])[0]
    tests = semireal_pairs(test_names, seed=seed)
    first = tests[0]
    sigma = gaussian_psf_sigma_um(first.emission_wavelength_nm, first.lr_na)
    psf = gaussian_box_psf(sigma, first.lr_pixel_size_um, first.hr_pixel_size_um)
    description = (f"semi-real: {', '.join(test_names)} × cameras {', '.join(DEFAULT_CAMERAS)} (real specimens from "
                   f"PyPI packages; Gaussian PSF σ = 0.21λ/NA, area binning, sCMOS/EMCCD noise), seed {seed}")
    return validation.to_eval_pair(), [p.to_eval_pair() for p in tests], psf, description


def _search_with_psf(validation: EvalPair, psf, metric: str, search: bool) -> LucyRichardsonChoice:
    if not search:
        return LucyRichardsonChoice(PAPER_LR_ITERATIONS, PAPER_LR_DAMPING, "paper", float("nan"))

    def score(candidate, truth) -> float:
        return getattr(score_image(candidate, truth), metric)

    return search_lucy_richardson(deconvolution_input(validation), validation.hr, psf, score, metric=metric,
                                  iterations=DEFAULT_LR_ITERATIONS, dampings=DEFAULT_LR_DAMPINGS)


def run(args: argparse.Namespace) -> int:
    from srscope.training.evaluation.report import write_report
    from srscope.training.evaluation.runner import evaluate

    try:
        gan = network_method("gan", args.model, device=args.device, tile=args.tile)
        methods: list[Method] = []
        ablation = network_method("cnn-only", args.ablation, device=args.device, tile=args.tile) \
            if args.ablation else None
        modality = args.modality or modality_from_card(gan.card)
        if modality is None:
            raise ValueError(f"cannot tell the modality from the model card "
                             f"({getattr(gan.card, 'input_modality', '?')!r}); pass --modality")
        if args.n_images < 1:
            raise ValueError("-n must be at least 1")
        hr_shape = (args.hr_size, args.hr_size)
        exact_psf = None
        if args.semireal:
            validation, pairs, exact_psf, source = _semireal_set(args.seed)
            n_pairs, structure = len(pairs), None
        elif args.data:
            emission = args.emission_nm or gan.card.emission_wavelength_nm
            pairs: list[EvalPair] | object = directory_pairs(args.data, emission_wavelength_nm=emission)
            if args.validation_data:
                validation = directory_pairs(args.validation_data, emission_wavelength_nm=emission)[0]
            else:
                if len(pairs) < 2:
                    raise ValueError("--data needs at least 2 pairs (one is used to tune Lucy–Richardson) "
                                     "or a separate --validation-data directory")
                validation, pairs = pairs[0], pairs[1:]
            n_pairs = len(pairs)
            source = f"registered pairs from {args.data}"
            structure = None
        else:
            structure = args.structure
            pairs = simulated_pairs(modality, structure, args.n_images, seed=args.seed, hr_shape=hr_shape)
            validation = simulated_validation_pair(modality, structure, seed=args.seed, hr_shape=hr_shape)
            n_pairs = args.n_images
            source = (f"simulated {modality} / {structure}, seeds {args.seed}–{args.seed + args.n_images - 1}, "
                      f"aligned (misregister=False)")
        card_scale = gan.card.scale_factor
        if abs(card_scale - validation.scale) > 1e-3:
            raise ValueError(f"model scale ×{card_scale:g} does not match the data's ×{validation.scale}")

        progress = not args.quiet
        if progress:
            print(f"srtrain evaluate: tuning Lucy–Richardson on {validation.name} …", file=sys.stderr)
        lr_choice = choose_lucy_richardson(validation.center_crop(args.search_size), modality, args.lr_metric,
                                           not args.no_lr_search)
        methods += baseline_methods(modality, lr_choice)
        if exact_psf is not None:
            exact_choice = _search_with_psf(validation.center_crop(args.search_size), exact_psf, args.lr_metric,
                                            not args.no_lr_search)
            methods.insert(2, exact_lucy_richardson_method(exact_psf, exact_choice))
        methods[1] = dataclasses.replace(methods[1], name="lucy-richardson-nominal") if exact_psf is not None \
            else methods[1]
        if ablation is not None:
            methods.append(ablation)
        for item in args.compare:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise ValueError(f"--compare {item!r} is not of the form NAME=MODEL.onnx")
            methods.append(network_method(name, Path(path), device=args.device, tile=args.tile))
        methods.append(gan)
        for net in (m for m in methods if m.is_network):
            net.run(validation)  # warm-up: session start-up is not part of the per-image time
        measure_spots = args.fwhm == "on" or (args.fwhm == "auto" and structure in SPOT_STRUCTURES)
        result = evaluate(pairs, methods, n_pairs=n_pairs, measure_spots=measure_spots,
                          n_examples=max(1, args.examples), lr_choice=lr_choice, progress=progress)
        config = {"model": str(args.model), "ablation": str(args.ablation) if args.ablation else None,
                  "modality": modality, "structure": structure, "source": source,
                  "validation_pair": validation.name, "device": args.device,
                  "models": {m.name: _card_summary(m.card) for m in methods if m.is_network},
                  "deconvolution_psf": describe_optics(input_optics(modality, validation.emission_wavelength_nm))}
        report = write_report(result, args.out, config)
    except (ValueError, OSError) as exc:
        print(f"srtrain evaluate: error: {exc}", file=sys.stderr)
        return 2
    summary = json.loads((args.out / "summary.json").read_text())
    print(f"report: {report}")
    for method, row in summary["table"].items():
        print(f"  {method:16s} PSNR {row['psnr']:.2f} dB  SSIM {row['ssim']:.4f}  NRMSE {row['nrmse']:.4f}  "
              f"{row['seconds_per_megapixel']:.3f} s/MP")
    return 0
