"""The paper's objective (Methods, eq. 1) and the automatic choice of its weights λ and ν.

    L(G;D) = −log D(G(x)) + λ·MSE(G(x), y) − ν·log[(1 + SSIM(G(x), y)) / 2]
    L(D;G) = −log D(y) − log[1 − D(G(x))]

``−log D`` is computed from the discriminator's logit as ``softplus(−z)`` (and ``−log(1−D)`` as
``softplus(z)``), which equals the formula exactly but does not overflow when D saturates.

λ and ν: the paper sets them "so that the MSE loss and the SSIM loss are ~1–10 % of the combined
generator loss, depending on the noise level", and ν = 0 for confocal→STED. We make that
rule reproducible: each regularisation term is given a chosen share ``p`` of L(G;D) evaluated at
the operating point the paper reasons about — the adversarial term at the GAN equilibrium
(D = ½, so −log D = ln 2) and the MSE/SSIM terms at the level of agreement the *input* already
has with the label ("these values already represent a high degree of agreement between the
low-resolution input and the gold standard label"). Solving ``λ·m₀ = ν·s₀ = p·L`` with
``L = ln2 + λ·m₀ + ν·s₀`` gives ``λ = p·ln2 / ((1 − k·p)·m₀)`` for ``k`` active terms.
The weights then stay fixed, so the validation loss is comparable across the whole run
(model selection needs that).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim

ADVERSARIAL_AT_EQUILIBRIUM = math.log(2.0)


def ssim_index(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Gaussian-window SSIM (11×11, σ = 1.5, Wang et al. 2004) averaged over the batch."""
    return ssim(a, b, data_range=data_range, size_average=True)


def ssim_term(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """``−log[(1 + SSIM) / 2]``: 0 for identical images, grows as structure disagrees."""
    s = ssim_index(a, b, data_range)
    return -torch.log(((1.0 + s) / 2.0).clamp_min(1e-6))


@dataclass(frozen=True)
class LossWeights:
    """λ (MSE weight) and ν (SSIM weight); ``share`` records how they were chosen."""

    lam: float
    nu: float
    share: float | None = None
    reference_mse: float | None = None
    reference_ssim_term: float | None = None
    #: what the reference MSE/SSIM were measured on: "input" or "initial generator"
    reference: str | None = None

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


def auto_weights(
    prediction: torch.Tensor,
    hr: torch.Tensor,
    *,
    share: float = 0.05,
    use_ssim: bool = True,
    data_range: float = 1.0,
    reference: str = "input",
) -> LossWeights:
    """Choose λ, ν so each regulariser is ``share`` of L(G;D) at the reference operating point.

    ``prediction`` and ``hr`` are a representative batch (normalised). For a fresh generator the
    prediction is the input itself on the HR grid (``reference="input"``). For transfer learning
    it is the starting generator's output (``reference="initial generator"``): a trained model's
    MSE is several times below the input's, so weights calibrated on the input leave each term
    well short of the requested share (the shipped widefield model's stage A: ~3 % and ~4 % where
    10 % was asked).
    """
    n_terms = 2 if use_ssim else 1
    if not 0.0 < share < 1.0 / (n_terms + 1):
        raise ValueError(f"share must be in (0, {1.0 / (n_terms + 1):.3f}) for {n_terms} regularisers, got {share}")
    with torch.no_grad():
        m0 = float(F.mse_loss(prediction, hr))
        s0 = float(ssim_term(prediction, hr, data_range))
    if m0 <= 0:
        raise ValueError(f"{reference} and target are identical; λ cannot be calibrated from them")
    total = ADVERSARIAL_AT_EQUILIBRIUM / (1.0 - n_terms * share)
    lam = share * total / m0
    nu = share * total / s0 if use_ssim and s0 > 0 else 0.0
    return LossWeights(lam=lam, nu=nu, share=share, reference_mse=m0, reference_ssim_term=s0, reference=reference)


@dataclass
class GeneratorLossTerms:
    """Every term of L(G;D) for logging; ``total`` is what is back-propagated."""

    total: torch.Tensor
    adversarial: torch.Tensor
    mse: torch.Tensor
    ssim_term: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in vars(self).items()}


def generator_loss(
    fake_logits: torch.Tensor | None,
    fake: torch.Tensor,
    hr: torch.Tensor,
    weights: LossWeights,
    data_range: float = 1.0,
) -> GeneratorLossTerms:
    """L(G;D). ``fake_logits=None`` drops the adversarial term: the CNN-only ablation."""
    mse = F.mse_loss(fake, hr)
    s_term = ssim_term(fake, hr, data_range)
    if fake_logits is None:
        adversarial = torch.zeros((), dtype=fake.dtype, device=fake.device)
    else:
        adversarial = F.softplus(-fake_logits).mean()  # −log σ(z)
    total = adversarial + weights.lam * mse
    if weights.nu:
        total = total + weights.nu * s_term
    return GeneratorLossTerms(total=total, adversarial=adversarial, mse=mse, ssim_term=s_term)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """L(D;G) = −log D(y) − log[1 − D(G(x))], batch-averaged."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
