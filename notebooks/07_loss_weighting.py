# %% [markdown]
# # 07 · Loss weighting and the rest of a training step
# *Not every timestep deserves the same weight: Min-SNR-5, MDTv2's timestep-adapted loss. Then the rest of
# one training step, built line by line: the learned variance and its VLB term, clipping, the EMA.*
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
# - look at MDTv2's other training change: the wider mask-ratio range;
# - build the rest of a training step from scratch, each piece checked against the library: the learned
#   variance, the VLB term with its stop-gradient (together with the MSE, the *hybrid loss*), gradient
#   clipping and the EMA of the weights with its warm-up;
# - assemble one whole MDTv2 training step from those pieces and match `mdt_teach.minimal_train` bit for bit.
#
# Read along: [Min-SNR](https://arxiv.org/abs/2303.09556) (arXiv 2303.09556); [improved
# DDPM](https://arxiv.org/abs/2102.09672) (arXiv 2102.09672, §3.1: the learned variance and the hybrid loss);
# [DDPM](https://arxiv.org/abs/2006.11239) (arXiv 2006.11239, §3.3: the decoder term);
# [`masked_diffusion/gaussian_diffusion.py`](https://github.com/sail-sg/MDT/blob/main/masked_diffusion/gaussian_diffusion.py)
# `GaussianDiffusion.training_losses` and `_vb_terms_bpd`; `masked_diffusion/train_util.py: TrainLoop` (clipping,
# EMA).

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
# same data, a few dozen steps. We call `trainer.train_step()`, one optimizer step (the second half of this
# lesson builds every line of it), rather than `fit()`, so no run folder, checkpoint or sample grid is
# written. Then measure both on a fixed held-out batch with the *unweighted* MSE, per timestep quartile.
# Min-SNR-5 spends its effort on the noisy quartiles. Expect a small gap at this length; treat it as a
# demonstration, not a result.

# %%
from mdt_teach.data import smileys_batch
from mdt_teach.diffusion import quartile_means, single_pass_loss
from mdt_teach.recipe import TrainConfig
from mdt_teach.train import Trainer

small = dict(depth=2, hidden_size=64, num_heads=4)
steps, batch_size = (40, 16) if run.profile == "tiny" else (400, 32)
trained = {}
for weighting in ["none", "min_snr"]:
    train_cfg = TrainConfig(model="MDTv2-T/4", steps=steps, batch_size=batch_size, seed=0, weighting=weighting,
                            model_args=small)
    trainer = Trainer(train_cfg, run=run)  # run=run: the profile set up above, so no second banner
    for _ in range(steps):
        trainer.train_step()  # only fit() writes a run folder (logs, checkpoints, sample grids)
    trained[weighting] = trainer.model.eval().cpu()

x0, y = smileys_batch(256, seed=99)
t_eval = torch.arange(256) * 1000 // 256  # evenly over 0..999
noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    per_quartile = {name: quartile_means(single_pass_loss(m, x0, t_eval, y, diffusion, torch.ones(256), noise)["mse"],
                                         t_eval, 1000) for name, m in trained.items()}
for name, q in per_quartile.items():
    print(f"{name:8s} unweighted MSE by quartile:", " ".join(f"{v:.4f}" for v in q.tolist()))
assert (per_quartile["min_snr"][1:] < per_quartile["none"][1:]).all()  # better on the noisy quartiles q1–q3
assert per_quartile["min_snr"][0] > per_quartile["none"][0]  # and worse on the nearly-clean one

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
assert grad_norm["min_snr"][0] < 2 * max(grad_norm["min_snr"][1:])  # to under twice the others

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

# %% [markdown]
# > **What the official code actually does.** In MDTv2 the Min-SNR weighting is hard-coded in
# > `training_losses`, with no flag, and k = 5. It multiplies only the ε-MSE: the variational term `vb`,
# > which trains the variance channels, is never weighted. MDT v1 and DiT use no weighting. The same
# > weight applies to both passes (unmasked and masked), and they are summed 1:1.
#
# ## The rest of a training step
# The weighted ε-MSE is only part of what one optimizer step computes. Every DiT, MDT and MDTv2 step also
# trains a **learned variance** through a **VLB term** (together with the MSE: the *hybrid loss* of improved
# DDPM), **clips** the gradient, takes the optimizer step and updates an **EMA** of the weights, which is
# the model every sample is drawn from. The next cells build each piece from its equation, check it against
# the library, and finally assemble one whole step.
#
# ### The learned variance (IDDPM §3.1, eq. 15)
# The network outputs 2C channels: ε̂ and a second set v. The reverse step p(x_{t−1} | x_t) is a Gaussian
# whose variance has two natural choices, β_t and the posterior variance β̃_t of lesson 01 (the two extremes
# that DDPM §3.2 discusses). v interpolates between them in log space, per value:
#
# $$\log \Sigma_\theta(x_t, t) = \tfrac{v+1}{2}\,\log\beta_t + \left(1 - \tfrac{v+1}{2}\right)\log\tilde\beta_t .$$
#
# v = 1 gives β_t, v = −1 gives β̃_t. β̃_0 = 0 has no logarithm, so the log is *clipped*: t = 0 uses β̃_1.
# IDDPM puts no constraint on v; outside [−1, 1] the variance simply leaves the interval.

# %%
import copy
import math

# The schedule's pieces in float64 from β (lesson 01), and one helper that picks them per sample.
betas = torch.as_tensor(diffusion.betas)  # (1000,) float64
alphas = 1 - betas
alpha_bar = torch.cumprod(alphas, dim=0)  # ᾱ_t
alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])  # ᾱ_{t−1}, with ᾱ_{−1} = 1
beta_tilde = betas * (1 - alpha_bar_prev) / (1 - alpha_bar)  # β̃_t, 0 at t = 0
log_beta_tilde = torch.log(torch.cat([beta_tilde[1:2], beta_tilde[1:]]))  # clipped: β̃_1 stands in at t = 0


def at(coef, t):
    """coef[t] for each sample as float32, shaped to broadcast over images."""
    return coef[t].float().view(-1, 1, 1, 1)  # (B, 1, 1, 1)


def learned_log_variance(v, t):
    """log Σ = frac·log β_t + (1 − frac)·log β̃_t with frac = (v + 1)/2 (IDDPM eq. 15)."""
    frac = (v + 1) / 2
    return frac * at(torch.log(betas), t) + (1 - frac) * at(log_beta_tilde, t)


net = trained["min_snr"]  # the tiny model trained above with Min-SNR-5 (eval mode, CPU)
x_v, y_v = smileys_batch(8, seed=3)
t_v = torch.tensor([0, 0, 1, 10, 100, 300, 600, 999])  # t = 0 included, for the decoder term below
noise_v = torch.randn(x_v.shape, generator=torch.Generator().manual_seed(2))
x_t_v = at(alpha_bar.sqrt(), t_v) * x_v + at((1 - alpha_bar).sqrt(), t_v) * noise_v  # q_sample (lesson 01)
out_v = net(x_t_v, t_v, y_v)  # (8, 6, 32, 32): 2C channels
eps_v, v_v = out_v.split(3, dim=1)  # (8, 3, 32, 32) each
torch.testing.assert_close(learned_log_variance(v_v, t_v), diffusion.model_log_variance(v_v, t_v, x_v.shape))
print(f"output {tuple(out_v.shape)} → ε̂ {tuple(eps_v.shape)} and v {tuple(v_v.shape)}; "
      f"v on this batch in [{float(v_v.detach().min()):.2f}, {float(v_v.detach().max()):.2f}]")
print("β_t / β̃_t, the room v has:", ", ".join(f"t = {t}: {float(betas[t] / beta_tilde[t]):.3f}"
                                              for t in [1, 10, 100, 999]))

# %% [markdown]
# The two bounds differ by about a factor of 2 at t = 1 and almost coincide for large t (the printed ratios).
# IDDPM §3.1 plots this ratio (their Fig. 1) and shows that the first few steps carry most of the
# variational bound (Fig. 2): there, a learned variance is what improves the likelihood.
#
# ### The VLB term
# The variational bound of DDPM is a sum of one term per timestep. Training draws one t per image, so the
# loss carries that one term, measured in **bits per dimension** (the mean over the C·H·W values, divided
# by ln 2):
#
# - for t > 0, L_{t−1} = KL( q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t) ), between two Gaussians. q has the
#   posterior mean μ̃_t(x_0, x_t) and variance β̃_t of lesson 01. p_θ has the same mean formula with
#   x̂_0 = √(1/ᾱ_t)·x_t − √(1/ᾱ_t − 1)·ε̂ in place of x_0, and the variance Σ_θ built above. Per value,
#
#   $$\mathrm{KL}\big(\mathcal N(\mu_1, \sigma_1^2)\,\|\,\mathcal N(\mu_2, \sigma_2^2)\big)
#     = \tfrac12\Big(-1 + \log\sigma_2^2 - \log\sigma_1^2 + \tfrac{\sigma_1^2}{\sigma_2^2}
#       + \tfrac{(\mu_1-\mu_2)^2}{\sigma_2^2}\Big);$$
#
# - for t = 0, L_0 = −log p_θ(x_0 | x_1), the **discretised Gaussian decoder** (DDPM §3.3, eq. 13). Pixels in
#   [−1, 1] take 256 levels, so each value owns a bin of half-width 1/255, and its probability is the
#   Gaussian's mass on that bin, Φ((x + 1/255 − μ)/σ) − Φ((x − 1/255 − μ)/σ); the two edge bins reach to
#   −∞ and +∞. The official code evaluates the normal CDF Φ with the tanh approximation
#   ½(1 + tanh(√(2/π)(x + 0.044715x³))) rather than erf (`masked_diffusion/diffusion_utils.py:
#   discretized_gaussian_log_likelihood`). We write it ourselves the same way, so the numbers agree.

# %%
def q_posterior(x0, x_t, t):
    """Mean and clipped log-variance of q(x_{t−1} | x_t, x_0) (DDPM eqs. 6–7, lesson 01)."""
    c1 = betas * alpha_bar_prev.sqrt() / (1 - alpha_bar)
    c2 = (1 - alpha_bar_prev) * alphas.sqrt() / (1 - alpha_bar)
    return at(c1, t) * x0 + at(c2, t) * x_t, at(log_beta_tilde, t)


def p_mean(eps_hat, x_t, t):
    """The model's mean: the posterior mean with x̂_0 = √(1/ᾱ_t)·x_t − √(1/ᾱ_t − 1)·ε̂ in place of x_0."""
    x0_hat = at((1 / alpha_bar).sqrt(), t) * x_t - at((1 / alpha_bar - 1).sqrt(), t) * eps_hat
    return q_posterior(x0_hat, x_t, t)[0]


def gaussian_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) per value, in nats."""
    return 0.5 * (-1 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def normal_cdf(x):
    """Φ(x) by the tanh approximation of the official code (not erf)."""
    return 0.5 * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def safe_log(p):
    return torch.log(p.clamp(min=1e-12))


def decoder_nll(x0, mean, logvar):
    """−log p(x_0 | x_1) per value: the Gaussian's mass on x_0's bin, edge bins open (DDPM eq. 13)."""
    inv_std = torch.exp(-0.5 * logvar)
    upper = normal_cdf(inv_std * (x0 - mean + 1 / 255))  # Φ at the bin's upper edge
    lower = normal_cdf(inv_std * (x0 - mean - 1 / 255))  # Φ at its lower edge
    return -torch.where(x0 < -0.999, safe_log(upper),
                        torch.where(x0 > 0.999, safe_log(1 - lower), safe_log(upper - lower)))


def vb_term(out, x0, x_t, t):
    """One VLB term per sample, in bits/dim: the KL for t > 0, the decoder NLL at t = 0."""
    eps_hat, v = out.split(x0.shape[1], dim=1)  # (B, C, H, W) each
    true_mean, true_logvar = q_posterior(x0, x_t, t)
    mean, logvar = p_mean(eps_hat, x_t, t), learned_log_variance(v, t)
    kl = gaussian_kl(true_mean, true_logvar, mean, logvar).mean(dim=(1, 2, 3)) / math.log(2)  # (B,)
    nll = decoder_nll(x0, mean, logvar).mean(dim=(1, 2, 3)) / math.log(2)  # (B,)
    return torch.where(t == 0, nll, kl)


vb_v = vb_term(out_v, x_v, x_t_v, t_v)
torch.testing.assert_close(vb_v, diffusion.vb_bits_per_dim(out_v, x_v, x_t_v, t_v))
print("vb in bits/dim:", ", ".join(f"t = {t}: {b:.4f}" for t, b in zip(t_v.tolist(), vb_v.tolist())))

# %% [markdown]
# ### The hybrid loss and its stop-gradient
# Per sample, one forward pass gives
#
# $$L = w_t\,\lVert \varepsilon - \hat\varepsilon \rVert^2 + L_{\text{vb}}\big(\mathrm{sg}(\hat\varepsilon), v\big),$$
#
# with the MSE a mean over the C·H·W values. The VLB term sees ε̂ through a **stop-gradient** sg(·)
# (`.detach()`): IDDPM §3.1 keeps the mean trained by the MSE alone and lets the VLB term guide only the
# variance. The VLB term is added with weight 1. IDDPM writes L_simple + λ·L_vlb with λ = 0.001, where
# L_vlb sums all T = 1000 terms; the one term drawn per image stands for that sum, so the weight is
# 0.001 × 1000 = 1.

# %%
def hybrid_loss(model, x0, t, y, weight, noise, enable_mask=False):
    """Per-sample w_t·mse + vb of one forward pass; vb sees ε̂ detached, so only v learns from it."""
    x_t = at(alpha_bar.sqrt(), t) * x0 + at((1 - alpha_bar).sqrt(), t) * noise  # (B, C, H, W)
    eps_hat, v = model(x_t, t, y, enable_mask=enable_mask).split(x0.shape[1], dim=1)  # (B, C, H, W) each
    mse = ((noise - eps_hat) ** 2).mean(dim=(1, 2, 3))  # (B,)
    vb = vb_term(torch.cat([eps_hat.detach(), v], dim=1), x0, x_t, t)  # (B,)
    return weight * mse + vb


w_v = loss_weight("min_snr", t_v, diffusion)
torch.testing.assert_close(hybrid_loss(net, x_v, t_v, y_v, w_v, noise_v),
                           single_pass_loss(net, x_v, t_v, y_v, diffusion, w_v, noise_v)["loss"])

# Where does each part's gradient land? Differentiate with respect to the model's raw output.
mse_v = ((noise_v - eps_v) ** 2).mean(dim=(1, 2, 3))
parts = {"mse": mse_v,
         "vb": vb_term(torch.cat([eps_v.detach(), v_v], dim=1), x_v, x_t_v, t_v),
         "vb, no detach": vb_term(out_v, x_v, x_t_v, t_v)}
grad_out = {name: torch.autograd.grad(loss.sum(), out_v, retain_graph=True)[0] for name, loss in parts.items()}
for name, g in grad_out.items():
    print(f"{name:14s} gradient norm on the ε̂ channels {float(g[:, :3].norm()):.2e}, "
          f"on the v channels {float(g[:, 3:].norm()):.2e}")
assert (grad_out["vb"][:, :3] == 0).all() and (grad_out["vb"][:, 3:] != 0).any()  # vb trains v only
assert (grad_out["mse"][:, 3:] == 0).all()  # the MSE trains ε̂ only
assert (grad_out["vb, no detach"][:, :3] != 0).any()  # without sg(·), vb would pull on ε̂ as well

# %% [markdown]
# The ε̂ half of the output gets exactly zero gradient from vb, and the v half none from the MSE. Both halves
# come out of the same network, so vb's gradient still reaches the shared transformer weights, through v.
#
# ### Gradient clipping
# After the backward pass, all gradients are scaled by one common factor, computed from their **global**
# norm, the norm of every parameter's gradient stacked into one vector:
#
# $$\lVert g \rVert = \sqrt{\textstyle\sum_p \lVert g_p \rVert^2}, \qquad
#   c = \min\!\Big(1, \frac{\text{max\_norm}}{\lVert g \rVert + \epsilon}\Big), \qquad g_p \leftarrow c\, g_p .$$
#
# MDTv2 clips at max_norm = 1, inside its Adan optimizer, with ε = Adan's eps, 10⁻⁸ (lesson 06). One factor for all
# parameters keeps the update's direction and caps only its length. This batch's norm may well be below 1,
# so we clip at half of it to watch the clip act.

# %%
from mdt_teach.optim import clip_grads_


def clip_grads(grads, max_norm, eps=1e-8):
    """Scale every gradient in place by c = min(1, max_norm / (‖g‖ + eps)), ‖g‖ the global norm; returns c."""
    total = torch.stack([g.norm() for g in grads]).norm()  # √(Σ_p ‖g_p‖²)
    scale = (max_norm / (total + eps)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale)
    return scale


params_v = [p for p in net.parameters() if p.requires_grad]
net.zero_grad(set_to_none=True)
hybrid_loss(net, x_v, t_v, y_v, w_v, noise_v).mean().backward()
grads_v = [p.grad for p in params_v if p.grad is not None]
norm = float(torch.stack([g.norm() for g in grads_v]).norm())
max_norm = norm / 2  # so that the clip acts here
mine, lib = [g.clone() for g in grads_v], [g.clone() for g in grads_v]
c_mine, c_lib = clip_grads(mine, max_norm), clip_grads_(lib, max_norm, eps=1e-8)
torch.nn.utils.clip_grad_norm_(params_v, max_norm)  # PyTorch's own, in place on each .grad (its ε is 10⁻⁶)
torch.testing.assert_close(c_mine, c_lib)
for a, b, c in zip(mine, lib, grads_v):
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
assert abs(float(torch.stack([g.norm() for g in mine]).norm()) - max_norm) < 1e-4 * max_norm
print(f"‖g‖ = {norm:.4f} on this batch; clipped at {max_norm:.4f}: c = {float(c_mine):.4f}, new norm = max_norm")
net.zero_grad(set_to_none=True)

# %% [markdown]
# `torch.nn.utils.clip_grad_norm_` does the same with ε = 10⁻⁶, which is why it agrees to float precision.
#
# ### The EMA of the weights, with a warm-up
# Samples and evaluations use not the trained weights θ but an exponential moving average of them, updated
# after every optimizer step k (counted from 0):
#
# $$\theta_{\text{ema}} \leftarrow d_k\,\theta_{\text{ema}} + (1 - d_k)\,\theta, \qquad
#   d_k = \min\!\Big(d, \frac{1 + k}{10 + k}\Big).$$
#
# The official runs use d = 0.9999 from step 0, with no warm-up (`masked_diffusion/train_util.py:
# TrainLoop._update_ema`). Our tiny recipe uses d = 0.999 *with* the warm-up d_k, a toy deviation
# (`docs/toy_recipe.md`). Why it matters on a short run: θ_ema starts as a copy of the initial weights θ_0,
# and after n updates it still holds the share Π_{k<n} d_k of them. MDTv2 starts as an exact zero function
# (adaLN-Zero), so an average that is still mostly θ_0 draws mostly nothing.

# %%
from mdt_teach.ema import EMA


def ema_decay(step, decay=0.999, warmup=True):
    """d_k = min(d, (1 + k)/(10 + k)) after optimizer step k (0-based); d alone without warm-up."""
    return min(decay, (1 + step) / (10 + step)) if warmup else decay


@torch.no_grad()
def ema_update(ema_model, model, step, decay=0.999, warmup=True):
    """θ_ema ← d_k·θ_ema + (1 − d_k)·θ, parameter by parameter."""
    d = ema_decay(step, decay, warmup)
    for p_ema, p in zip(ema_model.parameters(), model.parameters()):
        p_ema.mul_(d).add_(p, alpha=1 - d)


# Check: move a copy of the model by hand (a stand-in for optimizer steps), average it both ways.
student = copy.deepcopy(net)
mine_ema, lib_ema = copy.deepcopy(student).requires_grad_(False), EMA(student, decay=0.999, warmup=True)
gen = torch.Generator().manual_seed(4)
with torch.no_grad():
    for k in range(5):
        for p in student.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))
        ema_update(mine_ema, student, k)
        lib_ema.update(student, k)
for a, b in zip(mine_ema.state_dict().values(), lib_ema.model.state_dict().values()):
    torch.testing.assert_close(a, b)


def share_of_start(n, decay, warmup):
    """The share of the initial weights θ_0 an EMA still holds after n updates: Π_{k<n} d_k."""
    return math.prod(ema_decay(k, decay, warmup) for k in range(n))


ema_kinds = {"0.9999, no warm-up (official)": (0.9999, False), "0.999, no warm-up": (0.999, False),
             "0.999 with warm-up (tiny)": (0.999, True)}
lengths = [40, 1000, 10_000]
print("share of θ_0 left after n steps:", " ".join(f"{f'n = {n}':>10s}" for n in lengths))
for name, (d, warm) in ema_kinds.items():
    print(f"  {name:30s}", " ".join(f"{share_of_start(n, d, warm):10.2e}" for n in lengths))
full_decay_at = next(k for k in range(100_000) if ema_decay(k) == 0.999)
print(f"the warm-up's d_k reaches d = 0.999 at step k = {full_decay_at}")

# %% [markdown]
# Read the table along a row. Without warm-up, a 0.9999 average still holds most of the zero-initialised
# start after the 1,000 steps of the tiny main job (docs/toy_recipe.md), and even 0.999 holds a large part
# of it. With the warm-up, the first update already keeps only 1/10 of θ_0, and the share falls
# like a power of n after that: the average follows the model from the start, and it keeps averaging over a
# growing window until d_k reaches the full d, thousands of steps in (the last line printed).
#
# ### One training step, assembled from this lesson's pieces
# Everything is now built: Min-SNR-5 (the top of this lesson), the hybrid loss of one pass, the two MDT
# passes that share x_0 and t but draw their own noise (lesson 04; `enable_mask=True` hides 30–50% of the
# tokens, the range above), clipping at 1, an optimizer step (lesson 06 builds Adan; the tiny recipe uses
# AdamW with lr 4·10⁻³ and betas (0.9, 0.99), `docs/toy_recipe.md`), and the EMA.
# `mdt_teach.minimal_train` writes the same step in one file. Below, our version follows its random draws in
# the same order: the data of step k are faces k·B … k·B + B − 1, and `seed_shard(seed, k, 0)` reseeds torch
# before t, the two noises, the label dropout and the mask are drawn. The check asks for the same weights and
# EMA weights **bit for bit**.

# %%
from mdt_teach import minimal_train
from mdt_teach.config import seed_everything
from mdt_teach.data_order import seed_shard
from mdt_teach.models import build_model


def train_from_lesson(steps, seed, batch_size):
    """`minimal_train.train` rebuilt from this lesson's pieces; returns (model, ema, clip factors)."""
    seed_everything(seed)  # the initial weights
    model = build_model("MDTv2-T/4", in_channels=3, num_classes=4, input_size=32)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=4e-3, betas=(0.9, 0.99), weight_decay=0.0)
    clips = []
    for step in range(steps):
        x0, y = smileys_batch(batch_size, seed=seed, start=step * batch_size)  # (B, 3, 32, 32), (B,)
        seed_shard(seed, step, 0)  # every draw below follows from (seed, step)
        t = torch.randint(0, 1000, (batch_size,))  # (B,): one t per image, shared by both passes
        weight = min_snr(snr[t]).float()  # (B,) Min-SNR-5
        full = hybrid_loss(model, x0, t, y, weight, torch.randn(x0.shape))  # every token seen
        masked = hybrid_loss(model, x0, t, y, weight, torch.randn(x0.shape), enable_mask=True)  # tokens hidden
        (full.mean() + masked.mean()).backward()  # one backward for both passes
        clips.append(float(clip_grads([p.grad for p in params if p.grad is not None], 1.0)))
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema_update(ema, model, step)  # d = 0.999 with warm-up
    return model, ema, clips


STEPS, SEED, BATCH = 3, 1, 4  # as tests/test_minimal_train.py
seed_shard(SEED, 0, 0)
assert (snr[torch.randint(0, 1000, (BATCH,))] > 5).any()  # step 0 draws a t where Min-SNR-5 changes the loss
lib_model, lib_ema = minimal_train.train(steps=STEPS, seed=SEED, batch_size=BATCH)  # sets the tiny threads too
our_model, our_ema, clips = train_from_lesson(STEPS, SEED, BATCH)
for ours, theirs in [(our_model, lib_model), (our_ema, lib_ema)]:
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"{name} differs")  # bit for bit
assert any(not torch.equal(a, b) for a, b in zip(our_model.state_dict().values(), our_ema.state_dict().values()))
print(f"{STEPS} steps: the same weights and EMA weights as minimal_train, bit for bit; "
      "clip factor per step:", ", ".join(f"{c:.3f}" for c in clips))

# %% [markdown]
# That is every line of one MDTv2 training step, each built in these lessons. The same step, in one file
# that you can read top to bottom and run:
#
# ```
# python -m mdt_teach.minimal_train --steps 1000 --out runs/minimal   # writes runs/minimal/samples.png
# ```
#
# `tests/test_minimal_train.py` holds that file to the library's `Trainer` bit for bit, and the `Trainer`
# adds what a real run needs around the same step: DDP and gradient accumulation, resume, mixed precision,
# the run folder with its logs, checkpoints and sample grids.

# %%
# NBVAL_CHECK_OUTPUT
print("min-SNR weight is exactly 1 from t =", t_one)
print("weightings:", ", ".join(LOSS_WEIGHTINGS))
print("K range for L = 256:", min(kept_256), "to", max(kept_256))
print("model output", tuple(out_v.shape), "= ε̂", tuple(eps_v.shape), "+ v", tuple(v_v.shape))
print("vb's gradient on the ε̂ channels is zero:", bool((grad_out["vb"][:, :3] == 0).all()))
print("share of θ_0 in the EMA after 1000 steps:",
      ", ".join(f"{name} {share_of_start(1000, d, warm):.3f}" for name, (d, warm) in ema_kinds.items()))
print("lesson step == minimal_train, bit for bit, after", STEPS, "steps")

# %% [markdown]
# > **What the official code actually does.**
# > - The VLB term is `_vb_terms_bpd` in `masked_diffusion/gaussian_diffusion.py`; `training_losses` feeds it
# >   `th.cat([model_output.detach(), model_var_values], dim=1)`, the stop-gradient above, and adds it to the
# >   weighted MSE with weight 1. The normal CDF of the decoder term is the tanh approximation, not erf.
# > - MDTv2 clips inside its Adan optimizer (lesson 06), on each GPU's own gradient shard under ZeRO;
# >   `mdt_teach` clips the true global norm in the trainer, with the same rule.
# > - The EMA rate is 0.9999 from step 0, no warm-up. The warm-up and d = 0.999 are the tiny recipe's.
#
# ## Summary
# - SNR(t) = ᾱ/(1−ᾱ) crosses 5 between t = 129 and 130. Min-SNR-5 leaves every noisier step at weight 1
#   and shrinks the nearly-clean ones (w_0 ≈ 0.0005).
# - With equal weights the nearly-clean quartile dominates the ε-MSE gradient; Min-SNR-5 shrinks its
#   gradient and leaves the noisier quartiles unchanged.
# - The weight multiplies the ε-MSE only, in both MDT passes.
# - MDTv2 also widens the mask ratio to U[0.3, 0.5), drawn once per forward call for the whole batch.
# - The network outputs ε̂ and v; v interpolates the log-variance between β̃_t and β_t. The VLB term (a
#   Gaussian KL in bits/dim, the discretised decoder NLL at t = 0) trains v alone, because it sees ε̂ detached.
#   The per-sample loss is w_t·MSE + vb.
# - Clipping scales all gradients by one factor min(1, 1/(‖g‖ + ε)) of their global norm; the EMA averages
#   the weights with d_k = min(d, (1+k)/(10+k)), so a short run's average is not stuck at the zero start.
# - Those pieces, two passes and an AdamW step make one training step: the lesson's version equals
#   `mdt_teach.minimal_train` bit for bit.
#
# ## Exercises
# 1. Which t has weight 0.5 under Min-SNR-5? Under soft-min-SNR with k = 5?
# 2. Run the comparison with `weighting="p2"`. Which quartile improves?
# 3. Why do samples from short Min-SNR-5 runs keep a fine residual grain (see "Residual noise is expected"
#    in `docs/toy_recipe.md`)?
# 4. Remove `.detach()` from `hybrid_loss` and run the last check again. Does the step still match
#    `minimal_train`? Which half of the output now gets a gradient from vb?
# 5. With `share_of_start`, find the first n at which a 0.9999 EMA without warm-up holds less than half of
#    θ_0. How does that compare with the 1,000 steps of the tiny main job?
# 6. Why does clipping use one factor from the global norm, rather than clipping each parameter's gradient
#    to norm 1 on its own?

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
# 4. No: the bit-for-bit check fails. Without the stop-gradient, vb's
#    gradient reaches the ε̂ channels too (the `"vb, no detach"` line above), so the shared weights get a
#    different gradient and every later step differs. The official code detaches ε̂ to keep the mean trained
#    by the MSE alone (IDDPM §3.1).
# 5. 0.9999ⁿ < ½ first at n = 6932 (n > ln 2 / −ln 0.9999 ≈ 6931.1): almost seven times the tiny main job.
#    After those 1,000 steps such an average still holds 0.905 of θ_0, the number printed above.
# 6. One common factor shrinks the whole update and keeps its direction, so the optimizer still moves the
#    way the gradient points. Clipping each parameter on its own would change the ratios between layers,
#    and a layer with a small gradient would never be clipped while a large one always would.
#
# </details>
