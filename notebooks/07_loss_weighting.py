# %% [markdown]
# # 07 · Loss weighting
# *Not every timestep deserves the same weight: Min-SNR-5, MDTv2's timestep-adapted loss.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mdt-teach/mdt-teach/blob/main/notebooks/07_loss_weighting.ipynb)

# %%
# Colab only: fetch the course at this notebook's git ref and install it (does nothing elsewhere).
import subprocess
import sys

if "google.colab" in sys.modules:
    REPO, REF = "https://github.com/mdt-teach/mdt-teach", "main"
    subprocess.run(["git", "clone", "--depth", "1", "--branch", REF, REPO, "/content/mdt-teach"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/mdt-teach"], check=True)
    sys.path.insert(0, "/content/mdt-teach")

# %%
import mdt_teach

run = mdt_teach.setup()

# %% [markdown]
# ## What you'll learn
# DiT and MDT v1 average the ε-MSE over timesteps drawn uniformly from 0..999: every t counts the same.
# MDTv2 multiplies the MSE by a **timestep weight** w_t. That weight is Min-SNR-γ (Hang et al., ICCV 2023)
# with γ = 5, which the MDTv2 paper calls "timestep-adapted loss weights". In this lesson you
# - plot SNR(t) and the weights of Min-SNR-5 and two alternatives;
# - measure which timesteps dominate the gradient, with and without the weight;
# - compare a tiny model trained with and without the weighting;
# - look at MDTv2's other training change: the wider mask-ratio range.
#
# Read along: [Min-SNR](https://arxiv.org/abs/2303.09556) (arXiv 2303.09556); [improved
# DDPM](https://arxiv.org/abs/2102.09672) (arXiv 2102.09672) (the hybrid loss);
# [`masked_diffusion/gaussian_diffusion.py`](https://github.com/sail-sg/MDT/blob/main/masked_diffusion/gaussian_diffusion.py)
# `GaussianDiffusion.training_losses`.

# %% [markdown]
# ## SNR and Min-SNR-k
# From lesson 01, SNR(t) = ᾱ_t / (1 − ᾱ_t). For ε-prediction, Min-SNR-k weights the MSE by
#
# $$w_t = \frac{\min(\mathrm{SNR}(t), k)}{\mathrm{SNR}(t)}.$$
#
# That is 1 wherever SNR ≤ k, i.e. for every noisy step, and falls towards 0 for the nearly-clean steps
# (SNR ≫ k). The reasoning of Hang et al. (arXiv 2303.09556): treat each timestep as one task of a
# multi-task problem. The ε-MSE equals SNR(t) times the squared error of x̂_0, so with equal weights the
# nearly-clean steps, where only a trace of noise is left to remove, pull hardest on the shared weights;
# they also argue that the tasks' gradients conflict. Capping the weight balances the tasks, and they
# report faster convergence. A measurement after the comparison below checks the first part on a tiny model.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from mdt_teach.diffusion import LOSS_WEIGHTINGS, GaussianDiffusion, loss_weight

diffusion = GaussianDiffusion()
snr = torch.as_tensor(diffusion.snr)


# Build Min-SNR-5 from the formula, then check it against the library.
def min_snr(snr, k=5.0):
    return torch.minimum(snr, torch.full_like(snr, k)) / snr


t_all = torch.arange(1000)
w = min_snr(snr)
torch.testing.assert_close(w.float(), loss_weight("min_snr", t_all, diffusion))
t_one = int(torch.nonzero(w == 1)[0])  # the first t with weight exactly 1
print(f"w_0 = {w[0]:.4f}, w_50 = {w[50]:.3f}, w_100 = {w[100]:.3f}; w = 1 from t = {t_one}")

# %%
# All the weightings the library knows, plotted over t.
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].semilogy(t_all, snr)
axes[0].axhline(5, color="grey", ls="--", lw=0.8)
axes[0].set(title="SNR(t); dashed: k = 5", xlabel="t")
for name in LOSS_WEIGHTINGS:
    axes[1].plot(t_all, loss_weight(name, t_all, diffusion), label=name)
axes[1].set(title="weight on the ε-MSE", xlabel="t", xlim=(0, 400))
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# - `min_snr` (MDTv2): a hard cap, exactly 1 from t = 130.
# - `soft_min_snr` (Crowson et al. 2024): k / (SNR + k), a smooth version that also dips a little at
#   noisy t.
# - `p2` (Choi et al. 2022): 1 / (k + SNR)^γ, which emphasises the coarse, noisy steps even more.

# %% [markdown]
# ## A tiny comparison: none vs Min-SNR-5
# Train the same small MDTv2 twice with the library's `Trainer`, once with each weighting: same seed,
# same data, a few dozen steps. Then measure both on a fixed held-out batch with the *unweighted* MSE,
# per timestep quartile. Min-SNR-5 spends its effort on the noisy quartiles. Expect a small gap at this
# length; treat it as a demonstration, not a result.

# %%
import tempfile

from mdt_teach.data import smileys_batch
from mdt_teach.diffusion import quartile_means, single_pass_loss
from mdt_teach.recipe import TrainConfig
from mdt_teach.train import Trainer

small = dict(depth=2, hidden_size=64, num_heads=4)
steps = 60 if run.profile == "tiny" else 400
trained = {}
for weighting in ["none", "min_snr"]:
    train_cfg = TrainConfig(model="MDTv2-T/4", steps=steps, batch_size=32, seed=0, weighting=weighting,
                            model_args=small, out=tempfile.mkdtemp(), eval_samples=0, grid_samples=0,
                            ckpt_every=10**9, progress=False)
    trainer = Trainer(train_cfg, log=lambda *a, **k: None)
    trainer.fit()
    trained[weighting] = trainer.model.eval()

x0, y = smileys_batch(256, seed=99)
t_eval = torch.arange(256) * 1000 // 256  # evenly over 0..999
noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    per_quartile = {name: quartile_means(single_pass_loss(m, x0, t_eval, y, diffusion, torch.ones(256), noise)["mse"],
                                         t_eval, 1000) for name, m in trained.items()}
for name, q in per_quartile.items():
    print(f"{name:8s} unweighted MSE by quartile:", " ".join(f"{v:.4f}" for v in q.tolist()))

# %% [markdown]
# ## Why Min-SNR helps: where the gradient comes from
# Take the model trained *without* weighting and a fresh batch with 16 timesteps in each quartile. For
# each quartile, compute the gradient of its part of the batch-mean ε-MSE (the term the weight multiplies)
# with respect to all model parameters, once with w = 1 and once with Min-SNR-5, and print its norm.

# %%
model = trained["none"]
params = [p for p in model.parameters() if p.requires_grad]
x_g, y_g = smileys_batch(64, seed=7)
t_g = torch.arange(64) * 1000 // 64  # evenly over 0..999: 16 steps per quartile
noise_g = torch.randn(x_g.shape, generator=torch.Generator().manual_seed(1))
grad_norm = {"none": [], "min_snr": []}
for q in range(4):
    rows = slice(16 * q, 16 * (q + 1))
    mse = single_pass_loss(model, x_g[rows], t_g[rows], y_g[rows], diffusion, torch.ones(16), noise_g[rows])["mse"]
    for name in grad_norm:
        part = (loss_weight(name, t_g[rows], diffusion) * mse).sum() / 64  # this quartile's share of the mean
        grads = torch.autograd.grad(part, params, retain_graph=True, materialize_grads=True)
        grad_norm[name].append(float(torch.cat([g.flatten() for g in grads]).norm()))
for name, norms in grad_norm.items():
    print(f"{name:8s} gradient norm by quartile:", " ".join(f"{v:.3f}" for v in norms),
          f"| q0 / largest other = {norms[0] / max(norms[1:]):.1f}×")
assert grad_norm["min_snr"][1:] == grad_norm["none"][1:]  # w = 1 for t ≥ 130: q1..q3 untouched
assert grad_norm["none"][0] > 2 * max(grad_norm["none"][1:])  # equal weights: the nearly-clean quartile dominates
assert grad_norm["min_snr"][0] < grad_norm["none"][0] / 2  # Min-SNR-5 shrinks it

# %% [markdown]
# Each quartile holds the same number of samples, yet with w = 1 the nearly-clean quartile (t < 250) gives
# a gradient several times larger than any other (the printed ratio). Min-SNR-5 shrinks that quartile's
# gradient, here to under twice the others, and leaves q1–q3 exactly as they were, because their weight is 1.
# That is all this cell shows: the size imbalance that the weight corrects, on one batch of a tiny model.
# It does not test the other two parts of the argument (conflicting gradients, faster convergence).

# %% [markdown]
# ## The mask-ratio range
# MDTv2 changes one more training knob: the mask ratio is no longer fixed at 0.3 (MDT v1). Each forward
# call draws **one** ratio ρ = 0.3 + 0.2·u, u ~ U[0, 1), which the whole batch shares. With L tokens the
# encoder keeps K = int(L·(1 − ρ)). For the paper's L = 256 that is 128 to 179 tokens: `int()` truncates,
# so ratios in (0.496, 0.5) keep 128 (about 2% of draws).

# %%
from mdt_teach.masking import draw_mask_ratio, num_kept

gen = torch.Generator().manual_seed(0)
kept = [num_kept(64, draw_mask_ratio(0.3, 0.2, generator=gen)) for _ in range(2000)]
kept_256 = [num_kept(256, draw_mask_ratio(0.3, 0.2, generator=gen)) for _ in range(2000)]
assert min(kept) >= int(64 * 0.5) and max(kept) <= int(64 * 0.7)
assert max(kept_256) == 179 and min(kept_256) >= 128
plt.figure(figsize=(5, 2.4))
plt.hist(kept, bins=np.arange(30.5, 46.5), rwidth=0.8)
plt.title("tokens kept per forward call (L = 64, ρ ~ U[0.3, 0.5))", fontsize=9)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print("min-SNR weight is exactly 1 from t =", t_one)
print("weightings:", ", ".join(LOSS_WEIGHTINGS))
print("K range for L = 256:", min(kept_256), "to", max(kept_256))

# %% [markdown]
# > **What the official code actually does.** In MDTv2 the Min-SNR weighting is hard-coded in
# > `training_losses`, with no flag, and k = 5. It multiplies only the ε-MSE: the variational term `vb`,
# > which trains the variance channels, is never weighted. MDT v1 and DiT use no weighting. The same
# > weight applies to both passes (unmasked and masked), and they are summed 1:1.
#
# ## Summary
# - SNR(t) = ᾱ/(1−ᾱ) crosses 5 between t = 129 and 130. Min-SNR-5 leaves every noisier step at weight 1
#   and shrinks the nearly-clean ones (w_0 ≈ 0.0005).
# - With equal weights the nearly-clean quartile dominates the ε-MSE gradient; Min-SNR-5 shrinks its
#   gradient and leaves the noisier quartiles unchanged.
# - The weight multiplies the ε-MSE only, in both MDT passes.
# - MDTv2 also widens the mask ratio to U[0.3, 0.5), drawn once per forward call for the whole batch.
#
# ## Exercises
# 1. Which t has weight 0.5 under Min-SNR-5? Under soft-min-SNR with k = 5?
# 2. Run the comparison with `weighting="p2"`. Which quartile improves?
# 3. Why do samples from short Min-SNR-5 runs keep a fine residual grain (see "Residual noise is expected"
#    in `docs/toy_recipe.md`)?

# %% [markdown]
# <details><summary>Solutions</summary>
#
# 1. `int((loss_weight("min_snr", t_all, diffusion) - 0.5).abs().argmin())` = 92: there w = 5/SNR, so
#    0.5 means SNR = 10 (SNR_92 ≈ 10.08, w_92 ≈ 0.496). For soft-min-SNR, w = 5/(SNR + 5) = 0.5 where
#    SNR = k = 5, which the schedule crosses between t = 129 (w ≈ 0.497) and 130 (w ≈ 0.501); the same
#    argmin with `"soft_min_snr"` gives 130.
# 2. Add `"p2"` to the loop. Its weight 1/(1 + SNR) is below Min-SNR-5's at every t: 5× below it at the
#    nearly-clean end, and 0.5 instead of 1 where SNR = 1 (t = 258, lesson 01). It shifts effort further to
#    the noisy steps: in the tiny profile q1–q3 come out lower than for both `none` and `min_snr`, and q0
#    higher than for both.
# 3. The last reverse steps (small t) remove the final trace of noise, and Min-SNR-5 gives them little
#    weight (w_50 ≈ 0.15, w_0 ≈ 0.0005, printed at the top). In a short run the network therefore fits
#    them least well, so a trace of noise survives the last steps. In the tiny profile the comparison above
#    shows the trade: the `min_snr` model has the higher unweighted MSE in q0 and the lower in q1–q3.
#
# </details>
