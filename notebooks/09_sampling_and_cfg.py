# %% [markdown]
# # 09 · Sampling and classifier-free guidance
# *From noise to faces in 250, 50 or 10 steps, and MDT's power-cosine guidance schedule.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mdt-teach/mdt-teach/blob/main/notebooks/09_sampling_and_cfg.ipynb)

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
# - **Respacing**: how the official sampler walks 250 of the 1000 training steps, and why the network
#   still sees the *original* step index.
# - **DDPM** (ancestral, with the learned variance) vs **DDIM** (deterministic with η = 0), and what
#   fewer steps cost.
# - **Classifier-free guidance** (CFG) with MDT's **power-cosine schedule**: the guidance weight grows
#   from 1 at the start of sampling to w at the end.
# - How to sample the **official MDTv2-XL/2** checkpoint (on a GPU with internet).
#
# The model: a tiny MDTv2 trained on smileys by this project's main job (`mdt-teach train`), committed
# under `data/` as EMA weights.
#
# Read along: [DDIM](https://arxiv.org/abs/2010.02502) (arXiv 2010.02502); [classifier-free
# guidance](https://arxiv.org/abs/2207.12598) (arXiv 2207.12598);
# [`masked_diffusion/models.py`](https://github.com/sail-sg/MDT/blob/main/masked_diffusion/models.py)
# `MDTv2.forward_with_cfg`;
# [`masked_diffusion/respace.py`](https://github.com/sail-sg/MDT/blob/main/masked_diffusion/respace.py)
# `space_timesteps`;
# [`scripts/image_sample.py`](https://github.com/sail-sg/MDT/blob/main/scripts/image_sample.py).

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from mdt_teach.data import SMILEY_CLASSES
from mdt_teach.diffusion import GaussianDiffusion
from mdt_teach.lessons import load_lesson_checkpoint

model, info = load_lesson_checkpoint("lesson09_mdtv2_tiny.pt")
diffusion = GaussianDiffusion()
print(info["model"], "trained for", info["steps"], "steps;", info["weights"], "weights")

# %% [markdown]
# ## Respacing: 250 of 1000 steps
# The official sampler keeps the steps S_i = round(i·999/249), i = 0..249. It rebuilds the betas so the
# kept steps form a valid chain: β'_i = 1 − ᾱ_{S_i}/ᾱ_{S_{i−1}}. The model is always called with the
# **original** index S_i, never with i.

# %%
from mdt_teach.sampling import respace, space_timesteps

kept = [round(i * 999 / 249) for i in range(250)]
assert kept == sorted(space_timesteps(1000, "250"))
spaced = respace(diffusion, "250")
alpha_bar_kept = diffusion.alphas_cumprod[kept]
betas_new = 1 - alpha_bar_kept / np.append(1.0, alpha_bar_kept[:-1])
np.testing.assert_allclose(spaced.betas, betas_new, rtol=1e-12)
assert list(spaced.timestep_map) == kept
print("first kept steps:", kept[:5], "… last:", kept[-3:])

# %% [markdown]
# ## DDPM vs DDIM, and the number of steps
# DDPM draws fresh noise at every step, using the learned variance. DDIM (η = 0) follows a deterministic
# path from the same starting noise. Fewer steps are faster; the checker shows what they cost: its
# headline, **pair agreement** (two eyes that agree in colour, size, spacing and height;
# `docs/smileys.md`), and the two-eyes verdict before it.

# %%
import time

from mdt_teach.metrics import two_eyes
from mdt_teach.sampling import sample

n = 16
y = torch.arange(n) % model.num_classes
z = torch.randn(n, model.in_channels, model.input_size, model.input_size, generator=torch.Generator().manual_seed(0))
results = {}
for method, steps in [("ddpm", "250"), ("ddpm", "50"), ("ddim", "ddim50"), ("ddim", "ddim10")]:
    sample(model, z[:2], y[:2], diffusion, steps=steps, method=method)   # warm-up: first-call costs are not timed
    began = time.perf_counter()
    x = sample(model, z, y, diffusion, steps=steps, method=method, generator=torch.Generator().manual_seed(1))
    results[(method, steps)] = (x, two_eyes(x, y).pair_score, time.perf_counter() - began)

from mdt_teach.viz.images import image_grid

fig, axes = plt.subplots(1, len(results), figsize=(12, 2.6))
for ax, ((method, steps), (x, score, secs)) in zip(axes, results.items()):
    ax.imshow(image_grid(x[:16], nrow=4))
    ax.set_title(f"{method} {steps}: pair agreement {score:.0%}, {secs:.1f} s", fontsize=8)
    ax.axis("off")
plt.show()

# %% [markdown]
# Sixteen samples show what each sampler's faces look like, but a rate over 16 images moves by up to
# ±12% from sampling alone. `tools/sampler_comparison.py` ran the same four samplers on 512 samples of
# this checkpoint (same starting noise and classes for each) and stored the result in
# `data/sampler_comparison.json`: each rate with its standard error √(p(1−p)/n), and the time per image
# after a warm-up, on the 2-core machine that made it.

# %%
# NBVAL_CHECK_OUTPUT
import json

from mdt_teach.resources import data_file

comparison = json.loads(data_file("sampler_comparison.json").read_text())
for row in comparison["rows"]:
    print(f"{row['method']} {row['steps']:>6s}: pair agreement {row['pair_agreement']:.1%} ± "
          f"{row['pair_standard_error']:.1%}, two-eyes {row['two_eyes']:.1%} ± {row['standard_error']:.1%} "
          f"of {row['n']}, {row['ms_per_image']:.0f} ms per image")
ddpm250, ddpm50, ddim50, ddim10 = (row["pair_agreement"] for row in comparison["rows"])
print(f"pair agreement, DDPM-250 − DDPM-50 = {ddpm250 - ddpm50:+.1%} (within two standard errors: "
      f"{abs(ddpm250 - ddpm50) < 2 * comparison['rows'][0]['pair_standard_error'] * 2 ** 0.5})")
from mdt_teach.painters import blind_rates

chance = blind_rates("smileys")                 # real faces whose right eye a painter drew without looking
print("chance line (relation-blind painters): " + ", ".join(f"{k} {v:.1%}" for k, v in chance.items()))
pair = [ddpm250, ddpm50, ddim50, ddim10]
assert min(pair) > 3 * max(chance.values())     # every sampler far above what no relation scores
assert max(pair) - min(pair) < 2 * max(r["pair_standard_error"] for r in comparison["rows"]) * 2 ** 0.5
two = {(r["method"], r["steps"]): r["two_eyes"] for r in comparison["rows"]}
assert max(two[("ddim", "ddim50")], two[("ddim", "ddim10")]) < min(two[("ddpm", "250")], two[("ddpm", "50")])

# %% [markdown]
# Every sampler's pair agreement is several times the chance line (what drawing each eye without looking at
# the other scores on real faces). On 512 samples the four samplers tie on pair agreement: they lie within about one standard error of a
# difference of each other, so no sampler draws agreeing eyes more often. The two-eyes verdict separates
# them more: the deterministic DDIM paths score lower than DDPM, at 5–26× less compute than DDPM-250. The
# 16-image figure above can rank them in any order.

# %%
# DDIM with η = 0 is deterministic: the same z gives the same images, whatever the generator.
a = sample(model, z[:4], y[:4], diffusion, steps="ddim10", method="ddim", generator=torch.Generator().manual_seed(5))
b = sample(model, z[:4], y[:4], diffusion, steps="ddim10", method="ddim", generator=torch.Generator().manual_seed(6))
assert torch.equal(a, b)

# %% [markdown]
# ## Classifier-free guidance with the power-cosine schedule
# During training, 10% of the labels are replaced by a **null** class (index = number of classes), so
# one network learns both ε(x_t, y) and ε(x_t, ∅). At sampling time CFG pushes away from the
# unconditional prediction: ε = ε_∅ + w·(ε_y − ε_∅).
#
# MDT does not use a constant w. It ramps it with a power-cosine in the original timestep t:
#
# $$w_\text{eff}(t) = 1 + (w-1)\,\frac{1-\cos\!\big(\pi\,(1-t/T)^{s}\big)}{2}$$
#
# At t = 999 (the start of sampling) w_eff ≈ 1: no guidance while the layout forms. At t = 0 it
# reaches w. With s = 4 (the FID setting) guidance acts only in the last quarter of sampling.

# %%
from mdt_teach.guidance import cfg_scale_at


def w_eff(t, w, s, T=1000):
    return 1 + (w - 1) * (1 - np.cos(np.pi * (1 - np.asarray(t) / T) ** s)) / 2


ts = np.array([0, 100, 250, 500, 750, 999])
np.testing.assert_allclose(w_eff(ts, 3.8, 4), cfg_scale_at(ts, 3.8, 4.0), rtol=1e-12)
assert abs(cfg_scale_at(0, 3.8, 4.0) - 3.8) < 1e-12 and abs(cfg_scale_at(999, 3.8, 4.0) - 1.0) < 1e-3
print("w_eff for w = 3.8, s = 4 at t =", ts.tolist(), "→", np.round(w_eff(ts, 3.8, 4), 2).tolist())

# %%
# With w = 1 guidance is off: sampling equals the plain conditional sampler.
g = torch.Generator().manual_seed(3)
plain = sample(model, z[:4], y[:4], diffusion, steps="ddim10", method="ddim")
guided_1 = sample(model, z[:4], y[:4], diffusion, steps="ddim10", method="ddim", cfg_scale=1.0)
assert torch.equal(plain, guided_1)

# %% [markdown]
# ## Explore: guidance scale and schedule
# Each row is one expression. Raise w: faces get more typical and more alike. The pow slider changes
# *when* guidance acts (left: pow 0 is DiT's constant w, dashed); the right panel shows how far each
# face moved from the one constant guidance draws from the same noise. On these small faces the
# schedule moves few pixels (read the mean |Δ| in the panel's title: the face's layout is fixed long
# before pow 4's guidance starts), so the grids look alike — exercise 2 measures what that does to
# variety.

# %%
from mdt_teach.viz.sampling import cfg_widget

cfg_widget(model, diffusion, labels=list(SMILEY_CLASSES))

# %%
# NBVAL_CHECK_OUTPUT
print("respaced steps:", len(kept), "| first", kept[:3], "| last", kept[-1])
print("samplers compared:", [f"{m} {s}" for m, s in results])
print("w_eff(999) ≈ 1:", round(float(cfg_scale_at(999, 3.8, 4.0)), 2), "| w_eff(0) =", float(cfg_scale_at(0, 3.8, 4.0)))

# %% [markdown]
# ## The official MDTv2-XL/2 checkpoint
# The authors released MDTv2-XL/2 (ImageNet-256, FID 1.58 with guidance) as a plain fp32 state dict
# on the Hugging Face hub (`shgao/MDT-XL2`, file `mdt_xl2_v2_ckpt.pt`, about 3 GB).
# `mdt_teach.compat.load_official` reads the keys and shapes, infers the configuration and loads it
# with `strict=True`. First a dry run that needs no download: infer the configuration from a model
# with the same keys, built on the meta device (no memory).

# %%
from mdt_teach.compat import infer_config
from mdt_teach.models import build_model

with torch.device("meta"):
    official_layout = build_model("MDTv2-XL/2", mask_ratio=None).state_dict()
inferred, notes = infer_config(official_layout)
print(inferred)
assert (inferred.family, inferred.depth, inferred.hidden_size, inferred.decode_layer) == ("MDTv2", 28, 1152, 4)

# %% [markdown]
# The real thing, for a GPU runtime with internet (Colab: *Runtime → Change runtime type → GPU*).
# It downloads about 3 GB of weights and the SD-VAE decoder, then samples the classes of the official
# demo with its settings (250 DDPM steps, cfg 4.0, pow 0.01, seed 1).

# %%
# The official MDTv2-XL/2: on a GPU runtime only (on a CPU, 250 steps of a 718M-parameter model take hours).
if run.device != "cuda":
    print("Skipped on this CPU runtime. On a GPU runtime with internet (Colab: Runtime → Change runtime "
          "type → GPU) this cell downloads the official weights and samples the demo classes.")
else:
    from huggingface_hub import hf_hub_download

    from mdt_teach.compat import load_official
    from mdt_teach.vae import load_vae

    try:
        path = hf_hub_download("shgao/MDT-XL2", "mdt_xl2_v2_ckpt.pt")
    except OSError as err:  # offline, or the hub is unreachable
        raise RuntimeError("Could not download shgao/MDT-XL2/mdt_xl2_v2_ckpt.pt (no internet?). Download it "
                           "where you can and pass its path to load_official instead.") from err
    xl = load_official(path).to(run.torch_device)
    vae = load_vae("stabilityai/sd-vae-ft-mse", device=run.torch_device)
    classes = torch.tensor([19, 23, 106, 108, 278, 282], device=run.torch_device)
    torch.manual_seed(1)
    latents = sample(xl, (len(classes), 4, 32, 32), classes, diffusion, steps="250", cfg_scale=4.0,
                     scale_pow=0.01, progress=True)
    pictures = vae.decode(latents).clamp(-1, 1).cpu()
    plt.figure(figsize=(9, 6))
    plt.imshow(image_grid(pictures, nrow=3))
    plt.axis("off")
    plt.show()

# %% [markdown]
# > **What the official code actually does.**
# > - CFG guides only the first **3** of the 4 latent channels, a DiT legacy kept "for exact
# >   reproducibility". `guided_channels=3` is the default here too, and the other channels keep their
# >   raw values.
# > - The schedule interpolates from 1 (not from 0, as the paper's formula reads), in the original
# >   timestep t with T = 1000.
# > - FID runs use cfg 3.8 with pow 4; the demo uses cfg 4.0 with pow 0.01 (almost constant).
# > - x̂₀ is never clipped while sampling.
#
# ## Summary
# - Respacing keeps 250 of the 1000 steps and recomputes the betas; the network always sees the
#   original step index.
# - DDPM with the learned variance is the official sampler; DDIM (η = 0) is deterministic and needs
#   fewer steps.
# - MDT's CFG weight rises from 1 to w with a power-cosine in t: late, strong guidance with pow 4.
#
# ## Exercises
# 1. Plot pair agreement against the number of DDIM steps (5, 10, 25, 50, 100).
# 2. Sample with w = 4 and pow 0.01, then pow 4. Which gives more variety within a row? Why?
# 3. Guide all 3 smiley channels vs only 2 (`guided_channels=2`): what changes in the colours?

# %% [markdown]
# <details><summary>Solutions</summary>
#
# 1. Loop `steps=f"ddim{k}"` with `method="ddim"`, score `two_eyes(x, y).pair_score`, and plot. Use at
#    least a few hundred samples per point (the committed table's standard errors show why) and read the
#    plot against them: past the point where the score stops moving by more than its standard error, more
#    steps buy nothing you can measure.
# 2. On these smileys you will not see a difference, and measured there is none:
#    `tools/cfg_pow_variety.py` sampled 256 faces at w = 4 with each power (`data/cfg_pow_variety.json`)
#    and the within-class pixel variance is 0.0218 with pow 0.01 and 0.0215 with pow 4. The idea behind
#    the official comment "large pow, more diversity" is that pow 0.01 guides from the first step, when
#    the layout of an image is decided, while pow 4 guides only near the end, when the layout is already
#    fixed. A smiley has a single layout (one centred face), so there is no layout for early guidance to
#    narrow; on ImageNet, where layouts vary, the difference is what the official setting is for.
# 3. `sample(..., cfg_scale=4, guided_channels=2)`: the blue channel is no longer pushed towards the
#    class, so the colours drift slightly from the guided ones.
#
# </details>
