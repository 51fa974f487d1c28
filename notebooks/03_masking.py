# %% [markdown]
# # 03 · Masking
# *Hide a random share of the tokens: argsort of noise, `ids_keep`, `ids_restore`, and MDTv2's ratio range.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mdt-teach/mdt-teach/blob/main/notebooks/03_masking.ipynb)

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
# MDT's training adds a second pass in which part of the (noisy) image tokens is **hidden** from the
# network, while the loss still asks for the noise of every token. What the hidden tokens can teach
# depends on the networks that read the visible ones, built in lessons 04 and 05; lesson 05 tells the
# whole account once they exist ([docs/masked_pass.md](../docs/masked_pass.md) keeps it too).
#
# This lesson builds the hiding, the masking step, exactly as the official code does it (it is MAE's
# `random_masking`):
# - a random **permutation** per image from the argsort of uniform noise;
# - the first K = int(L·(1 − r)) tokens of the permutation are kept (**`ids_keep`**), in shuffled order;
# - **`ids_restore`** undoes the shuffle later, and the **mask** (1 = hidden) is in the original order;
# - MDTv2 draws the ratio r from [0.3, 0.5) — once per forward pass, not per image.
#
# Paper: MDT §3 (mask latent modelling); MAE (He et al. 2022) §3 for the masking procedure.
#
# Read along: [MDT](https://arxiv.org/abs/2303.14389) (arXiv 2303.14389) §3;
# [MAE](https://arxiv.org/abs/2111.06377) (arXiv 2111.06377) §3;
# [`masked_diffusion/models.py`](https://github.com/sail-sg/MDT/blob/main/masked_diffusion/models.py)
# `MDTv2.random_masking`.

# %%
# Our tokens: 8 smileys cut into 4×4 patches, so L = 64 tokens of 48 numbers each.
import torch
from einops import rearrange

from mdt_teach import masking
from mdt_teach.data import smileys_batch

images, labels = smileys_batch(8, seed=0)
p = 4
x = rearrange(images, "b c (gh p1) (gw p2) -> b (gh gw) (p1 p2 c)", p1=p, p2=p)  # (B, L, D)
B, L, D = x.shape
print("tokens", tuple(x.shape))

# %% [markdown]
# ## Random masking by argsort
# Draw one uniform number per token; sorting them gives a uniformly random permutation of the L tokens.
# The tokens with the K smallest numbers are kept:
#
# $$\text{noise} \sim U[0,1)^{B\times L},\quad \text{ids\_shuffle} = \operatorname{argsort}(\text{noise}),
# \quad \text{ids\_keep} = \text{ids\_shuffle}[:, :K],\quad K = \lfloor L\,(1-r) \rfloor$$
#
# The inverse permutation is itself an argsort: ids_restore = argsort(ids_shuffle). Entry n of
# `ids_restore` is the **rank** of token n in the shuffle, so token n is kept exactly when
# ids_restore[n] < K.

# %%
def my_random_masking(x, mask_ratio, generator):
    """MAE masking: keep the K tokens with the smallest noise; returns x_kept, mask, ids_restore, ids_keep."""
    B, L, D = x.shape
    K = int(L * (1 - mask_ratio))
    noise = torch.rand(B, L, generator=generator)                  # (B, L)
    ids_shuffle = torch.argsort(noise, dim=1)                      # (B, L): a random permutation
    ids_restore = torch.argsort(ids_shuffle, dim=1)                # (B, L): its inverse
    ids_keep = ids_shuffle[:, :K]                                  # (B, K)
    x_kept = torch.gather(x, 1, ids_keep[:, :, None].expand(-1, -1, D))  # (B, K, D), shuffled order
    mask = torch.ones(B, L)                                        # (B, L), shuffled order: K zeros, then ones
    mask[:, :K] = 0
    mask = torch.gather(mask, 1, ids_restore)                      # (B, L), original token order
    return x_kept, mask, ids_restore, ids_keep


mine = my_random_masking(x, 0.3, torch.Generator().manual_seed(0))
lib = masking.random_masking(x, 0.3, generator=torch.Generator().manual_seed(0))
for a, b in zip(mine, lib):
    torch.testing.assert_close(a, b.to(a.dtype), atol=0, rtol=0)

x_kept, mask, ids_restore, ids_keep = lib
K = ids_keep.shape[1]
assert K == int(L * (1 - 0.3)) == 44 and (mask.sum(1) == L - K).all()

# %% [markdown]
# Three properties to check, because the rest of MDT depends on them:
# 1. `ids_restore` really inverts the shuffle;
# 2. the kept tokens are in **shuffled** order, not sorted — `ids_keep[0]` is not increasing;
# 3. the mask marks exactly the tokens that are not in `ids_keep`.

# %%
ids_shuffle = torch.argsort(ids_restore, dim=1)                    # (B, L): the permutation back
assert torch.equal(torch.gather(ids_shuffle, 1, ids_restore), torch.arange(L).expand(B, L))
assert not torch.equal(ids_keep[0], ids_keep[0].sort().values)
kept_by_mask = (mask[0] == 0).nonzero().squeeze(1)                 # (K,) sorted token ids
assert torch.equal(kept_by_mask, ids_keep[0].sort().values)
print("first 10 kept token ids of image 0:", ids_keep[0, :10].tolist())

# %% [markdown]
# ## Putting the tokens back: `ids_restore`
# Later (lesson 04) the encoder's K outputs are extended with L − K copies of a learned **mask token**
# and put back in their places. Append, then gather with `ids_restore`: the kept tokens land where they
# came from and every hidden position receives a mask token.

# %%
mask_token = torch.full((1, 1, D), -9.0)                           # a recognisable stand-in
filled = torch.cat([x_kept, mask_token.expand(B, L - K, D)], dim=1)  # (B, L, D), shuffled order
restored = torch.gather(filled, 1, ids_restore[:, :, None].expand(-1, -1, D))  # (B, L, D), original order

m = mask.bool()[:, :, None]                                        # (B, L, 1)
assert torch.equal(torch.where(m, mask_token, x), restored)
torch.testing.assert_close(restored, masking.unshuffle_with_tokens(x_kept, mask_token, ids_restore))

# %% [markdown]
# ## How many tokens are kept? K = int(L·(1 − r))
# The official code computes `int(L * (1 - mask_ratio))`, which rounds down. For the paper's
# 256-token grid, r = 0.3 keeps 179 tokens (76.8 would be masked, 77 are); for our 64-token grid 44.

# %%
for L_grid in (64, 256):
    print(f"L = {L_grid:3d}:", "  ".join(f"r={r:.1f}→K={masking.num_kept(L_grid, r)}" for r in (0.1, 0.3, 0.5, 0.7)))
assert masking.num_kept(256, 0.3) == 179 and masking.num_kept(64, 0.3) == 44

# %% [markdown]
# ## MDTv2: a ratio range, drawn once per forward pass
# MDT v1 always hides 30%. MDTv2 draws the ratio from [r, r + 0.2) = [0.3, 0.5):
#
# $$\rho = r + 0.2\,u, \qquad u \sim U[0, 1)\ \text{once per forward call}$$
#
# Every image of the batch shares that ρ, hence the same K, which keeps the kept tokens a plain
# (B, K, D) tensor. Let us watch the library's MDTv2-T/4 draw it.

# %%
from mdt_teach.models import build_model

model = build_model("MDTv2-T/4")                                   # mask_ratio 0.3, jitter 0.2
h0 = torch.randn(B, 64, model.hidden_size)                         # (B, L, D): stand-in embedded tokens
g = torch.Generator().manual_seed(0)
Ks = []
for _ in range(200):
    h_kept, m, _, _ = model.mask_tokens(h0, generator=g)           # one forward pass's masking
    assert (m.sum(1) == m[0].sum()).all()                          # same K for every image in the batch
    Ks.append(h_kept.shape[1])
print(f"K over 200 passes: min {min(Ks)}, max {max(Ks)} (ratio range [0.3, 0.5) on 64 tokens)")
assert int(64 * (1 - 0.5)) <= min(Ks) and max(Ks) <= int(64 * (1 - 0.3))

ratios = torch.stack([masking.draw_mask_ratio(0.3, 0.2, generator=g) for _ in range(2000)])  # (2000, 1)
assert 0.3 <= ratios.min() and ratios.max() < 0.5

# %% [markdown]
# > **What the official code actually does.** The MDTv2 ratio is `torch.rand(1) * 0.2 + 0.3`, drawn
# > **once per forward call** — once per micro-batch, per GPU, per step — and shared by the whole
# > batch. The paper's "wider mask ratio range of 30–50%" could be read as a ratio per image; it is not.
# > In v1 the ratio is a constant 0.3. Which tokens are hidden is drawn per image (the argsort above),
# > and the kept tokens stay in shuffled order: every later step (the relative position bias in
# > lesson 04, the un-shuffle) must use that same order.

# %% [markdown]
# ## Check against the library
# Our masking equals `mdt_teach.masking.random_masking` draw for draw, and the model's masking uses it.

# %%
# NBVAL_CHECK_OUTPUT
print("x", tuple(x.shape), "→ x_kept", tuple(x_kept.shape), "| mask", tuple(mask.shape),
      "| ids_restore", tuple(ids_restore.shape), "| ids_keep", tuple(ids_keep.shape))
print("hidden per image:", mask.sum(1).int().tolist())
print("K for v1 (r=0.3, L=256):", masking.num_kept(256, 0.3), "| MDTv2-T/4 K range on 64 tokens:", (min(Ks), max(Ks)))
print("library agrees:", all(torch.equal(a, b.to(a.dtype)) for a, b in zip(mine, lib)))

# %% [markdown]
# ## Explore: the mask explorer
# Pick an image, a mask ratio and a seed. Left: the image with the hidden tokens greyed out. Right: the
# encoder's input — the K kept tokens in the order it receives them, each labelled with its original
# token index. Notice that a seed fixes the permutation, so raising the ratio hides *more of the same*
# tokens; and that at 0.5 or more all the tokens of one eye are sometimes hidden at once (at patch 4 an eye
# covers up to six tokens, most often four): the encoder then sees one eye, and the other is what the
# decoder must draw from it.

# %%
from mdt_teach.viz.masks import mask_explorer_widget

mask_explorer_widget(images, patch_size=p)

# %% [markdown]
# ## Summary
# - Masking = a random permutation per image (argsort of uniform noise); the first K = int(L·(1 − r))
#   tokens are kept, **in shuffled order**.
# - `ids_restore` = argsort(ids_shuffle) undoes the shuffle; appending mask tokens and gathering with it
#   puts every token back in place. The mask (1 = hidden) is in the original order.
# - MDT v1 hides a fixed 30%; MDTv2 draws ρ ∈ [0.3, 0.5) once per forward pass, shared by the batch.
#
# ## Exercises
# 1. With L = 256 and MDTv2's range, what are the smallest and largest K? Check with `masking.num_kept`.
# 2. Show that for a fixed seed the kept set at ratio 0.5 is a subset of the kept set at ratio 0.3.
# 3. Write the mask with a boolean comparison instead of a gather (one line), and assert it equals ours.
# 4. Why must the whole batch share one K?

# %% [markdown]
# <details><summary>Solutions</summary>
#
# 1. K ∈ [128, 179]. ρ = 0.3 gives int(179.2) = 179. The bottom end is subtler: 256·(1 − ρ) =
#    128 + 51.2·(1 − u) falls below 129 as soon as u > 0.98, so K = 128 in about 2% of the passes —
#    `masking.num_kept(256, torch.tensor([0.3 + 0.2 * 0.99]))` is 128.
# 2. The permutation depends only on the noise, and the kept set is a prefix of it:
#    `a = my_random_masking(x, 0.3, torch.Generator().manual_seed(0))[3]`,
#    `b = my_random_masking(x, 0.5, torch.Generator().manual_seed(0))[3]`, then `torch.equal(a[:, :b.shape[1]], b)`.
# 3. `mask = (ids_restore >= K).float()` — this is how `mdt_teach.masking` writes it.
# 4. The kept tokens are stacked into one (B, K, D) tensor for the encoder's batched attention; a K per
#    image would need padding and attention masks.
#
# </details>
