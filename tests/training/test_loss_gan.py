"""L(G;D), L(D;G) follow eq. 1 of the Methods; λ, ν are set to the requested share."""

import math

import pytest
import torch
import torch.nn.functional as F
from srscope.training.gan.losses import (
    LossWeights,
    auto_weights,
    discriminator_loss,
    generator_loss,
    ssim_index,
    ssim_term,
)


def _pair(seed=0):
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(4, 1, 32, 32, generator=g)
    lr = F.avg_pool2d(hr, 3, stride=1, padding=1)
    return lr, hr


@pytest.mark.parametrize("share", [0.01, 0.05, 0.1])
def test_auto_weights_give_each_regulariser_the_requested_share(share):
    lr, hr = _pair()
    w = auto_weights(lr, hr, share=share)
    mse, s = F.mse_loss(lr, hr).item(), ssim_term(lr, hr).item()
    total = math.log(2) + w.lam * mse + w.nu * s  # L(G;D) at D = 1/2 and the input's agreement
    assert w.lam * mse / total == pytest.approx(share, rel=1e-5)
    assert w.nu * s / total == pytest.approx(share, rel=1e-5)


def test_auto_weights_without_ssim_set_nu_zero():
    lr, hr = _pair()
    w = auto_weights(lr, hr, share=0.05, use_ssim=False)
    mse = F.mse_loss(lr, hr).item()
    assert w.nu == 0.0
    assert w.lam * mse / (math.log(2) + w.lam * mse) == pytest.approx(0.05, rel=1e-5)


def test_auto_weights_reject_impossible_share():
    lr, hr = _pair()
    with pytest.raises(ValueError, match="share"):
        auto_weights(lr, hr, share=0.5)


def test_generator_loss_matches_the_paper_formula():
    lr, hr = _pair()
    fake = lr
    logits = torch.tensor([0.3, -1.2, 2.0, 0.0])
    w = LossWeights(lam=3.0, nu=0.7)
    terms = generator_loss(logits, fake, hr, w)
    d = torch.sigmoid(logits)
    expected = (-torch.log(d)).mean() + 3.0 * ((fake - hr) ** 2).mean() - 0.7 * torch.log((1 + ssim_index(fake, hr)) / 2)
    assert terms.total.item() == pytest.approx(expected.item(), rel=1e-5)
    # ablation: no adversarial term
    cnn = generator_loss(None, fake, hr, w)
    assert cnn.adversarial.item() == 0.0
    assert cnn.total.item() == pytest.approx((expected - (-torch.log(d)).mean()).item(), rel=1e-5)


def test_discriminator_loss_matches_the_paper_formula_and_is_stable():
    real, fake = torch.tensor([1.5, -0.5]), torch.tensor([0.2, -3.0])
    expected = (-torch.log(torch.sigmoid(real)) - torch.log(1 - torch.sigmoid(fake))).mean()
    assert discriminator_loss(real, fake).item() == pytest.approx(expected.item(), rel=1e-5)
    assert math.isfinite(discriminator_loss(torch.tensor([-200.0]), torch.tensor([200.0])).item())


def test_ssim_term_is_zero_for_identical_and_positive_otherwise():
    lr, hr = _pair()
    assert ssim_term(hr, hr).item() == pytest.approx(0.0, abs=1e-6)
    assert ssim_term(lr, hr).item() > 0.01
