# %% [markdown]
# # 00 · Welcome to mdt-teach
# *How a diffusion transformer learns that a face has two eyes — and how masking teaches it faster.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mdt-teach/mdt-teach/blob/main/notebooks/00_welcome.ipynb)

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
# Run the cell above: it prints the **profile banner**, one line with the profile, device, dtype and torch
# version. `mdt_teach.setup()` picks one of three sizes and every lesson reads its sizes from `run`:
#
# | profile | when | what it trains |
# |---|---|---|
# | `tiny` | no GPU (a laptop, CI) | 32×32 smileys, 4×4 patches → 64 tokens, fp32 |
# | `small` | a CUDA GPU (Colab T4 …) | 32×32 smileys, 2×2 patches → 256 tokens (the paper's token grid), fp16/bf16 |
# | `full` | only when you ask | ImageNet-256 through the SD-VAE, MDTv2-XL/2 |
#
# Force one with `mdt_teach.setup("tiny")` or the environment variable `MDT_PROFILE`.
#
# ## What you'll learn
# This course rebuilds the **Masked Diffusion Transformer** (Gao et al., *MDT*, ICCV 2023) and its
# successor **MDTv2** from the official code, one idea per lesson. Every lesson builds a piece from
# scratch, then checks it against the library `mdt_teach` with an `assert`, so what you build is what
# trains.
#
# ## Why MDT? The paper's story
# Diffusion models learn an image's *parts* long before they learn how the parts *relate*. The MDT
# paper follows a DiT sample of a dog during training: at 50k steps it has fur, at 200k it has one eye
# and a mouth but the other eye is missing, and at 300k the ears still disagree. The per-token
# denoising loss never asks the model to relate one part to another.
#
# MDT adds **mask latent modelling**: a second, masked pass in every training step. The noisy image is
# cut into small patches (tokens), some of them are hidden from the network, and it must still remove
# the noise from every patch. To do that well on a hidden patch it would have to guess it from the
# visible ones — which is the relating the per-token loss never asked for. At inference nothing is
# hidden, so sampling costs what DiT's does. Whether the hidden patches can teach anything turns on a
# detail of the architecture: lesson 03 builds the hiding, lessons 04 and 05 the two networks that use
# it, and lesson 05 tells the whole account once every piece exists
# ([docs/masked_pass.md](../docs/masked_pass.md) keeps it too).
#
# Whether that makes a model relate the parts of an image sooner is the paper's claim. The authors
# report MDT learning about 3× faster than DiT, and MDTv2 (a rewired network, a new optimizer and a
# loss weighting: lessons 05–07) more than 10× faster, with ImageNet-256 FID 1.58 — their claims;
# lesson 08 lets you test the idea yourself at toy scale.
#
# Our toy world makes the point visible: **smileys** whose two eyes must agree. Every face draws its own
# eye colour (one of five), size, spacing and height, shared by both eyes and by nothing else in the face,
# so the only way to draw the second eye right is to look at the first. A checker counts the eyes of every
# sample and tests whether the pair agrees, so "one eye where two belong", or two eyes that do not match,
# becomes a number you can watch (`docs/smileys.md`).
#
# ## The course map
# | # | lesson | you build |
# |---|---|---|
# | 01 | diffusion basics | the forward process, the linear schedule, SNR, one reverse step |
# | 02 | the DiT block | patchify, sin-cos positions, timestep and label embeddings, adaLN-Zero |
# | 03 | masking | random masking by argsort, `ids_keep` / `ids_restore`, the mask explorer |
# | 04 | the asymmetric transformer | MDT v1: encoder on kept tokens, side-interpolater, the dual-pass loss |
# | 05 | MDTv2 shortcuts | U-Net long skips and the dense input shortcut; parameters and FLOPs |
# | 06 | Adan | the optimizer with a gradient-difference term, from scratch |
# | 07 | loss weighting | SNR over t, Min-SNR-5 and an alternative |
# | 08 | the training race | MDTv2's ingredients added to DiT one at a time, at equal time and equal steps |
# | 09 | sampling and CFG | DDPM vs DDIM, the power-cosine guidance schedule |
# | 10 | scale up | SD-VAE latents, memory plans, `torchrun` for MDTv2-XL/2 |
# | 11 | what masking teaches | the missing-eye probe, inpainting, attention between parts |
#
# Read along: [MDT / MDTv2](https://arxiv.org/abs/2303.14389) (arXiv 2303.14389);
# [DiT](https://arxiv.org/abs/2212.09748) (arXiv 2212.09748); official code
# [sail-sg/MDT](https://github.com/sail-sg/MDT).

# %% [markdown]
# ## An image is a grid of tokens
# A transformer reads a sequence, so the image is cut into square **patches** (tokens). With 32×32
# pixels and 4×4 patches that is an 8×8 grid: **64 tokens**, each a vector of 4·4·3 = 48 numbers.
#
# $$N = \left(\tfrac{H}{p}\right)^2, \qquad \text{token size} = p^2 C$$

# %%
# Draw a few smileys, the toy world of this course (generated on the fly, no download).
import matplotlib.pyplot as plt
from einops import rearrange

from mdt_teach.data import SMILEY_CLASSES, smileys_batch
from mdt_teach.viz.images import image_grid, render_token_grid

images, labels = smileys_batch(8, seed=0)
plt.figure(figsize=(8, 1.4))
plt.imshow(image_grid(images, nrow=8))
plt.axis("off")
plt.title("  ·  ".join(SMILEY_CLASSES[int(y)] for y in labels), fontsize=8)
plt.show()

# %%
# Cut the first smiley into 4×4 patches: (C, H, W) → (N, p·p·C), row-major over the grid. Each patch is
# flattened pixel by pixel, channels last (p1 p2 c); lesson 02 flattens channel first, as the patch
# embedding's weights do, and says why either order works.
p = 4
tokens = rearrange(images[0], "c (gh p1) (gw p2) -> (gh gw) (p1 p2 c)", p1=p, p2=p)  # (64, 48)
fig = render_token_grid(images[0], patch_size=p, title="8 × 8 = 64 tokens")
plt.show()

# %%
# Check: the token count and size follow the formula above.
H = images.shape[-1]
assert tokens.shape == ((H // p) ** 2, p * p * images.shape[1])
# Token 9 is grid row 1, column 1: its first pixel is image pixel (4, 4).
assert float(tokens[9, 0]) == float(images[0, 0, 4, 4])

# %%
# NBVAL_CHECK_OUTPUT
print("image", tuple(images[0].shape), "→ tokens", tuple(tokens.shape))
print("classes:", ", ".join(SMILEY_CLASSES))

# %% [markdown]
# ## Summary
# - `mdt_teach.setup()` picks the profile (`tiny` here on a CPU) and seeds everything.
# - DiT and MDT see an image as a sequence of patch tokens; the toy images give 64 tokens.
# - MDT's idea: hide some tokens during training so the model must relate the parts it sees.
#
# ## Exercises
# 1. How many tokens does a 32×32 image give with 2×2 patches (the `small` profile)? With the paper's
#    256×256 images, the VAE's 8× downsampling and 2×2 patches?
# 2. Redraw the token grid with `patch_size=8`. What happens to the eyes?

# %% [markdown]
# <details><summary>Solutions</summary>
#
# 1. (32/2)² = 256 tokens. ImageNet-256 → 32×32×4 latents → (32/2)² = 256 tokens: the small profile
#    uses the paper's token grid.
# 2. `render_token_grid(images[0], patch_size=8)`: 16 tokens; an eye usually fits inside one of them (a
#    large eye near a token's edge straddles two), so one masked token can hide a whole eye.
#
# </details>
