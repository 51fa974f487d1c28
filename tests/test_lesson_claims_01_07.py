"""The numbers that lessons 01 and 07 state in prose and in their hidden solutions, recomputed.

Lesson 01's solution 2 is run as published: its code block is cut out of the lesson source and executed
in the namespace the lesson builds.
"""
import contextlib
import io
import math
import re
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from mdt_teach.diffusion import GaussianDiffusion, loss_weight

ROOT = Path(__file__).resolve().parents[1]
LESSON_01 = ROOT / "notebooks" / "01_diffusion_basics.py"


@pytest.fixture(scope="module")
def diffusion():
    return GaussianDiffusion()


def test_lesson01_snr_crossing_and_alpha_bar_levels(diffusion):
    alpha_bar, snr = diffusion.alphas_cumprod, diffusion.snr
    t_half = int(np.argmin(np.abs(snr - 1)))
    assert t_half == 258 == int(np.argmin(np.abs(alpha_bar - 0.5)))  # ᾱ = 0.5 is SNR = 1
    assert int((snr < 1).sum()) == 741  # "about three quarters" of the steps
    assert int(np.argmin(np.abs(alpha_bar - 0.01))) == 673
    assert round(float(alpha_bar[673]), 4) == 0.0100
    assert round(float(snr[0])) == 9999 and f"{snr[999]:.0e}" == "4e-05"


@pytest.fixture(scope="module")
def lesson01(monkeypatch_module):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch_module.setenv("MDT_PROFILE", "tiny")
    monkeypatch_module.setenv("MDT_STATIC", "1")
    threads = torch.get_num_threads()
    with contextlib.redirect_stdout(io.StringIO()):
        namespace = runpy.run_path(str(LESSON_01))
    torch.set_num_threads(threads)
    return namespace


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _solution_code(source: str) -> str:
    """The ```python block inside the lesson's Solutions, without the jupytext comment prefix."""
    solutions = source.split("<summary>Solutions</summary>")[1]
    block = re.search(r"```python\n(.*?)#\s*```", solutions, re.S).group(1)
    return "\n".join(line.removeprefix("#    ") for line in block.splitlines())


def _rms(a, b):
    return float((a - b).pow(2).mean().sqrt())


def test_lesson01_solution2_runs_and_its_numbers_hold(lesson01):
    ns = dict(lesson01)
    start = ns["q_sample"](ns["x0"], torch.full((4,), 400), ns["eps"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(_solution_code(LESSON_01.read_text()), ns)  # the published loop, 5 sampled steps
    assert round(_rms(start, ns["x0"]), 2) == 0.99
    assert round(float(out.getvalue()), 2) == 0.98

    def walk(steps, sample):
        x, x0, alpha_bar = start.clone(), ns["x0"], ns["alpha_bar"]
        for s in range(400, 400 - steps, -1):
            ts = torch.full((4,), s)
            eps_s = (x - np.sqrt(alpha_bar[s]) * x0) / np.sqrt(1 - alpha_bar[s])
            mean, var = ns["posterior"](ns["predict_x0"](x, ts, eps_s), x, ts)
            x = mean + var.sqrt() * torch.randn_like(x) if sample else mean
        return _rms(x, x0)

    assert round(walk(5, sample=False), 2) == 0.96  # "0.96 if you keep only the mean"
    assert walk(401, sample=True) < 1e-5  # all the way to t = 0 lands on x_0 ("~10⁻⁶")


def test_lesson07_solution1_half_weight_timesteps(diffusion):
    t_all = torch.arange(1000)
    w = loss_weight("min_snr", t_all, diffusion)
    t_min = int((w - 0.5).abs().argmin())
    assert t_min == 92 and round(float(diffusion.snr[92]), 2) == 10.08 and round(float(w[92]), 3) == 0.496
    soft = loss_weight("soft_min_snr", t_all, diffusion)
    assert int((soft - 0.5).abs().argmin()) == 130
    assert round(float(soft[129]), 3) == 0.497 and round(float(soft[130]), 3) == 0.501
    assert diffusion.snr[129] > 5 > diffusion.snr[130]


def test_lesson07_small_t_weights_cited_in_solution3(diffusion):
    w = loss_weight("min_snr", torch.tensor([0, 50, 100]), diffusion)
    assert [round(float(v), 4) for v in w[:1]] == [0.0005]
    assert round(float(w[1]), 2) == 0.15 and round(float(w[2]), 2) == 0.59  # docs/toy_recipe.md too


def test_lesson07_solution2_p2_sits_below_min_snr(diffusion):
    t_all = torch.arange(1000)
    p2, min_snr = loss_weight("p2", t_all, diffusion), loss_weight("min_snr", t_all, diffusion)
    assert bool((p2 < min_snr).all())
    assert round(float(min_snr[0] / p2[0]), 2) == 5.0  # "5× below it at the nearly-clean end"
    assert round(float(p2[258]), 2) == 0.5 and float(min_snr[258]) == 1.0


def test_lesson07_ema_shares_in_the_table_and_solution5():
    from mdt_teach.ema import EMA

    def shares(decay, warmup, n):  # share of θ_0 left after 1..n updates: Π_{k<n} d_k, with the library's d_k
        ema = EMA(torch.nn.Linear(1, 1), decay=decay, warmup=warmup)
        return np.cumprod([ema.decay_at(k) for k in range(n)])

    official = shares(0.9999, False, 10_000)
    assert int(np.argmax(official < 0.5)) + 1 == 6932  # "first at n = 6932"
    assert round(math.log(2) / -math.log(0.9999), 1) == 6931.1
    assert round(float(official[999]), 3) == 0.905  # "still holds 0.905 of θ_0"
    assert round(float(shares(0.999, False, 1000)[-1]), 3) == 0.368
    warm = shares(0.999, True, 1000)
    assert warm[0] == 0.1 and warm[-1] < 1e-20  # "the first update already keeps only 1/10 of θ_0"
    ema = EMA(torch.nn.Linear(1, 1), decay=0.999, warmup=True)
    assert next(k for k in range(100_000) if ema.decay_at(k) == 0.999) == 8990  # "thousands of steps in"
