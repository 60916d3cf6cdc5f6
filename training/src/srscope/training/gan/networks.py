"""Generator and discriminator as described in Wang et al. (2019), Methods "Generative model" /
"Discriminative model" (and the preprint's eqs. 3–7).

Generator (U-Net, eqs. 3–5):

* four down-sampling blocks, each ``x_k = pad(x_{k-1}) + LReLU[Conv{LReLU[Conv{LReLU[Conv{x_{k-1}}]}]}]``
  where ``pad`` zero-pads the block input in the channel dimension so it can be added to the wider
  block output ("the input of each down-sampling block is zero-padded and added to the output");
  average pooling (2×2) after each block;
* one convolution at the bottom;
* four up-sampling blocks ``y_k = LReLU[Conv{LReLU[Conv{LReLU[Conv{Concat(x_{5-k}, up(y_{k-1}))}]}]}]``;
* a final convolution ``width → 1`` (the paper's 32 → 1).

The channel count doubles per level (``width, 2·width, 4·width, 8·width``, bottom ``16·width``) as in
the virtual-staining U-Net the paper builds on (its ref. 43). The paper does not say how the
up-sampling is done; we use ×2 bilinear resampling (exports to a single ONNX ``Resize``, and avoids
the checkerboard artefacts of transposed convolutions). ``width`` is configurable: 32 is the paper,
8–16 is what trains in minutes on a laptop CPU.

Discriminator (eqs. 6–7): a convolution, five blocks ``z_k = LReLU[Conv{LReLU[Conv{z_{k-1}}]}]``
(the second convolution of each block has stride 2 and the channel count doubles, capped),
average pooling over the whole remaining patch, two fully connected layers and a sigmoid.
``Discriminator.forward`` returns the logit (the value before the sigmoid) so the losses can use
the numerically stable ``log σ(z)`` form and DDP can wrap the module directly;
:meth:`Discriminator.probability` applies the sigmoid of eq. 7.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.1  # "leaky rectified linear unit ... with a slope of α = 0.1"
DOWN_LEVELS = 4


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1)


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(LRELU_SLOPE)


@dataclass(frozen=True)
class GeneratorConfig:
    """Hyper-parameters that fix the generator's shape (stored in checkpoints and model cards)."""

    width: int = 32
    levels: int = DOWN_LEVELS

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def size_multiple(self) -> int:
        """Input sides must divide by this so every pooling level sees whole pixels."""
        return 2**self.levels


class ResidualDownBlock(nn.Module):
    """Eq. 3: three conv+LReLU, plus the channel-zero-padded block input."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        if cout < cin:
            raise ValueError(f"residual block cannot shrink channels ({cin} → {cout})")
        self.extra_channels = cout - cin
        self.body = nn.Sequential(
            _conv(cin, cout), _lrelu(), _conv(cout, cout), _lrelu(), _conv(cout, cout), _lrelu()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels)) if self.extra_channels else x
        return skip + self.body(x)


class UpBlock(nn.Module):
    """Eq. 5: up-sample, concatenate with the same-level down output, three conv+LReLU."""

    def __init__(self, cin_low: int, cin_skip: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(cin_low + cin_skip, cout), _lrelu(), _conv(cout, cout), _lrelu(), _conv(cout, cout), _lrelu()
        )

    def forward(self, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(low, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.body(torch.cat([skip, up], dim=1))


class Generator(nn.Module):
    """U-Net generator; input and output are single-channel images on the HR pixel grid."""

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config or GeneratorConfig()
        w, n = self.config.width, self.config.levels
        if w < 1 or n < 1:
            raise ValueError(f"invalid generator config {self.config}")
        chans = [w * 2**k for k in range(n)]
        self.down = nn.ModuleList(ResidualDownBlock(cin, cout) for cin, cout in zip([1, *chans[:-1]], chans))
        self.pool = nn.AvgPool2d(2)
        self.bottom = nn.Sequential(_conv(chans[-1], 2 * chans[-1]), _lrelu())
        lows = [2 * chans[-1], *reversed(chans[1:])]
        self.up = nn.ModuleList(UpBlock(low, skip, skip) for low, skip in zip(lows, reversed(chans)))
        self.head = nn.Conv2d(w, 1, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        y = self.bottom(x)
        for block, skip in zip(self.up, reversed(skips)):
            y = block(y, skip)
        return self.head(y)


@dataclass(frozen=True)
class DiscriminatorConfig:
    width: int = 32
    blocks: int = 5
    max_channels: int = 512

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class Discriminator(nn.Module):
    """Patch classifier: probability that an image is a real HR image rather than G's output."""

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = config or DiscriminatorConfig()
        w = self.config.width
        layers: list[nn.Module] = [_conv(1, w), _lrelu()]
        c = w
        for _ in range(self.config.blocks):
            c_next = min(2 * c, self.config.max_channels)
            layers += [_conv(c, c_next), _lrelu(), _conv(c_next, c_next, stride=2), _lrelu()]
            c = c_next
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(c, c), _lrelu(), nn.Linear(c, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logit z of eq. 7, one per image."""
        z = self.features(x).mean(dim=(2, 3))  # average pooling over the whole (reduced) patch
        return self.fc(z).squeeze(1)

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        """D(x) = 1 / (1 + exp(−z)): probability that ``x`` is a real HR image."""
        return torch.sigmoid(self(x))


def receptive_field_radius(model: nn.Module, *, probe_size: int = 256, scale: int = 1) -> int:
    """Receptive-field radius (in the model's *input* pixels) measured with a gradient probe.

    Back-propagates from the centre output pixel and finds how far from the corresponding input
    pixel the input gradient is non-zero. LReLU never has zero slope, so with random weights every
    pixel inside the receptive field gets a non-zero gradient; this is exact for the actual graph
    (pooling, bilinear resampling and all) and needs no hand bookkeeping that could drift from
    the code. ``scale`` is the model's output/input size ratio. The receptive field does not
    depend on the channel width, so callers probe a width-1 copy to keep this cheap.
    """
    was_training = model.training
    dtype = next(model.parameters()).dtype
    model.eval()
    try:
        model.to(torch.float64)
        x = torch.zeros(1, 1, probe_size, probe_size, dtype=torch.float64, requires_grad=True)
        y = model(x)
        c_out = y.shape[-1] // 2
        y[0, 0, c_out, c_out].backward()
        c_in = c_out / scale
        nz = torch.nonzero(x.grad[0, 0].abs() > 0).to(torch.float64)
        radius = int(torch.ceil((nz - c_in).abs().max()).item()) if len(nz) else 0
        if radius >= probe_size // 2 - 1:
            raise ValueError(f"receptive field reaches the probe border; use probe_size > {probe_size}")
        return radius
    finally:
        model.to(dtype)
        model.train(was_training)
