# %% [markdown]
# # 01 · Diffusion basics
# *Add noise step by step, learn to predict it, and take one step back.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mdt-teach/mdt-teach/blob/main/notebooks/01_diffusion_basics.ipynb)

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
# MDT does not change diffusion itself: it trains with the same objective as DiT (and ADM before it).
# This lesson builds that objective's ingredients from scratch:
# - the **forward process** q(x_t | x_0) and the **linear β schedule** (1000 steps) that DiT and MDT use;
# - ᾱ_t and the **signal-to-noise ratio** SNR(t), the quantity MDTv2's loss weights are built from;
# - **ε-prediction**: the network's job is to guess the noise that was added;
# - one **reverse step** x_t → x_{t−1} through the Gaussian posterior.
#
# Paper: MDT §3.1 (preliminaries), which follows DDPM (Ho et al. 2020) and improved DDPM (Nichol &
# Dhariwal 2021).
#
# Read along: [DDPM](https://arxiv.org/abs/2006.11239) (arXiv 2006.11239); [improved
# DDPM](https://arxiv.org/abs/2102.09672) (arXiv 2102.09672); [MDT](https://arxiv.org/abs/2303.14389) (arXiv
# 2303.14389) §3.1;
# [`masked_diffusion/gaussian_diffusion.py`](https://github.com/sail-sg/MDT/blob/main/masked_diffusion/gaussian_diffusion.py)
# `GaussianDiffusion.q_sample, q_posterior_mean_variance`.

# %%
# Our data: a batch of smileys in [-1, 1].
import matplotlib.pyplot as plt
import numpy as np
import torch

from mdt_teach.data import smileys_batch
from mdt_teach.viz.images import image_grid

x0, labels = smileys_batch(4, seed=1)
print(x0.shape, float(x0.min()), float(x0.max()))

# %% [markdown]
# ## The linear schedule
# DiT and MDT add noise with variances β_t that grow linearly from 10⁻⁴ to 0.02 over T = 1000 steps.
# Keeping α_t = 1 − β_t, the product ᾱ_t = ∏_{s≤t} α_s says how much of the image survives at step t:
#
# $$q(x_t \mid x_0) = \mathcal N\!\left(\sqrt{\bar\alpha_t}\,x_0,\;(1-\bar\alpha_t)\,I\right)
# \quad\Longrightarrow\quad x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,
# \;\; \varepsilon\sim\mathcal N(0, I)$$

# %%
# Build the schedule in float64, as the official code does.
T = 1000
betas = np.linspace(1e-4, 0.02, T, dtype=np.float64)
alpha_bar = np.cumprod(1.0 - betas)
print(f"ᾱ_0 = {alpha_bar[0]:.6f}   ᾱ_500 = {alpha_bar[500]:.4f}   ᾱ_999 = {alpha_bar[999]:.2e}")

# %%
# Jump straight to any t: one line, no loop over steps.
def q_sample(x0, t, eps):
    a = torch.as_tensor(alpha_bar[t], dtype=x0.dtype).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


t = torch.tensor([0, 100, 400, 999])
eps = torch.randn_like(x0)
x_t = q_sample(x0, t, eps)
plt.figure(figsize=(6, 1.8))
plt.imshow(image_grid(x_t, nrow=4))
plt.axis("off")
plt.title("t = 0, 100, 400, 999")
plt.show()

# %% [markdown]
# ## Signal-to-noise ratio
# The image part has variance ᾱ_t and the noise part 1 − ᾱ_t, so
#
# $$\mathrm{SNR}(t) = \frac{\bar\alpha_t}{1-\bar\alpha_t}.$$
#
# SNR = 1 means as much signal as noise, i.e. ᾱ_t = 0.5. Where does the schedule cross it?

# %%
snr = alpha_bar / (1 - alpha_bar)
t_half = int(np.argmin(np.abs(snr - 1)))
assert snr[t_half - 1] > 1 > snr[t_half + 1]  # SNR falls monotonically through 1
n_noisy = int((snr < 1).sum())  # steps with more noise than signal
print(f"SNR(0) = {snr[0]:.0f}, SNR(999) = {snr[999]:.1e}, SNR crosses 1 at t ≈ {t_half}")
print(f"SNR < 1 on {n_noisy} of {T} steps ({n_noisy / T:.0%})")

fig, axes = plt.subplots(1, 2, figsize=(9, 2.8))
axes[0].plot(alpha_bar)
axes[0].set(title="ᾱ_t", xlabel="t")
axes[1].semilogy(snr)
axes[1].axhline(1, color="grey", ls="--", lw=0.8)
axes[1].axvline(t_half, color="tab:red", lw=0.8)
axes[1].set(title=f"SNR(t); red: t = {t_half}", xlabel="t")
for ax in axes:
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# The cell above prints the facts: SNR falls from about 10⁴ at t = 0 to about 4·10⁻⁵ at t = 999, and it
# crosses 1 at t ≈ 258, only about a quarter of the way through. The linear schedule spends the other
# three quarters (the printed 741 of 1000 steps) at SNR < 1, where noise outweighs the image.
# Lesson 07 builds MDTv2's **Min-SNR-5** loss weights from exactly this curve.

# %% [markdown]
# ## Check against the library
# `mdt_teach.diffusion.GaussianDiffusion` holds the same schedule; everything later (training,
# sampling) uses it. The next cell asserts that what you built agrees.

# %%
from mdt_teach.diffusion import GaussianDiffusion

diffusion = GaussianDiffusion()
np.testing.assert_allclose(diffusion.betas, betas, rtol=0, atol=0)
np.testing.assert_allclose(diffusion.alphas_cumprod, alpha_bar, rtol=1e-12)
np.testing.assert_allclose(diffusion.snr, snr, rtol=1e-12)
torch.testing.assert_close(diffusion.q_sample(x0, t, eps), x_t)

# %% [markdown]
# ## ε-prediction
# The network f_θ(x_t, t, y) is trained to recover the noise: L_simple = ‖ε − f_θ(x_t, t, y)‖².
# Knowing ε gives back the image, because the forward formula can be solved for x_0:
#
# $$\hat x_0 = \frac{1}{\sqrt{\bar\alpha_t}}\,x_t - \sqrt{\frac{1}{\bar\alpha_t}-1}\;\hat\varepsilon$$

# %%
# With the true ε (a perfect network), x̂_0 is exact at every t.
def predict_x0(x_t, t, eps_hat):
    a = torch.as_tensor(alpha_bar[t], dtype=x_t.dtype).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
    return x_t / a.sqrt() - (1 / a - 1).sqrt() * eps_hat


torch.testing.assert_close(predict_x0(x_t, t, eps), x0, atol=2e-3, rtol=0)
torch.testing.assert_close(predict_x0(x_t, t, eps), diffusion.predict_x0_from_eps(x_t, t, eps), atol=1e-4, rtol=1e-4)

# %% [markdown]
# ## One reverse step
# Given x_t and a guess of x_0, the step back is a Gaussian with known mean and variance (DDPM eqs. 6–7):
#
# $$\tilde\mu_t = \frac{\beta_t\sqrt{\bar\alpha_{t-1}}}{1-\bar\alpha_t}\,\hat x_0
#   + \frac{(1-\bar\alpha_{t-1})\sqrt{\alpha_t}}{1-\bar\alpha_t}\,x_t,\qquad
#   \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t$$
#
# DiT and MDT also *learn* the variance: the network outputs a second set of channels v and the
# variance is interpolated between β̃_t and β_t (lesson 09 samples with it).

# %%
alpha_bar_prev = np.append(1.0, alpha_bar[:-1])


def posterior(x0_hat, x_t, t):
    c1 = betas[t] * np.sqrt(alpha_bar_prev[t]) / (1 - alpha_bar[t])
    c2 = (1 - alpha_bar_prev[t]) * np.sqrt(1 - betas[t]) / (1 - alpha_bar[t])
    var = betas[t] * (1 - alpha_bar_prev[t]) / (1 - alpha_bar[t])
    as4d = lambda a: torch.as_tensor(a, dtype=x_t.dtype).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
    return as4d(c1) * x0_hat + as4d(c2) * x_t, as4d(var)


t_step = torch.tensor([400, 400, 400, 400])
x_400 = q_sample(x0, t_step, eps)
mean, var = posterior(predict_x0(x_400, t_step, eps), x_400, t_step)
x_399 = mean + var.sqrt() * torch.randn_like(x0)
lib_mean, lib_var, _ = diffusion.q_posterior_mean_variance(x0, x_400, t_step)
torch.testing.assert_close(mean, lib_mean, atol=1e-4, rtol=0)
torch.testing.assert_close(var.expand_as(lib_var), lib_var)

# %%
# NBVAL_CHECK_OUTPUT
print("T =", diffusion.num_timesteps, "| betas", betas[0], "→", betas[-1])
print("SNR crosses 1 at t =", t_half, "| steps with SNR < 1:", n_noisy)
print("x_t shape", tuple(x_399.shape))

# %% [markdown]
# ## Explore: slide t
# Move the slider: the smileys dissolve into noise, ᾱ_t falls from 1 to 0, and the SNR drops through
# eight orders of magnitude. Notice how long the eyes stay visible, and how suddenly they go.

# %%
from mdt_teach.viz.diffusion import forward_process_widget

forward_process_widget(x0, diffusion)

# %% [markdown]
# > **What the official code actually does.** The official code (ADM → DiT → MDT) builds the schedule
# > in float64 numpy and computes every coefficient from it. It feeds the network the *integer* step
# > t ∈ {0..999}, even when sampling with 250 steps (lesson 09). The variance is learned ("learned
# > range"), and the loss is `mse + vb`: the ε-MSE plus a variational term that trains only the
# > variance channels.
#
# ## Summary
# - x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε: any noise level in one step; linear β from 1e-4 to 0.02 over 1000 steps.
# - SNR(t) = ᾱ_t / (1−ᾱ_t) falls from ~10⁴ to ~4·10⁻⁵; it crosses 1 (ᾱ_t = 0.5) at t ≈ 258, a quarter
#   of the way in, so the schedule spends about three quarters of its steps at SNR < 1.
# - The network predicts ε; x̂_0 and the posterior mean follow in closed form, and one reverse step is
#   a Gaussian sample around that mean.
#
# ## Exercises
# 1. At which t has ᾱ_t fallen to 0.5? To 0.01?
# 2. Take 5 reverse steps from t = 400 with the *true* ε at each step. How close do you get to x_0?
# 3. Replace the linear schedule by a cosine one (ᾱ_t = cos²((t/T + s)/(1 + s)·π/2), s = 0.008) and
#    compare the SNR curves.

# %% [markdown]
# <details><summary>Solutions</summary>
#
# 1. ᾱ_t = 0.5 is exactly SNR = 1, so it is the `t_half` printed above: `int(np.argmin(abs(alpha_bar - 0.5)))`
#    = 258. For 0.01, `int(np.argmin(abs(alpha_bar - 0.01)))` = 673 (ᾱ_673 ≈ 0.0100). The ᾱ_t plot in
#    "Signal-to-noise ratio" shows both roughly; the argmin gives them exactly.
# 2. `posterior` returns `(mean, var)`; recompute the ε that maps x_0 to the current x at every step:
#    ```python
#    x = q_sample(x0, torch.full((4,), 400), eps)
#    for s in range(400, 395, -1):  # 5 steps: t = 400 … 396, ending at x_395
#        ts = torch.full((4,), s)
#        eps_s = (x - np.sqrt(alpha_bar[s]) * x0) / np.sqrt(1 - alpha_bar[s])
#        mean, var = posterior(predict_x0(x, ts, eps_s), x, ts)
#        x = mean + var.sqrt() * torch.randn_like(x)
#    print(float((x - x0).pow(2).mean().sqrt()))  # RMS distance to x_0
#    ```
#    Hardly closer: the RMS distance goes from 0.99 (at t = 400) to 0.98 (0.96 if you keep only the mean).
#    x̂_0 is exact at every step, but one reverse step moves x only one notch down the schedule, to a
#    sample at t − 1, which at t ≈ 400 is still mostly noise. Reaching x_0 takes all 401 steps: with
#    `range(400, -1, -1)` the distance falls to ~10⁻⁶, because the last step (t = 0, ᾱ_{t−1} = 1) has zero
#    variance and its mean is x̂_0 itself.
# 3. `ab = np.cos(((np.arange(T)/T + 0.008)/1.008) * np.pi/2)**2`; its SNR falls more slowly at small t
#    and spends fewer steps near pure noise.
#
# </details>
