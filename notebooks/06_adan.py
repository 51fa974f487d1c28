# %% [markdown]
# # 06 · Adan
# *The optimizer MDTv2 trains with: Adam plus a look at how the gradient is changing.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mdt-teach/mdt-teach/blob/main/notebooks/06_adan.ipynb)

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
# MDT v1 trains with AdamW, like DiT. MDTv2 switches to **Adan** (Xie et al. 2022, *Adaptive Nesterov
# Momentum*), with betas (0.98, 0.92, 0.99), lr 5e-4 for S/2 and 3e-4 for XL/2, gradient clipping at 1.0
# and no weight decay. Adan is part of the ">10× faster" recipe. In this lesson you:
# - go from SGD with momentum to Adam to Adan's **gradient-difference** term;
# - build one Adan step from scratch and check it against `mdt_teach.optim.Adan` and a published Adan;
# - watch optimizers race on 2-D test functions;
# - count the memory that Adan's four buffers cost.

# %% [markdown]
# ## From SGD to Adam
# SGD with momentum keeps one running average of the gradient, m ← β1·m + (1−β1)·g, and steps along it.
# Adam adds a second average, n ← β3·n + (1−β3)·g², and divides by √n, so every coordinate moves at a
# similar speed. Both averages start at zero, so they are **bias-corrected**: m̂ = m/(1−β1^k).
#
# ## Adan: look at how the gradient changes
# Nesterov momentum evaluates the gradient a little *ahead* of the current point. Adan gets the same
# effect without a second gradient evaluation. It uses the **gradient difference** d_k = g_k − g_{k−1},
# which estimates where the gradient is going:
#
# $$\begin{aligned}
# m_k &= \beta_1 m_{k-1} + (1-\beta_1)\,g_k &&\text{(gradient)}\\
# v_k &= \beta_2 v_{k-1} + (1-\beta_2)\,d_k &&\text{(gradient difference)}\\
# n_k &= \beta_3 n_{k-1} + (1-\beta_3)\,(g_k + \beta_2 d_k)^2 &&\text{(Nesterov-corrected square)}\\
# \theta_{k} &= \theta_{k-1} - \eta\,\frac{\hat m_k + \beta_2\,\hat v_k}{\sqrt{\hat n_k} + \epsilon}
# \end{aligned}$$
#
# with hats meaning bias-corrected: m̂ = m/(1−β1^k), v̂ = v/(1−β2^k), n̂ = n/(1−β3^k).

# %%
# One Adan step for one tensor, written out plainly (no in-place tricks).
import torch


def adan_step(theta, g, state, k, lr, betas=(0.98, 0.92, 0.99), eps=1e-8):
    b1, b2, b3 = betas
    g_prev = state.get("g_prev", g)               # first step: no difference yet, d = 0
    d = g - g_prev
    m = b1 * state.get("m", torch.zeros_like(g)) + (1 - b1) * g
    v = b2 * state.get("v", torch.zeros_like(g)) + (1 - b2) * d
    n = b3 * state.get("n", torch.zeros_like(g)) + (1 - b3) * (g + b2 * d) ** 2
    m_hat, v_hat, n_hat = m / (1 - b1 ** k), v / (1 - b2 ** k), n / (1 - b3 ** k)
    theta = theta - lr * (m_hat + b2 * v_hat) / (n_hat.sqrt() + eps)
    state.update(m=m, v=v, n=n, g_prev=g)
    return theta


# %% [markdown]
# On the first step m̂ = g, v̂ = 0 and n̂ = g², so the step is θ − η·g/|g|: a **sign step** of size η in
# every coordinate. That is the first sanity check.

# %%
theta0 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
state = {}
theta1 = adan_step(theta0, torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64), state, k=1, lr=0.1)
print(theta1)
torch.testing.assert_close(theta1, theta0 - 0.1 * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))

# %% [markdown]
# ## Check against the library and a published Adan
# Train a small MLP for 20 steps three ways: with your `adan_step`, with `mdt_teach.optim.Adan` (what
# training uses), and with `pytorch_optimizer.Adan` (a published implementation that matches the
# official code). All three must agree.

# %%
from mdt_teach.optim import Adan


def make_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
    for p in net.parameters():
        p.data = torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5
    x = torch.randn(32, 4, generator=g, dtype=torch.float64)
    y = torch.sin(x.sum(1, keepdim=True))
    return net, x, y


def train(step_fn, steps=20):
    net, x, y = make_problem()
    for k in range(1, steps + 1):
        net.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        step_fn(net, k)
    return torch.cat([p.detach().flatten() for p in net.parameters()])


states = {}


def from_scratch(net, k):
    for i, p in enumerate(net.parameters()):
        p.data = adan_step(p.data, p.grad, states.setdefault(i, {}), k, lr=0.01)


def with_optimizer(cls):
    holder = {}

    def step(net, k):
        holder.setdefault("opt", cls(net.parameters(), lr=0.01))
        holder["opt"].step()
    return step


ours = train(from_scratch)
library = train(with_optimizer(Adan))
torch.testing.assert_close(ours, library, rtol=0, atol=1e-12)
try:
    from pytorch_optimizer import Adan as PublishedAdan
except ImportError:  # Colab: `pip install pytorch-optimizer` to run this check
    PublishedAdan = None
if PublishedAdan is not None:
    torch.testing.assert_close(library, train(with_optimizer(PublishedAdan)), rtol=0, atol=1e-12)

# %% [markdown]
# ## Explore: optimizers on 2-D landscapes
# Rosenbrock's banana-shaped valley and a noisy valley are classic tests. Move the learning rate and the
# betas: Adan's difference term lets it turn faster along a curving valley, and the sign-like first step
# shows up as a 45° move.

# %%
from mdt_teach.viz.optim import trajectory_widget

trajectory_widget()

# %% [markdown]
# ## What it costs: four buffers
# Adam keeps two buffers per parameter (m, n). Adan keeps **four**: m, v, n and the previous gradient.
# For MDTv2-XL/2 (742 M parameters in fp32) that is about 11.9 GB of optimizer state per GPU against
# AdamW's 5.9 GB. This is why the official XL runs shard the state across GPUs with ZeRO (lesson 10).

# %%
from mdt_teach.optim import state_bytes

net = torch.nn.Linear(256, 256)
opts = {"AdamW": torch.optim.AdamW(net.parameters()), "Adan": Adan(net.parameters())}
for opt in opts.values():
    net(torch.randn(4, 256)).sum().backward()
    opt.step()
param_bytes = sum(p.numel() * p.element_size() for p in net.parameters())
ratios = {name: state_bytes(opt) / param_bytes for name, opt in opts.items()}
assert round(ratios["Adan"]) == 4 and round(ratios["AdamW"]) == 2

# %%
# NBVAL_CHECK_OUTPUT
print({name: round(r) for name, r in ratios.items()}, "buffers per parameter")
print("first step is a sign step:", bool(torch.allclose(theta1, torch.tensor([0.4, -0.9, 1.9], dtype=torch.float64))))

# %% [markdown]
# > **What the official code actually does.**
# > - The code's betas are **1 − the paper's** betas: (0.98, 0.92, 0.99) in code is (0.02, 0.08, 0.01)
# >   in the paper.
# > - eps sits *outside* the square root (the paper puts it inside).
# > - The code bias-corrects all three moments; the paper's Algorithm 1 instead initialises m₀ = g₀.
# > - Weight decay is *proximal* by default: θ ← θ / (1 + η·λ) after the step. `no_prox=True` gives the
# >   AdamW-style form instead.
# > - Gradient clipping happens *inside* `step()`. Under ZeRO, MDTv2's official runs clip each GPU's
# >   shard by that shard's own norm; `mdt_teach` clips on the true global norm.
#
# ## Summary
# - Adan = Adam + an EMA of the gradient *difference*, which gives Nesterov-style look-ahead; n tracks
#   the square of the corrected gradient g + β2·d.
# - Bias correction makes the first step a sign step of size η.
# - It costs two more parameter-sized buffers than AdamW (4 vs 2), which ZeRO sharding hides at scale.
#
# ## Exercises
# 1. Set β2 = 0 in `adan_step`. Which optimizer do you get?
# 2. Add proximal weight decay (divide θ by 1 + η·λ after the step) and check it against
#    `Adan(..., weight_decay=0.05)`.
# 3. In the widget, find a learning rate where Adam diverges on Rosenbrock and Adan does not (or show
#    that none exists).

# %% [markdown]
# <details><summary>Solutions</summary>
#
# 1. With β2 = 0, v = d and the update uses m̂ only, with n tracking g²: Adam (with β1, β3 as its betas
#    and eps outside the root).
# 2. `theta = (theta - lr * (m_hat + b2 * v_hat) / (n_hat.sqrt() + eps)) / (1 + lr * wd)`; train with
#    `Adan(net.parameters(), lr=0.01, weight_decay=0.05)` and `assert_close` as above.
# 3. Try lr around 0.05–0.1: look at where each path ends and how far it overshoots.
#
# </details>
