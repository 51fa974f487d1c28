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
# - switch the difference term on and off with everything else held equal, and measure what it does
#   on two 2-D test functions;
# - count the memory that Adan's four buffers cost.
#
# Read along: [Adan](https://arxiv.org/abs/2208.06677) (arXiv 2208.06677) Algorithm 1;
# [Adam](https://arxiv.org/abs/1412.6980) (arXiv 1412.6980);
# [`adan.py`](https://github.com/sail-sg/Adan/blob/main/adan.py) of sail-sg/Adan.

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
# ## Explore: what does the difference term alone do?
# Adam with its defaults against Adan with its defaults changes three things at once: β1 (0.9 vs 0.98),
# the second-moment β (0.999 vs 0.99) *and* the difference term. To see the difference term alone, give
# both optimizers the same lr, β1 and β3: Adam gets betas (β1, β3), Adan gets (β1, β2, β3). With β2 = 0
# the v̂ term drops out of Adan's update and n tracks g², which is Adam's update (eps outside the root in
# both). So Adan with β2 = 0 must retrace Adam, and turning β2 on changes nothing else.
#
# The cell below runs both on Rosenbrock's banana-shaped valley and on a narrow valley with noisy
# gradients, at three learning rates and two sets of betas (Adam's defaults and Adan's), 300 steps each.
# A path's **final loss** is the mean f over its last 50 steps; in the noisy valley it is also averaged
# over three noise draws (seeds), the same draws for every optimizer.

# %%
import numpy as np

from mdt_teach.viz.optim import final_loss, trajectory

BETAS = {"Adam's (0.9, 0.999)": (0.9, 0.999), "Adan's (0.98, 0.99)": (0.98, 0.99)}   # (β1, β3)
LRS = [10 ** -1.5, 10 ** -1, 10 ** -0.5]                  # three values of the widget's lr slider
SEEDS = {"rosenbrock": [0], "noisy valley": [0, 1, 2]}    # Rosenbrock's gradients are noise-free
STEPS = 300
gap, pairs, results = 0.0, 0, {}
for landscape, seeds in SEEDS.items():
    for name, (b1, b3) in BETAS.items():
        for lr in LRS:
            finals = {"Adam": [], "Adan": []}
            for seed in seeds:
                adam = trajectory(landscape, "Adam", STEPS, lr, beta1=b1, beta3=b3, seed=seed)
                off = trajectory(landscape, "Adan", STEPS, lr, beta1=b1, beta2=0.0, beta3=b3, seed=seed)
                on = trajectory(landscape, "Adan", STEPS, lr, beta1=b1, beta2=0.92, beta3=b3, seed=seed)
                gap, pairs = max(gap, np.abs(adam - off).max()), pairs + 1
                finals["Adam"].append(final_loss(landscape, adam, STEPS))
                finals["Adan"].append(final_loss(landscape, on, STEPS))
            results[landscape, name, lr] = {k: float(np.mean(v)) for k, v in finals.items()}
print(f"largest |θ_Adam − θ_Adan(β2 = 0)| over all {pairs} path pairs:", gap)
assert gap <= 1e-12

# %%
# NBVAL_CHECK_OUTPUT
print("Adan with β2 = 0 retraces Adam:", gap <= 1e-12)
print(f"{'landscape':13} {'betas (β1, β3)':20} {'lr':>6}  {'Adam':>6}  {'Adan β2=0.92':>12}  {'ratio':>5}")
for (landscape, name, lr), r in results.items():
    print(f"{landscape:13} {name:20} {lr:6.3g}  {r['Adam']:6.2g}  {r['Adan']:12.2g}  {r['Adan'] / r['Adam']:5.2g}")

# %%
ratio = {key: r["Adan"] / r["Adam"] for key, r in results.items()}   # < 1: the difference term helps
adam_b, adan_b = BETAS
assert all(ratio["rosenbrock", adan_b, lr] < 0.25 for lr in LRS)           # heavy momentum: helps at every lr
assert ratio["rosenbrock", adam_b, LRS[0]] < 1 < 2 < ratio["rosenbrock", adam_b, LRS[2]]  # β1 = 0.9: mixed
assert all(ratio["noisy valley", b, LRS[2]] < 0.7 for b in BETAS)        # noisy valley, large lr: helps
assert all(1 < ratio["noisy valley", b, LRS[0]] < 1.2 for b in BETAS)    # noisy valley, small lr: ≈ no change

# %%
# The widget's first frame (Rosenbrock, Adan's betas, lr 0.1), measured: how often each path zigzags (a step
# whose gradient points against the previous one, cosine < 0) and where its loss goes.
from mdt_teach.viz.optim import rosenbrock, rosenbrock_grad

zigzag = {}
for name, beta2 in (("Adam", None), ("Adan", 0.92)):
    extra = {} if beta2 is None else {"beta2": beta2}
    path = torch.as_tensor(trajectory("rosenbrock", name, STEPS, 0.1, beta1=0.98, beta3=0.99, **extra))  # (301, 2)
    f = torch.stack([rosenbrock(theta) for theta in path])                                                # (301,)
    g = torch.stack([rosenbrock_grad(theta) for theta in path])                                           # (301, 2)
    turns = int(((g[1:] * g[:-1]).sum(dim=1) < 0).sum())
    zigzag[name] = dict(turns=turns, low=float(f.min()), low_at=int(f.argmin()), last=float(f[-1]))
    print(f"{name}: the gradient turns back {turns} times in {STEPS} steps; loss lowest {f.min():.1e} at step "
          f"{int(f.argmin())}, {f[-1]:.1e} at step {STEPS}")
assert zigzag["Adan"]["turns"] * 3 < zigzag["Adam"]["turns"]                  # far fewer zigzags ...
assert zigzag["Adan"]["low"] < 1e-4 < 1e-3 < zigzag["Adan"]["last"] < zigzag["Adam"]["last"] / 10  # ... an overshoot
assert (zigzag["Adam"]["turns"], zigzag["Adan"]["turns"], zigzag["Adan"]["low_at"]) == (16, 3, 279)  # the text's numbers
assert round(zigzag["Adam"]["last"] / zigzag["Adan"]["last"]) == 19

# %% [markdown]
# What the table shows:
# - **The control works.** Adan with β2 = 0 retraces Adam: the largest gap between the two paths, printed
#   above, is 0. Every difference in the last two columns comes from the difference term.
# - **Rosenbrock with Adan's betas (β1 = 0.98): it helps at every lr**: the final loss drops to 0.19×,
#   0.018× and 0.18× of Adam's (0.6 → 0.011 at lr 0.1). The widget shows how at lr 0.1: with momentum
#   this heavy, Adam overshoots the valley floor and zigzags across it. The difference d = g_k − g_{k−1}
#   is large whenever the gradient flips sign, and it pushes with the new gradient against the old
#   momentum. Measured in the widget's first frame (the cell above): Adam's gradient turns back 16 times in
#   300 steps, Adan's 3 times, and Adan runs down the floor. It passes the minimum (loss 9.4e-6 at step
#   279) and momentum carries it on, so its loss climbs back to 1.1e-2 by step 300 — still 19× below
#   Adam's 0.21, which is still on its way down.
# - **Rosenbrock with Adam's betas (β1 = 0.9): mixed.** It helps at lr 0.0316 (0.57×), is slightly worse
#   at 0.1 (1.2×) and **hurts at 0.316 (3×)**.
# - **Noisy valley:** about no change at lr 0.0316 (1.1× for both betas), 0.96× and 0.63× at lr 0.1,
#   and better at lr 0.316 (0.55× and 0.58×).
#
# So the difference term is no free win. On these landscapes it pays off most together with heavy
# momentum (β1 = 0.98, what MDTv2 uses), and with β1 = 0.9 and a large lr it can make things worse.
#
# The widget runs the same three contenders: Adam (thick blue), Adan with β2 = 0 (dashed orange; it
# should hide inside the blue line, and the right panel's title prints the largest gap) and Adan with
# your β2 (red). lr, β1 and β3 apply to all three. It starts at Adan's betas and lr 0.1, the table's
# Rosenbrock row for Adan's betas at lr 0.1. Each first step is a sign step, so every path starts with a 45° move.

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
#   the square of the corrected gradient g + β2·d. With β2 = 0 and the same β1, β3, Adan *is* Adam.
# - With everything else equal, the difference term helped a lot on Rosenbrock with heavy momentum
#   (β1 = 0.98), but with β1 = 0.9 it hurt at a large lr: measure it, don't assume it.
# - Bias correction makes the first step a sign step of size η.
# - It costs two more parameter-sized buffers than AdamW (4 vs 2), which ZeRO sharding hides at scale.
#
# ## Exercises
# 1. Set β2 = 0 in `adan_step` and show on paper that the update is Adam's. Which of Adam's two betas is
#    β3? Check it on the MLP above against `torch.optim.Adam`.
# 2. Add proximal weight decay (divide θ by 1 + η·λ after the step) and check it against
#    `Adan(..., weight_decay=0.05)`.
# 3. In the widget (Rosenbrock, default betas), find an lr on the slider where Adam diverges (its legend
#    says "diverged") and Adan does not, or show that none exists. For contrast, run
#    `trajectory("rosenbrock", "SGD momentum", lr=0.01)`: plain SGD with momentum β1 = 0.98.

# %% [markdown]
# <details><summary>Solutions</summary>
#
# 1. With β2 = 0, v̂ = d gets weight 0 in the update and n tracks (g + 0·d)² = g²: Adam, with betas
#    (β1, β3), and eps outside the root as in `torch.optim.Adam`. Check: clear `states`, train with
#    `adan_step(..., betas=(0.9, 0.0, 0.999))`, and compare with
#    `train(with_optimizer(lambda ps, lr: torch.optim.Adam(ps, lr=lr, betas=(0.9, 0.999))))` using
#    `assert_close(..., rtol=0, atol=1e-12)` (the gap is below 1e-15).
# 2. `theta = (theta - lr * (m_hat + b2 * v_hat) / (n_hat.sqrt() + eps)) / (1 + lr * wd)`; train with
#    `Adan(net.parameters(), lr=0.01, weight_decay=0.05)` and `assert_close` as above.
# 3. None exists. At the default betas, at all 31 lrs on the slider (0.001 to 1), neither Adam's nor
#    Adan's path is cut, and no coordinate ever moves by more than lr in one step
#    (`tests/test_viz_optim.py` checks this). So 300 steps move θ by at most 300·lr,
#    never to the |θ| = 1000 where a path is cut. Adam divides by √n̂, so its step does not grow with the
#    gradient: Kingma & Ba (arXiv 1412.6980, Section 2.1) bound it by α·(1 − β1)/√(1 − β2) when
#    (1 − β1) > √(1 − β2), and by α otherwise (here 1 − 0.98 < √(1 − 0.99), so by lr). SGD's step is
#    lr·g, and Rosenbrock's gradient at the start is about (−155, −50): at lr 0.01 the SGD path is cut
#    after 4 steps (`trajectory` returns 5 points).
#
# </details>
