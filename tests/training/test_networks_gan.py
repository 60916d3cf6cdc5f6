"""The generator/discriminator have the structure the Methods describe, and the halo probe is right."""

import torch
from srscope.training.gan.networks import (
    LRELU_SLOPE,
    Discriminator,
    DiscriminatorConfig,
    Generator,
    GeneratorConfig,
    ResidualDownBlock,
    receptive_field_radius,
)


def test_generator_maps_hr_grid_image_to_same_size_single_channel():
    g = Generator(GeneratorConfig(width=4))
    y = g(torch.randn(2, 1, 48, 80))
    assert y.shape == (2, 1, 48, 80)
    assert len(g.down) == 4 and len(g.up) == 4
    assert g.head.in_channels == 4 and g.head.out_channels == 1  # paper: 32 → 1 at width 32
    assert Generator(GeneratorConfig(width=32)).head.in_channels == 32


def test_down_block_adds_channel_zero_padded_input():
    block = ResidualDownBlock(3, 8)
    with torch.no_grad():
        for m in block.body:
            if isinstance(m, torch.nn.Conv2d):
                m.weight.zero_()
                m.bias.zero_()
    x = torch.randn(1, 3, 8, 8)
    y = block(x)
    assert torch.equal(y[:, :3], x)  # input passes straight through ...
    assert torch.count_nonzero(y[:, 3:]) == 0  # ... into zero-padded channels


def test_leaky_relu_slope_is_paper_value():
    assert LRELU_SLOPE == 0.1
    g = Generator(GeneratorConfig(width=2))
    slopes = {m.negative_slope for m in g.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.1}


def test_discriminator_outputs_one_probability_per_patch():
    d = Discriminator(DiscriminatorConfig(width=4, max_channels=32))
    x = torch.randn(3, 1, 64, 64)
    logits = d(x)
    assert logits.shape == (3,)
    p = d.probability(x)
    assert torch.allclose(p, torch.sigmoid(logits)) and bool(((p > 0) & (p < 1)).all())
    convs = [m for m in d.features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + 5 * 2  # one conv, then five blocks of two
    assert sum(isinstance(m, torch.nn.Linear) for m in d.fc) == 2


def test_receptive_field_probe_bounds_the_influence_of_far_pixels():
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(width=2)).double().eval()
    r = receptive_field_radius(g, probe_size=320)
    assert 60 < r < 160  # 4-level U-Net with 3×3 convs: ~125 px
    x = torch.randn(1, 1, 320, 320, dtype=torch.float64)
    c = 160
    far = x.clone()
    mask = torch.ones_like(far, dtype=torch.bool)
    mask[..., c - r:c + r + 1, c - r:c + r + 1] = False
    far[mask] = 5.0  # change every pixel outside the radius
    near = x.clone()
    near[..., c - r // 2, c + r // 2] += 5.0  # change one pixel well inside it
    with torch.no_grad():
        base, y_far, y_near = g(x)[0, 0, c, c], g(far)[0, 0, c, c], g(near)[0, 0, c, c]
    assert torch.equal(base, y_far)
    assert not torch.equal(base, y_near)


def test_receptive_field_does_not_depend_on_width():
    assert receptive_field_radius(Generator(GeneratorConfig(width=1))) == receptive_field_radius(
        Generator(GeneratorConfig(width=3)))
