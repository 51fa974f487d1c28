"""Respacing, DDPM / DDIM sampling and power-cosine classifier-free guidance (issue 4).

Official counterparts: `masked_diffusion/respace.py`, `gaussian_diffusion.py: p_sample_loop, ddim_sample_loop`
and `models.py: MDTv2.forward_with_cfg`.
"""
import math

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from mdt_teach.diffusion import GaussianDiffusion
from mdt_teach.guidance import cfg_forward, cfg_scale_at, combine_cfg
from mdt_teach.models import build_model
from mdt_teach.sampling import SpacedDiffusion, respace, sample, sample_loop, space_timesteps

OFFICIAL_250 = [round(i * 999 / 249) for i in range(250)]  # official respace.py: space_timesteps(1000, "250")


@pytest.fixture(scope="module")
def diffusion():
    return GaussianDiffusion()


ALPHA_BAR = torch.tensor(GaussianDiffusion().alphas_cumprod, dtype=torch.float32)


class EpsModel(nn.Module):
    """The exact ε-predictor for data x_0 ~ N(μ_y, s²I), μ_y = 0.2·(y − 1.5), s = 0.5 (so the right sampler must
    return that distribution), with a constant variance value v; has the model contract and records every call."""

    in_channels, out_channels, learn_sigma, num_classes, is_mdt, mask_ratio = 3, 6, True, 4, False, None

    def __init__(self, v=0.3):
        super().__init__()
        self.s = nn.Parameter(torch.tensor(0.5))
        self.v = v
        self.calls = []

    def forward(self, x, t, y, enable_mask=False):
        self.calls.append({"t": t.clone(), "y": y.clone(), "n": len(x), "cfg": False})
        a = ALPHA_BAR[t].view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        mu = (0.2 * (y.float() - 1.5)).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        eps = (1 - a).sqrt() * (x - a.sqrt() * mu) / (a * self.s ** 2 + 1 - a)  # E[ε | x_t]
        return torch.cat([eps, torch.full_like(x, self.v)], dim=1)  # (B, 6, H, W)


class CfgEpsModel(EpsModel):
    """EpsModel with a forward_with_cfg, as the real models have."""

    def forward_with_cfg(self, x, t, y, cfg_scale=None, diffusion_steps=1000, scale_pow=4.0, guided_channels=3):
        self.calls.append({"t": t.clone(), "y": y.clone(), "n": len(x), "cfg": True, "scale": cfg_scale})
        return cfg_forward(self, x, t, y, cfg_scale, scale_pow, guided_channels, diffusion_steps)


def _z(n=2, seed=0, size=8):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# -------------------------------------------------------------------------------------------- respacing

def test_250_respacing_equals_official_list():
    steps = space_timesteps(1000, "250")
    assert steps == OFFICIAL_250 and len(steps) == 250
    assert steps[:3] == [0, 4, 8] and steps[-4:] == [987, 991, 995, 999]


def test_ddim_and_section_respacing():
    assert space_timesteps(1000, "ddim50") == list(range(0, 1000, 20))
    assert space_timesteps(1000, "1000") == space_timesteps(1000, "") == list(range(1000))
    assert space_timesteps(1000, 250) == OFFICIAL_250
    sections = space_timesteps(1000, "10,15,20")  # sections of 334, 333, 333 steps, both ends of each kept
    assert len(sections) == 45 and {0, 333, 334, 666, 667, 999} <= set(sections)


@pytest.mark.parametrize("bad", ["fast", "ddim999", "1001", "0", "ddimx", "250,abc"])
def test_bad_respacing_raises(diffusion, bad):
    with pytest.raises(ValueError):
        space_timesteps(1000, bad)
    with pytest.raises(ValueError):
        sample(EpsModel(), (1, 3, 8, 8), [0], diffusion, steps=bad)


def test_spaced_process_is_recomputed_from_kept_alpha_bar(diffusion):
    spaced = respace(diffusion, "250")
    assert isinstance(spaced, SpacedDiffusion) and spaced.base is diffusion
    kept = np.array(OFFICIAL_250)
    np.testing.assert_array_equal(spaced.timestep_map, kept)
    np.testing.assert_allclose(spaced.alphas_cumprod, diffusion.alphas_cumprod[kept], rtol=1e-12)
    expected_betas = 1 - diffusion.alphas_cumprod[kept] / np.append(1.0, diffusion.alphas_cumprod[kept[:-1]])
    np.testing.assert_allclose(spaced.betas, expected_betas, rtol=1e-12)
    np.testing.assert_allclose(spaced.log_betas, np.log(expected_betas), rtol=1e-12)  # learned-range upper bound
    assert spaced.num_timesteps == 250 and spaced.original_num_steps == 1000
    full = respace(diffusion, "1000")
    np.testing.assert_allclose(full.betas, diffusion.betas, rtol=1e-9)
    assert respace(spaced, "ddim50").num_timesteps == 50  # respacing a spaced process starts from its base
    assert respace(diffusion, None) is diffusion


def test_model_sees_original_integer_timesteps(diffusion):
    model = EpsModel()
    sample(model, _z(), [0, 1], diffusion, steps="250")
    seen = [c["t"] for c in model.calls]
    assert all(t.dtype == torch.int64 and t.shape == (2,) and t[0] == t[1] for t in seen)
    assert [int(t[0]) for t in seen] == OFFICIAL_250[::-1]


# ----------------------------------------------------------------------------------- DDPM and DDIM steps

def _scheduler_float64(scheduler):
    """diffusers keeps ᾱ in float32; recompute it in float64 from its own betas for a tight comparison."""
    scheduler.alphas_cumprod = torch.cumprod(1 - scheduler.betas.double(), dim=0)
    return scheduler


def test_ddpm_250_with_learned_variance_equals_diffusers(diffusion):
    model, z = EpsModel(), _z(seed=1)
    y = torch.tensor([0, 3])
    ours = sample(model, z, y, diffusion, steps="250", generator=torch.Generator().manual_seed(5))
    scheduler = _scheduler_float64(DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                                                 beta_end=0.02, clip_sample=False, variance_type="learned_range"))
    scheduler.set_timesteps(timesteps=OFFICIAL_250[::-1])
    g, x = torch.Generator().manual_seed(5), z
    with torch.no_grad():
        for t in scheduler.timesteps:
            out = model(x, torch.full((2,), int(t)), y)
            x = scheduler.step(out, int(t), x, generator=g).prev_sample
    np.testing.assert_allclose(ours.numpy(), x.numpy(), atol=1e-4, rtol=0)


def test_ddim50_eta0_equals_diffusers(diffusion):
    model, z = EpsModel(), _z(seed=2)
    y = torch.tensor([1, 2])
    ours = sample(model, z, y, diffusion, steps="ddim50", method="ddim", eta=0.0)
    scheduler = _scheduler_float64(DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                                                 beta_end=0.02, clip_sample=False, set_alpha_to_one=True))
    scheduler.set_timesteps(50)
    assert scheduler.timesteps.tolist() == list(range(980, -1, -20))
    x = z
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = model(x, torch.full((2,), int(t)), y)[:, :3]
            x = scheduler.step(eps, int(t), x, eta=0.0).prev_sample
    np.testing.assert_allclose(ours.numpy(), x.numpy(), atol=1e-4, rtol=0)


def _ddim_shrink(alpha_bar: np.ndarray, s: float = 0.5) -> float:
    """Exact std of deterministic DDIM from z ~ N(0, I) with the exact denoiser of N(μ, s²): each step is the
    linear map x ↦ (√(ᾱ'ᾱ)s² + √((1−ᾱ')(1−ᾱ)))/(ᾱs² + 1 − ᾱ)·x (around the mean), which shrinks the spread."""
    std = 1.0
    for i in range(len(alpha_bar) - 1, -1, -1):
        a, a_prev = alpha_bar[i], alpha_bar[i - 1] if i > 0 else 1.0
        std *= (math.sqrt(a_prev * a) * s * s + math.sqrt((1 - a_prev) * (1 - a))) / (a * s * s + 1 - a)
    return std


@pytest.mark.parametrize("method,steps", [("ddpm", "250"), ("ddim", "ddim50")])
def test_samplers_recover_the_gaussian_the_exact_denoiser_knows(diffusion, method, steps):
    y = torch.arange(4).repeat_interleave(32)  # 32 samples per class
    x = sample(EpsModel(v=0.0), (128, 3, 8, 8), y, diffusion, steps=steps, method=method,
               generator=torch.Generator().manual_seed(0))
    per_class = x.view(4, -1)  # (4, 32·3·8·8)
    # ancestral sampling with 250 steps reaches N(μ_y, 0.5²); 50 DDIM steps contract it by a known factor
    expected_std = 0.5 if method == "ddpm" else _ddim_shrink(respace(diffusion, steps).alphas_cumprod)
    assert method == "ddpm" or 0.45 < expected_std < 0.48
    np.testing.assert_allclose(per_class.mean(dim=1).numpy(), 0.2 * (np.arange(4) - 1.5), atol=0.02)
    np.testing.assert_allclose(per_class.std(dim=1).numpy(), np.full(4, expected_std), rtol=0.03)


def test_ddim_eta0_is_deterministic_and_noise_goes_through_the_generator(diffusion):
    z, y = _z(seed=3), [0, 1]

    def run(method, eta, seed):
        return sample(EpsModel(), z, y, diffusion, steps="20", method=method, eta=eta,
                      generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run("ddim", 0.0, 0), run("ddim", 0.0, 1))  # no noise at eta = 0
    assert torch.equal(run("ddim", 1.0, 0), run("ddim", 1.0, 0))
    assert not torch.allclose(run("ddim", 1.0, 0), run("ddim", 1.0, 1))
    assert torch.equal(run("ddpm", 0.0, 4), run("ddpm", 0.0, 4))
    assert not torch.allclose(run("ddpm", 0.0, 4), run("ddpm", 0.0, 5))
    shape_a = sample(EpsModel(), (2, 3, 8, 8), y, diffusion, steps="5", generator=torch.Generator().manual_seed(9))
    shape_b = sample(EpsModel(), (2, 3, 8, 8), y, diffusion, steps="5", generator=torch.Generator().manual_seed(9))
    assert torch.equal(shape_a, shape_b)  # the starting noise comes from the generator too


def test_sample_loop_yields_every_step(diffusion):
    steps = list(sample_loop(EpsModel(), _z(), [0, 1], diffusion, steps="ddim10", method="ddim"))
    assert [s["t"] for s in steps] == list(range(900, -1, -100)) and [s["i"] for s in steps] == list(range(9, -1, -1))
    assert steps[-1]["x"].shape == steps[-1]["pred_x0"].shape == (2, 3, 8, 8)


# ------------------------------------------------------------------------------------------------- CFG

def test_cfg_scale_at_equals_the_formula_and_its_table():
    for w, s in [(3.8, 4.0), (4.0, 0.01), (1.5, 1.0)]:
        for t in (0, 500, 999):
            expected = 1 + (w - 1) * (1 - math.cos(math.pi * (1 - t / 1000) ** s)) / 2
            assert cfg_scale_at(t, w, s) == pytest.approx(expected, abs=1e-12)
        assert cfg_scale_at(0, w, s) == pytest.approx(w)
    table = {  # the official forward_with_cfg formula to 2 decimals, w = 3.8, t = 999, 750, 500, 250, 100, 0
        4.0: [1.00, 1.00, 1.03, 1.64, 3.06, 3.80],
        1.0: [1.00, 1.41, 2.40, 3.39, 3.73, 3.80],
        0.01: [3.77, 3.80, 3.80, 3.80, 3.80, 3.80],
    }
    for s, row in table.items():
        assert [round(cfg_scale_at(t, 3.8, s), 2) for t in (999, 750, 500, 250, 100, 0)] == row
    t = torch.tensor([0, 500, 999])
    torch.testing.assert_close(cfg_scale_at(t, 3.8, 4.0),
                               torch.tensor([cfg_scale_at(int(v), 3.8, 4.0) for v in t]), rtol=1e-6, atol=1e-6)
    assert cfg_scale_at(999, 3.8, 4.0) < 1 + 1e-9  # essentially no guidance at the start


@pytest.mark.parametrize("bad", [-1, 1000, torch.tensor([5, 1000])])
def test_cfg_scale_at_rejects_out_of_range(bad):
    with pytest.raises(ValueError, match="timestep"):
        cfg_scale_at(bad, 3.8)


def test_combine_cfg_guides_only_the_first_three_channels():
    out = torch.randn(4, 8, 2, 2, generator=torch.Generator().manual_seed(0))  # [cond; uncond], C = 4
    t = torch.tensor([100, 600, 100, 600])
    guided = combine_cfg(out, t, 3.8, 4.0, guided_channels=3)
    w = cfg_scale_at(t[:2], 3.8, 4.0).view(-1, 1, 1, 1)
    mixed = out[2:, :3] + w * (out[:2, :3] - out[2:, :3])
    torch.testing.assert_close(guided[:2, :3], mixed)
    torch.testing.assert_close(guided[2:, :3], mixed)  # written to both halves
    assert torch.equal(guided[:, 3:], out[:, 3:])  # ε channel 3 and every v channel stay raw


def test_cfg_1_skips_the_doubled_batch(diffusion):
    model = CfgEpsModel()
    x = sample(model, _z(), [0, 1], diffusion, steps="10", cfg_scale=1.0)
    assert x.shape == (2, 3, 8, 8)
    assert all(not c["cfg"] and c["n"] == 2 for c in model.calls) and len(model.calls) == 10


def test_cfg_runs_the_doubled_batch_with_null_labels(diffusion):
    model = CfgEpsModel()
    x = sample(model, _z(), [0, 1], diffusion, steps="10", cfg_scale=3.8)
    assert x.shape == (2, 3, 8, 8) and torch.isfinite(x).all()
    wrapped = [c for c in model.calls if c["cfg"]]
    assert len(wrapped) == 10 and all(c["n"] == 4 and c["scale"] == 3.8 for c in wrapped)
    assert wrapped[0]["y"].tolist() == [0, 1, 4, 4]  # [y; null], null = num_classes
    assert [int(c["t"][0]) for c in wrapped] == space_timesteps(1000, "10")[::-1]


def test_model_without_forward_with_cfg_gets_the_same_guidance(diffusion):
    z = _z(seed=6)

    def run(model, cfg_scale):
        return sample(model, z, [2, 3], diffusion, steps="10", cfg_scale=cfg_scale,
                      generator=torch.Generator().manual_seed(1))

    a, b, c = run(CfgEpsModel(), 2.5), run(EpsModel(), 2.5), run(EpsModel(), 1.0)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


# ------------------------------------------------------------------------------------------- bad input

def test_bad_sampling_arguments_raise_before_the_first_step(diffusion):
    model = EpsModel()
    for kwargs in ({"method": "euler"}, {"eta": -0.5}):
        with pytest.raises(ValueError):
            sample_loop(model, _z(), [0, 1], diffusion, **kwargs)
    with pytest.raises(ValueError, match="one label per sample"):
        sample_loop(model, _z(), [0, 1, 2], diffusion)
    with pytest.raises(ValueError, match="labels must lie"):
        sample_loop(model, _z(), [0, 9], diffusion)
    assert model.calls == []


def test_sampling_restores_training_mode_and_shows_progress(diffusion, capsys):
    model = EpsModel().train()
    sample(model, _z(), [0, 1], diffusion, steps="5", progress=True)
    assert model.training and "ddpm 5 steps" in capsys.readouterr().err


# --------------------------------------------------------------------------- with the real tiny models

@pytest.mark.parametrize("name", ["DiT-T/4", "MDTv2-T/4"])
def test_tiny_untrained_models_sample_finite_images(diffusion, name):
    torch.manual_seed(0)
    model = build_model(name)
    with torch.no_grad():  # the output layer starts at zero; give it weights so the test sees real outputs
        model.final_layer.linear.weight.normal_(0, 0.02)
    for cfg_scale, method in [(1.0, "ddim"), (4.0, "ddpm")]:
        x = sample(model, (2, 3, 32, 32), [0, 3], diffusion, steps="4", cfg_scale=cfg_scale, method=method,
                   generator=torch.Generator().manual_seed(0))
        assert x.shape == (2, 3, 32, 32) and torch.isfinite(x).all()
    assert model.training  # sampling switched to eval and back


def _official_cfg(model, x, t, y, w, scale_pow, T=1000):
    """An independent transcription of the official `MDTv2.forward_with_cfg` (masked_diffusion/models.py): two
    plain forwards, the power-cosine weight written out, the first 3 channels guided."""
    half, labels = x[: len(x) // 2], y[: len(y) // 2]
    cond = model(half, t[: len(t) // 2], labels)
    uncond = model(half, t[: len(t) // 2], torch.full_like(labels, model.num_classes))
    tt = t[: len(t) // 2].float().view(-1, 1, 1, 1)
    scale = (1 - torch.cos(((1 - tt / T) ** scale_pow) * math.pi)) / 2 * (w - 1) + 1
    eps = uncond[:, :3] + scale * (cond[:, :3] - uncond[:, :3])
    return torch.cat([torch.cat([eps, eps]), torch.cat([cond, uncond])[:, 3:]], dim=1)


def test_model_cfg_equals_an_independent_transcription_of_the_official_formula(monkeypatch):
    import mdt_teach.guidance as guidance_mod
    torch.manual_seed(0)
    model = build_model("MDTv2-T/4").eval()
    with torch.no_grad():
        model.final_layer.linear.weight.normal_(0, 0.02)
        model.final_layer.adaLN_modulation[-1].weight.normal_(0, 0.02)
    x = torch.randn(2, 3, 32, 32).repeat(2, 1, 1, 1)
    t = torch.tensor([130, 700, 130, 700])
    y = torch.tensor([1, 2, model.num_classes, model.num_classes])
    with torch.no_grad():
        official = _official_cfg(model, x, t, y, 3.8, 4.0)
        torch.testing.assert_close(model.forward_with_cfg(x, t, y, cfg_scale=3.8, scale_pow=4.0), official)
        torch.testing.assert_close(cfg_forward(model, x, t, y, 3.8, 4.0, 3, 1000), official)
        torch.testing.assert_close(model.forward_with_cfg(x, t, y, cfg_scale=1.5, scale_pow=0.0),
                                   _official_cfg(model, x, t, y, 1.5, 0.0))          # DiT's constant scale
        # a wrong formula fails: the weight read at t/T instead of 1 − t/T
        monkeypatch.setattr(guidance_mod, "_power_cos_scale",
                            lambda t, w, p, T: 1 + (w - 1) * (1 - torch.cos((t / T) ** p * math.pi)) / 2)
        assert not torch.allclose(model.forward_with_cfg(x, t, y, cfg_scale=3.8, scale_pow=4.0), official)


