"""Diffusion math, loss weights and the (dual-pass) training objective (issue 4).

Official counterparts: `masked_diffusion/gaussian_diffusion.py: GaussianDiffusion.training_losses` and
`masked_diffusion/train_util.py: TrainLoop.forward_backward`; Min-SNR-γ weighting is arXiv 2303.09556.
"""
import math

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from torch import nn

from mdt_teach.diffusion import (LOSS_WEIGHTINGS, GaussianDiffusion, discretized_gaussian_log_likelihood,
                                 linear_betas, loss_weight, mean_flat, sample_timesteps, single_pass_loss,
                                 training_loss)
from mdt_teach.models import build_model

T = 1000


@pytest.fixture(scope="module")
def diffusion():
    return GaussianDiffusion()


def _ddpm_scheduler():
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                         clip_sample=False, prediction_type="sample", variance_type="fixed_small")


@pytest.fixture(scope="module")
def ddpm():
    """diffusers' DDPMScheduler with its ᾱ recomputed in float64 from its own betas.

    diffusers stores ᾱ in float32, so 1 − ᾱ_0 = 1e-4 keeps only ~4 digits (q_sample off by ~3e-6 at t = 0);
    in float64 its formulas can be compared at 1e-6. The float32 scheduler is checked at 5e-6.
    """
    scheduler = _ddpm_scheduler()
    scheduler.alphas_cumprod = torch.cumprod(1 - scheduler.betas.double(), dim=0)
    return scheduler


class FakeModel(nn.Module):
    """Contract stand-in: conv + t and y embeddings; label dropout in train mode and the masked pass use the
    global RNG, like the real models (so the two passes differ only through their own randomness)."""

    def __init__(self, is_mdt=False, learn_sigma=True, in_channels=3, num_classes=4):
        super().__init__()
        self.in_channels, self.learn_sigma, self.num_classes = in_channels, learn_sigma, num_classes
        self.is_mdt = is_mdt
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.mask_ratio = 0.3 if is_mdt else None
        self.conv = nn.Conv2d(in_channels, self.out_channels, 3, padding=1)
        self.y_embed = nn.Embedding(num_classes + 1, self.out_channels)
        self.t_gain = nn.Parameter(torch.tensor(0.3))
        self.calls = []

    def forward(self, x, t, y, enable_mask=False):
        self.calls.append({"t": t.clone(), "enable_mask": enable_mask, "x": x.clone()})
        if self.training:
            y = torch.where(torch.rand(y.shape) < 0.1, torch.full_like(y, self.num_classes), y)
        if enable_mask:
            x = x * (torch.rand(x.shape[0], 1, *x.shape[2:]) > self.mask_ratio).float()
        t_feat = torch.sin(t.float() / 100).view(-1, 1, 1, 1) * self.t_gain
        return self.conv(x) + self.y_embed(y)[:, :, None, None] + t_feat


class ConstModel(nn.Module):
    """Returns a leaf parameter as its output, so gradients w.r.t. each output channel can be read."""

    def __init__(self, out):
        super().__init__()
        self.out = nn.Parameter(out.clone())
        self.is_mdt = False

    def forward(self, x, t, y, enable_mask=False):
        return self.out


def _batch(n=8, c=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(n, c, size, size, generator=g) * 2 - 1
    y = torch.randint(0, 4, (n,), generator=g)
    return x0, y


# ----------------------------------------------------------------------------------------------- schedule

def test_betas_and_alphas_cumprod_equal_diffusers(diffusion, ddpm):
    assert diffusion.betas.dtype == np.float64 and diffusion.num_timesteps == T
    reference = _ddpm_scheduler()  # as diffusers builds it, float32
    np.testing.assert_allclose(diffusion.betas, reference.betas.double().numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(diffusion.alphas_cumprod, reference.alphas_cumprod.double().numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(diffusion.alphas_cumprod, ddpm.alphas_cumprod.numpy(), atol=1e-8, rtol=0)
    assert diffusion.alphas_cumprod_prev[0] == 1.0
    np.testing.assert_array_equal(diffusion.alphas_cumprod_prev[1:], diffusion.alphas_cumprod[:-1])
    assert diffusion.betas[0] == 1e-4 and diffusion.betas[-1] == 0.02


def test_linear_betas_scale_with_T():
    betas = linear_betas(500)  # endpoints scaled by 1000/T
    assert betas.shape == (500,) and math.isclose(betas[0], 2e-4) and math.isclose(betas[-1], 0.04)


def test_q_sample_equals_diffusers_add_noise(diffusion, ddpm):
    x0, _ = _batch(n=6)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 1, 10, 250, 500, 999])
    ours = diffusion.q_sample(x0, t, noise).numpy()
    np.testing.assert_allclose(ours, ddpm.add_noise(x0.double(), noise.double(), t).numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours, _ddpm_scheduler().add_noise(x0, noise, t).numpy(), atol=5e-6, rtol=0)


@pytest.mark.parametrize("t", [0, 1, 10, 500, 999])
def test_posterior_mean_and_variance_equal_diffusers(diffusion, ddpm, t):
    x0, _ = _batch(n=2, seed=t)
    x_t = torch.randn(x0.shape, generator=torch.Generator().manual_seed(t + 1))
    mean, var, log_var = diffusion.q_posterior_mean_variance(x0, x_t, torch.full((2,), t))
    # diffusers' step with prediction_type="sample" returns the posterior mean plus σ·z; remove the same z
    prev = ddpm.step(x0.double(), t, x_t.double(), generator=torch.Generator().manual_seed(7)).prev_sample
    z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64) if t > 0 \
        else torch.zeros_like(x0, dtype=torch.float64)
    ref_var = ddpm._get_variance(t) if t > 0 else torch.tensor(0.0)
    np.testing.assert_allclose(mean.numpy(), (prev - ref_var.sqrt() * z).numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(var.flatten().numpy(), np.full(2, float(ref_var)), atol=1e-6, rtol=0)
    expected_log = math.log(diffusion.posterior_variance[max(t, 1)])  # clipped: β̃_1 at t = 0
    np.testing.assert_allclose(log_var.flatten().numpy(), np.full(2, expected_log), rtol=1e-6)


def test_learned_range_equals_diffusers_except_clipped_t0(diffusion, ddpm):
    v = torch.linspace(-1, 1, 96).view(2, 3, 4, 4)  # the interpolation weight over its whole range
    for t in (1, 37, 400, 999):
        ours = diffusion.model_log_variance(v, torch.full((2,), t), v.shape)
        ref = ddpm._get_variance(t, predicted_variance=v, variance_type="learned_range")
        np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)
    # at t = 0 the official code uses log β̃_1 as the lower bound (diffusers' log β̃_0 = log 1e-20 would explode)
    low = diffusion.model_log_variance(-torch.ones(1, 3, 2, 2), torch.zeros(1, dtype=torch.long), (1, 3, 2, 2))
    high = diffusion.model_log_variance(torch.ones(1, 3, 2, 2), torch.zeros(1, dtype=torch.long), (1, 3, 2, 2))
    assert torch.allclose(low, torch.tensor(math.log(diffusion.posterior_variance[1])))
    assert torch.allclose(high, torch.tensor(math.log(1e-4)))


def test_x0_eps_round_trip(diffusion):
    x0, _ = _batch()
    eps = torch.randn_like(x0)
    t = torch.arange(0, 1000, 125)
    x_t = diffusion.q_sample(x0, t, eps)
    torch.testing.assert_close(diffusion.predict_x0_from_eps(x_t, t, eps), x0, atol=2e-3, rtol=0)
    torch.testing.assert_close(diffusion.predict_eps_from_x0(x_t, t, x0), eps, atol=2e-3, rtol=0)


# ------------------------------------------------------------------------------------------ loss weights

def test_min_snr_weights_equal_the_formula(diffusion):
    t = torch.tensor([0, 10, 50, 100, 129])
    w = loss_weight("min_snr", t, diffusion)
    np.testing.assert_allclose(w.numpy(), [0.0005, 0.011, 0.155, 0.586, 5 / 5.0647], atol=5e-4, rtol=0)
    assert w[-1] < 1.0 and w.dtype == torch.float32
    assert torch.equal(loss_weight("min_snr", torch.arange(130, 1000), diffusion), torch.ones(870))


def test_other_weightings_follow_their_formulas(diffusion):
    t = torch.arange(0, 1000, 7)
    snr = torch.as_tensor(diffusion.alphas_cumprod[t.numpy()] / (1 - diffusion.alphas_cumprod[t.numpy()]))
    assert torch.equal(loss_weight("none", t, diffusion), torch.ones(len(t)))
    torch.testing.assert_close(loss_weight("soft_min_snr", t, diffusion), (5 / (snr + 5)).float())
    torch.testing.assert_close(loss_weight("p2", t, diffusion), (1 / (1 + snr)).float())
    torch.testing.assert_close(loss_weight("p2", t, diffusion, k=2.0, gamma=0.5), ((2 + snr) ** -0.5).float())
    # the harmonic "soft" minimum never exceeds the hard minimum
    assert (loss_weight("soft_min_snr", t, diffusion) <= loss_weight("min_snr", t, diffusion) + 1e-7).all()


def test_unknown_weighting_lists_the_valid_names(diffusion):
    with pytest.raises(ValueError, match="min_snr") as err:
        loss_weight("min-snr", torch.tensor([3]), diffusion)
    assert all(name in str(err.value) for name in LOSS_WEIGHTINGS)
    x0, y = _batch(n=2)
    with pytest.raises(ValueError, match="unknown loss weighting"):
        training_loss(FakeModel(), x0, y, diffusion, weighting="snr")


@pytest.mark.parametrize("bad", [1000, -1, [3, 1000], 2.5])
def test_timestep_out_of_range_raises(diffusion, bad):
    x0, y = _batch(n=2)
    t = torch.as_tensor(bad).expand(2) if not isinstance(bad, list) else torch.tensor(bad)
    with pytest.raises(ValueError, match="timestep"):
        diffusion.q_sample(x0, t, torch.zeros_like(x0))
    with pytest.raises(ValueError, match="timestep"):
        training_loss(FakeModel(), x0, y, diffusion, t=t)
    with pytest.raises(ValueError, match="timestep"):
        loss_weight("min_snr", t, diffusion)


# ----------------------------------------------------------------------------------------------- the VLB

def test_vb_is_decoder_nll_at_t0_and_kl_elsewhere(diffusion):
    x0, _ = _batch(n=4)
    x0 = torch.round((x0 + 1) * 127.5) / 127.5 - 1  # 8-bit levels, some at ±1 exactly
    x0[0, 0, 0, 0], x0[1, 0, 0, 0] = -1.0, 1.0
    out = torch.randn(4, 6, 8, 8, generator=torch.Generator().manual_seed(3)) * 0.5
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([0, 0, 5, 700])
    x_t = diffusion.q_sample(x0, t, noise)
    vb = diffusion.vb_bits_per_dim(out, x0, x_t, t)
    p = diffusion.p_mean_variance(out, x_t, t)
    # t = 0: discretised Gaussian NLL, checked against the exact normal CDF (the code uses the tanh approximation)
    normal = torch.distributions.Normal(p["mean"], torch.exp(0.5 * p["log_variance"]))
    upper = torch.where(x0 > 0.999, torch.ones_like(x0), normal.cdf(x0 + 1 / 255))
    lower = torch.where(x0 < -0.999, torch.zeros_like(x0), normal.cdf(x0 - 1 / 255))
    exact_nll = -mean_flat(torch.log(upper - lower)) / math.log(2)
    np.testing.assert_allclose(vb[:2].numpy(), exact_nll[:2].numpy(), rtol=1e-2)
    approx = -mean_flat(discretized_gaussian_log_likelihood(x0, p["mean"], 0.5 * p["log_variance"])) / math.log(2)
    torch.testing.assert_close(vb[:2], approx[:2])
    # t > 0: KL(q(x_{t-1}|x_t,x_0) ‖ p(x_{t-1}|x_t)) in bits, against torch.distributions
    true_mean, _, true_log_var = diffusion.q_posterior_mean_variance(x0, x_t, t)
    q = torch.distributions.Normal(true_mean, torch.exp(0.5 * true_log_var))
    kl = mean_flat(torch.distributions.kl_divergence(q, normal)) / math.log(2)
    torch.testing.assert_close(vb[2:], kl[2:], rtol=1e-4, atol=1e-6)
    assert not torch.allclose(vb[:2], kl[:2])  # the t = 0 entries are not the KL


def test_vb_gradient_reaches_only_the_variance_channels(diffusion):
    x0, y = _batch(n=4)
    model = ConstModel(torch.randn(4, 6, 8, 8) * 0.3)
    t = torch.tensor([0, 3, 400, 999])
    terms = single_pass_loss(model, x0, t, y, diffusion, torch.ones(4), torch.randn_like(x0))
    terms["vb"].sum().backward()
    grad = model.out.grad
    assert torch.count_nonzero(grad[:, :3]) == 0 and torch.count_nonzero(grad[:, 3:]) > 0
    model.out.grad = None
    terms = single_pass_loss(model, x0, t, y, diffusion, torch.ones(4), torch.randn_like(x0))
    terms["mse"].sum().backward()
    assert torch.count_nonzero(model.out.grad[:, 3:]) == 0 and torch.count_nonzero(model.out.grad[:, :3]) > 0


# ----------------------------------------------------------------------------------- the training loss

def _by_hand(model, x0, y, t, diffusion, weighting, noise, enable_mask):
    """One pass written out with the public pieces: x_t, model output, ε-MSE, vb with a detached ε̂."""
    x_t = diffusion.q_sample(x0, t, noise)
    out = model(x_t, t, y, enable_mask=enable_mask)
    eps, v = out[:, :3], out[:, 3:]
    mse = ((noise - eps) ** 2).mean(dim=(1, 2, 3))
    vb = diffusion.vb_bits_per_dim(torch.cat([eps.detach(), v], dim=1), x0, x_t, t)
    return loss_weight(weighting, t, diffusion) * mse + vb, mse, vb


def test_dit_runs_one_pass(diffusion):
    x0, y = _batch()
    model = FakeModel(is_mdt=False).eval()
    t = torch.arange(0, 1000, 125)
    out = training_loss(model, x0, y, diffusion, weighting="none", t=t, generator=torch.Generator().manual_seed(5))
    assert len(model.calls) == 1 and model.calls[0]["enable_mask"] is False
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(5))
    loss, mse, vb = _by_hand(model, x0, y, t, diffusion, "none", noise, False)
    torch.testing.assert_close(out["loss"], loss.mean())
    torch.testing.assert_close(out["mse"], mse.mean().detach())
    assert math.isnan(out["m_mse"]) and math.isnan(out["m_vb"])
    for q in range(4):  # two samples per quartile: t = 0,125 | 250,375 | 500,625 | 750,875
        torch.testing.assert_close(out[f"loss_q{q}"], loss[2 * q:2 * q + 2].mean().detach())


def _dual_pass_check(model, weighting, x0, y, diffusion):
    """training_loss with fixed seeds == unmasked pass + masked pass computed by hand with the same seeds."""
    torch.manual_seed(11)  # label dropout and mask draws of the model
    out = training_loss(model, x0, y, diffusion, weighting=weighting, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(11)
    g = torch.Generator().manual_seed(3)
    t = torch.randint(0, T, (x0.shape[0],), generator=g)
    noise, noise_m = torch.randn(x0.shape, generator=g), torch.randn(x0.shape, generator=g)
    full, mse, vb = _by_hand(model, x0, y, t, diffusion, weighting, noise, False)
    masked, m_mse, m_vb = _by_hand(model, x0, y, t, diffusion, weighting, noise_m, True)
    assert torch.equal(out["t"], t)
    torch.testing.assert_close(out["loss"], full.mean() + masked.mean())
    torch.testing.assert_close(out["m_mse"], m_mse.mean().detach())
    torch.testing.assert_close(out["m_vb"], m_vb.mean().detach())
    torch.testing.assert_close(out["vb"], vb.mean().detach())
    return out


def test_mdt_dual_pass_equals_two_single_passes_by_hand(diffusion):
    x0, y = _batch(n=8)
    model = FakeModel(is_mdt=True).train()
    out = _dual_pass_check(model, "min_snr", x0, y, diffusion)
    first, second = model.calls[0], model.calls[1]
    assert (first["enable_mask"], second["enable_mask"]) == (False, True)
    assert torch.equal(first["t"], second["t"])  # same t ...
    assert not torch.allclose(first["x"], second["x"])  # ... fresh noise
    out["loss"].backward()
    assert model.conv.weight.grad is not None and torch.isfinite(model.conv.weight.grad).all()


def test_dual_pass_through_a_ddp_like_wrapper(diffusion):
    class Wrapper(nn.Module):  # DistributedDataParallel exposes the model as .module
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args, **kwargs):
            return self.module(*args, **kwargs)

    inner = FakeModel(is_mdt=True)
    x0, y = _batch(n=2)
    training_loss(Wrapper(inner), x0, y, diffusion)
    assert [c["enable_mask"] for c in inner.calls] == [False, True]


def test_timesteps_are_drawn_through_the_generator(diffusion):
    t1 = sample_timesteps(4096, diffusion, torch.Generator().manual_seed(0))
    t2 = sample_timesteps(4096, diffusion, torch.Generator().manual_seed(0))
    assert torch.equal(t1, t2) and t1.min() >= 0 and t1.max() <= 999 and t1.dtype == torch.long
    assert len(torch.unique(t1 * 4 // 1000)) == 4


def test_fixed_variance_model_has_no_vb(diffusion):
    x0, y = _batch(n=4)
    out = training_loss(FakeModel(learn_sigma=False).eval(), x0, y, diffusion, t=torch.tensor([0, 1, 2, 3]))
    assert float(out["vb"]) == 0.0 and torch.isclose(out["loss"], out["mse"])


def test_empty_quartile_is_nan(diffusion):
    x0, y = _batch(n=2)
    out = training_loss(FakeModel().eval(), x0, y, diffusion, t=torch.tensor([10, 20]))
    assert torch.isfinite(out["loss_q0"]) and all(math.isnan(out[f"loss_q{q}"]) for q in (1, 2, 3))


# --------------------------------------------------------------------------- with the real tiny models

def test_real_mdtv2_dual_pass_equals_two_single_passes(diffusion):
    torch.manual_seed(0)
    model = build_model("MDTv2-T/4").train()
    with torch.no_grad():  # the zero-initialised output layer would make every pass identical; wake it up
        for p in model.parameters():
            if p.dim() > 1 and p.abs().sum() == 0:
                p.normal_(0, 0.02)
    x0, y = _batch(n=4, size=32)
    _dual_pass_check(model, "min_snr", x0, y, diffusion)


def test_real_dit_single_pass(diffusion):
    model = build_model("DiT-T/4").eval()
    assert model.is_mdt is False
    x0, y = _batch(n=4, size=32)
    out = training_loss(model, x0, y, diffusion, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"]) and math.isnan(out["m_mse"])
