# %% [markdown]
# # 04 · The asymmetric masking transformer (MDT v1)
# *An encoder that sees only the kept tokens, a side-interpolater that fills the gaps, and a loss with two passes.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mdt-teach/mdt-teach/blob/main/notebooks/04_asymmetric_transformer.ipynb)

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
# MDT v1 takes DiT's stack of blocks (lesson 02) and, during training only, runs a second pass where
# 30% of the tokens are hidden (lesson 03). This lesson builds that masked pass from the library's
# parts and checks it against `mdt_teach.models.MDT`:
# - the **encoder** (the first depth − 2 blocks) runs on the kept tokens only;
# - positions two ways: the **global** absolute `pos_embed`, added before masking, and a **local**
#   relative position bias inside every attention, gathered to the kept × kept pairs;
# - the **side-interpolater**: mask tokens + `decoder_pos_embed`, one extra block, and a shortcut that
#   lets kept tokens bypass it — used in the masked pass, dropped at inference;
# - the **dual-pass loss**: an ordinary pass plus a masked pass, added 1:1.
#
# Then you will look inside a small MDT, trained on smileys by `tools/make_lesson_checkpoint.py`, and
# measure what its masked pass predicts where it cannot see. That is the first half of the course's
# account of the masked pass: in MDT v1 the encoder never reads a hidden token's noisy input, so that
# token's noise cannot be predicted, and the pass can only teach through the visible tokens. Lesson 05
# builds MDTv2's change, measures the second half and tells the whole account
# ([docs/masked_pass.md](../docs/masked_pass.md)).
#
# Paper: MDT §3 (mask latent modelling with an asymmetric masking diffusion transformer and a
# side-interpolater); code: `MDT` on the official repository's `mdtv1` branch.
#
# Read along: [MDT](https://arxiv.org/abs/2303.14389) (arXiv 2303.14389) §3;
# [`masked_diffusion/models.py`](https://github.com/sail-sg/MDT/blob/mdtv1/masked_diffusion/models.py)
# `MDT.forward_side_interpolater`, `MDT.forward` (branch `mdtv1`).

# %% [markdown]
# ## The map
# What MDT v1 adds to DiT (orange): the mask, the split into an encoder that reads only the kept tokens
# and a decoder that reads all of them, and the side-interpolater between them. Dashed pieces exist only
# in the masked training pass; at sampling time the side-interpolater is replaced by adding the
# decoder's position embedding, and MDT v1 is DiT with a second position embedding.

# %%
import matplotlib.pyplot as plt

from mdt_teach.viz.architecture import render_architecture

render_architecture(highlight=("mask", "encoder", "side_interpolater", "decoder"), kinds=("dit", "mdt"),
                    title="lesson 04 builds MDT v1's asymmetric masked pass (orange)")
plt.show()

# %%
import copy

import torch

from mdt_teach import layers
from mdt_teach.data import smileys_batch
from mdt_teach.diffusion import GaussianDiffusion
from mdt_teach.masking import random_masking
from mdt_teach.model_size import count_flops, count_params
from mdt_teach.lessons import load_lesson_checkpoint

model, info = load_lesson_checkpoint()            # MDT-T/4 (v1), EMA weights, eval mode
diffusion = GaussianDiffusion()
print(f"{info['model']}: depth {model.depth}, decode_layer {model.decode_layer}, mask ratio {model.mask_ratio}, "
      f"trained {info['steps']} steps")

# A batch of noisy smileys to push through it.
x0, y = smileys_batch(8, seed=3)
g = torch.Generator().manual_seed(0)
t = torch.randint(0, 1000, (8,), generator=g)
x_t = diffusion.q_sample(x0, t, torch.randn(x0.shape, generator=g))  # (B, 3, 32, 32)

# %% [markdown]
# ## 1 · The layout
# MDT v1 keeps DiT's single list of `depth` blocks and inserts the side-interpolater before the last
# `decode_layer` of them (official: 2). In the tiny model (depth 6):
#
# | stage | blocks | tokens | attention bias |
# |---|---|---|---|
# | encoder | `blocks[0:4]` | K kept (masked pass) or all N | relative, kept × kept |
# | side-interpolater | `sideblocks[0]` (masked pass only) | all N | relative, full |
# | decoder | `blocks[4:6]` | all N | relative, full |

# %% [markdown]
# ## 2 · Global positions: `pos_embed` goes in before masking
# The token embedding adds the learnable `pos_embed` (initialised to lesson 02's sin-cos table) to
# **every** token, and only then are tokens dropped. Each kept token therefore still knows where it
# sits, even though the encoder receives them in shuffled order.

# %%
h0 = model.x_embedder(x_t) + model.pos_embed                       # (B, N, D): global positions added
c = model.t_embedder(t) + model.y_embedder(y, train=False)         # (B, D)
h_kept, mask, ids_restore, ids_keep = random_masking(h0, model.mask_ratio, torch.Generator().manual_seed(1))
B, N, D = h0.shape
K = h_kept.shape[1]
print("all tokens", tuple(h0.shape), "→ kept tokens", tuple(h_kept.shape))

# %% [markdown]
# ## 3 · Local positions: a relative position bias per attention layer
# Every attention layer in MDT also adds a learned bias that depends only on the **offset** between two
# tokens (BEiT style). For tokens i = (r_i, q_i) and j = (r_j, q_j) on a G × G grid the offset is
# looked up in a table of (2G − 1)² rows, one per (Δrow, Δcol), times H heads:
#
# $$\mathrm{idx}(i, j) = (r_i - r_j + G - 1)(2G - 1) + (q_i - q_j + G - 1), \qquad
# \mathrm{logits}_{h,i,j} = \frac{q_i \cdot k_j}{\sqrt{d_h}} + \mathrm{table}[\mathrm{idx}(i,j),\,h]$$

# %%
G = model.x_embedder.grid_size
r, q = torch.meshgrid(torch.arange(G), torch.arange(G), indexing="ij")
r, q = r.reshape(-1), q.reshape(-1)                                # (N,) row and column of each token
idx = (r[:, None] - r[None, :] + G - 1) * (2 * G - 1) + (q[:, None] - q[None, :] + G - 1)  # (N, N)
assert torch.equal(idx, layers.relative_position_index(G))

rel = model.blocks[0].attn.rel_pos_bias
table = rel.relative_position_bias_table                           # (rows, H)
full_bias = table[idx].permute(2, 0, 1)                            # (H, N, N)
torch.testing.assert_close(full_bias, rel())
print("table rows", table.shape[0], "| rows ever indexed", int(idx.max()) + 1, "| heads", table.shape[1])

# %% [markdown]
# In the masked pass the encoder attends among K kept tokens only, so it needs the K × K sub-matrix of
# the bias, **in the same shuffled order** as the kept tokens: row a, column b is the bias between
# tokens `ids_keep[a]` and `ids_keep[b]`.

# %%
kept_bias = torch.stack([full_bias[:, ids_keep[b]][:, :, ids_keep[b]] for b in range(B)])  # (B, H, K, K)
torch.testing.assert_close(kept_bias, rel(ids_keep))

# %% [markdown]
# > **What the official code actually does.** The table has **(2G − 1)² + 3** rows (964 for the
# > paper's 16 × 16 grid, 228 here): BEiT reserved 3 extra rows for a class token, which MDT does not
# > have, so those rows are never indexed — but they are in the checkpoints, so the library keeps them.
# > Each attention layer, the side block's included, has its own table. To get the kept × kept bias the
# > official code repeats the full (H, N, N) bias over the batch and gathers rows then columns, which
# > costs B·H·N² memory; the library gathers the (B, K, K) **indices** first and looks up only those
# > biases. The values are identical.

# %% [markdown]
# ## 4 · The encoder runs on the kept tokens only
# The first depth − decode_layer blocks see K = 44 tokens instead of 64. Attention cost falls with K²,
# the MLP's with K: that is MDT's saving in the masked pass.

# %%
enc_depth = model.depth - model.decode_layer
h = h_kept
for block in model.blocks[:enc_depth]:
    h = block(h, c, ids_keep=ids_keep)                             # (B, K, D), kept × kept bias
print("encoder output", tuple(h.shape))

# %% [markdown]
# ## 5 · The side-interpolater
# The decoder works on the full grid, so the K encoder outputs must be expanded back to N tokens:
# 1. append N − K copies of the learned `mask_token` and un-shuffle with `ids_restore` (lesson 03);
# 2. add a second learnable position table, `decoder_pos_embed`, to every token → x_before;
# 3. run **one** extra block (full attention, full bias) → x_side;
# 4. keep x_side only at masked positions — a **masked shortcut** lets kept tokens bypass the block:
#
# $$\text{out} = m \odot x_{\text{side}} + (1 - m) \odot x_{\text{before}}$$

# %%
def side_interpolater(model, h, c, mask, ids_restore):
    """Mask tokens + decoder_pos_embed, one block, then keep its output only where mask = 1."""
    B, K, D = h.shape
    N = ids_restore.shape[1]
    h = torch.cat([h, model.mask_token.expand(B, N - K, D)], dim=1)        # (B, N, D), shuffled order
    h = torch.gather(h, 1, ids_restore[:, :, None].expand(-1, -1, D))      # (B, N, D), original order
    x_before = h + model.decoder_pos_embed
    x_side = model.sideblocks[0](x_before, c)                               # (B, N, D)
    m = mask[:, :, None]                                                    # (B, N, 1)
    return m * x_side + (1 - m) * x_before


h_full = side_interpolater(model, h, c, mask, ids_restore)
torch.testing.assert_close(h_full, model.forward_side_interpolater(h, c, mask, ids_restore))

# %% [markdown]
# ## 6 · The whole masked pass, from scratch
# Decoder blocks on all N tokens with the full bias, then the final layer and unpatchify. With the
# same seeded generator the library model draws the same mask, so both must agree exactly.

# %%
def my_masked_forward(model, x_t, t, y, generator):
    """MDT v1 masked pass: embed → mask → encoder on kept → side-interpolater → decoder → head."""
    h0 = model.x_embedder(x_t) + model.pos_embed                            # (B, N, D)
    c = model.t_embedder(t) + model.y_embedder(y, train=False)              # (B, D)
    h, mask, ids_restore, ids_keep = random_masking(h0, model.mask_ratio, generator)  # (B, K, D)
    enc_depth = model.depth - model.decode_layer
    for block in model.blocks[:enc_depth]:
        h = block(h, c, ids_keep=ids_keep)                                  # (B, K, D)
    h = side_interpolater(model, h, c, mask, ids_restore)                   # (B, N, D)
    for block in model.blocks[enc_depth:]:
        h = block(h, c)                                                     # (B, N, D)
    return model.head(h, c)                                                 # (B, 2C, H, W)


with torch.no_grad():
    mine = my_masked_forward(model, x_t, t, y, torch.Generator().manual_seed(1))
    lib = model(x_t, t, y, enable_mask=True, generator=torch.Generator().manual_seed(1))
torch.testing.assert_close(mine, lib, atol=1e-5, rtol=1e-5)

flops_full, flops_masked = count_flops(model), count_flops(model, enable_mask=True)
print(f"forward FLOPs: masked pass / full pass = {flops_masked / flops_full:.2f}")
print(f"one training step = unmasked + masked pass = {1 + flops_masked / flops_full:.2f} full passes "
      f"(DiT: 1.00)")
assert round(flops_masked / flops_full, 2) == 0.93   # the Summary quotes this ratio and the 1.93 it makes

# %% [markdown]
# The masked pass is **not** a saving. Only the encoder's blocks run on the kept tokens; the side block and
# the decoder run on all N, so the masked pass costs almost a full pass, and a training step runs both
# passes — here about twice DiT's forward cost per step (the ratio above, for this tiny MDT; lesson 05
# counts it at every size). What MDT buys with that cost is the extra task, not speed per step; and at
# inference the side-interpolater is dropped, so sampling costs exactly what DiT's does.

# %% [markdown]
# ## 7 · Why the side-interpolater is dropped at inference
# At sampling time nothing is masked, so there is nothing to interpolate: the encoder already sees
# every token, and at the hand-off the model simply adds `decoder_pos_embed`. The side block and the
# mask token are trained only by the masked pass and are never used to sample — changing them leaves
# the ordinary output untouched.

# %%
scrambled = copy.deepcopy(model)
with torch.no_grad():
    for param in [*scrambled.sideblocks.parameters(), scrambled.mask_token]:
        param.normal_()
    assert torch.equal(scrambled(x_t, t, y), model(x_t, t, y))           # unmasked pass: unchanged
    assert not torch.equal(scrambled(x_t, t, y, enable_mask=True, generator=torch.Generator().manual_seed(1)), lib)

unused = count_params(model) - count_params(model, inference=True)
assert unused == count_params(model.sideblocks) + model.mask_token.numel()
print(f"parameters: {count_params(model):,} in the checkpoint, {count_params(model, inference=True):,} used to sample")

# %% [markdown]
# > **What the official code actually does.** The paper draws the side-interpolater as a predictor of
# > the masked tokens. In the code it is one ordinary adaLN-Zero block whose output is used **only at
# > masked positions** (the masked shortcut); kept tokens go from the encoder straight to the decoder,
# > plus `decoder_pos_embed`. In the unmasked pass and at inference `forward` skips it and only adds
# > `decoder_pos_embed`. Both position tables start as the same sin-cos table and are learned.

# %% [markdown]
# ## 8 · The dual-pass loss
# Each training step runs the model twice on the same images x_0 and the same timesteps t, with
# independent noise (and independent label dropout and mask):
#
# $$\mathcal L = \underbrace{\mathrm{mean}_b\,L(x_0, t, \varepsilon_1)}_{\text{unmasked pass}}
#  + \underbrace{\mathrm{mean}_b\,L_{\text{mask}}(x_0, t, \varepsilon_2)}_{\text{masked pass}},\qquad
#  L = \lVert \varepsilon - \hat\varepsilon \rVert^2 + L_{\text{vb}}$$
#
# The masked pass's loss covers **all** tokens, the visible ones too. `training_loss` does both passes
# when `model.is_mdt`; we redo them one at a time with the same random draws and check the sum.

# %%
from mdt_teach.diffusion import single_pass_loss, training_loss

torch.manual_seed(1)                              # the mask is drawn from the global RNG inside forward
with torch.no_grad():
    out = training_loss(model, x0, y, diffusion, t=t, generator=torch.Generator().manual_seed(0))

g = torch.Generator().manual_seed(0)              # the same noise draws, in the same order
eps_1, eps_2 = torch.randn(x0.shape, generator=g), torch.randn(x0.shape, generator=g)
ones = torch.ones(len(x0))                        # MDT v1: no loss weighting
torch.manual_seed(1)
with torch.no_grad():
    full = single_pass_loss(model, x0, t, y, diffusion, ones, eps_1, enable_mask=False)
    masked = single_pass_loss(model, x0, t, y, diffusion, ones, eps_2, enable_mask=True)
torch.testing.assert_close(out["loss"], full["loss"].mean() + masked["loss"].mean())

# The masked pass's ε-MSE by hand: over every pixel, hidden and visible alike.
torch.manual_seed(1)
with torch.no_grad():
    x_t2 = diffusion.q_sample(x0, t, eps_2)
    eps_hat = model(x_t2, t, y, enable_mask=True)[:, :3]           # (B, 3, H, W): channels [ε, v]
torch.testing.assert_close(out["m_mse"], ((eps_2 - eps_hat) ** 2).mean())
torch.testing.assert_close(out["loss"], out["mse"] + out["vb"] + out["m_mse"] + out["m_vb"])

# %% [markdown]
# > **What the official code actually does.** `forward_backward` calls `training_losses` twice per
# > micro-batch — once plain, once with `enable_mask=True` — on the same latents and timesteps, and
# > backpropagates `loss_full.mean() + loss_masked.mean()` once. Each call draws its own noise, the
# > model draws its own label dropout and mask, and nothing in the loss is restricted to masked
# > tokens. A training step therefore runs about 1.75× a DiT step's forward FLOPs at MDT-XL/2 (mask ratio
# > 0.3, 179 of 256 tokens kept; lesson 05 counts it at every size); the tiny model's ratio is printed above.

# %%
# NBVAL_CHECK_OUTPUT
print("h0", tuple(h0.shape), "→ kept", tuple(h_kept.shape), "| mask", tuple(mask.shape))
print("relative bias: table", tuple(table.shape), "| full", tuple(full_bias.shape), "| kept", tuple(kept_bias.shape))
print("encoder out", tuple(h.shape), "→ side-interpolater out", tuple(h_full.shape), "→ model out", tuple(lib.shape))
print("unused at inference:", unused, "parameters (side block + mask token)")
print("from-scratch masked pass == library:", torch.allclose(mine, lib, atol=1e-5))

# %% [markdown]
# ## Explore: what the masked pass predicts where it cannot see
# The trained model's masked pass, made visible, beside the unmasked pass on the same noisy input. For one
# smiley (the `face` slider picks another), left to right: the noisy input x_t with the hidden tokens
# painted grey (the encoder never sees them); the masked pass's clean-image estimate
# x̂_0 = (x_t − √(1 − ᾱ_t)·ε̂)/√ᾱ_t on the visible tokens; the unmasked pass's x̂_0 from the same x_t, which
# reads every token; and the **hole cost**: how much larger each visible token's ε-MSE is in the masked pass
# than in the unmasked one, in units of the unmasked pass's mean error (red: the holes made it harder).
#
# Read the titles first: at the hidden tokens the masked pass's ε-MSE is about 1, the variance of the noise
# itself, so there ε̂ is **zero** (the cell above measured it on 64 faces). The noise added there is
# independent of everything the model saw, so the best guess of it is 0, and the model has learned exactly
# that. In ε-space MDT v1 cannot "fill in" hidden pixels (which is why x̂_0 is left grey there: the formula
# would only rescale an x_t the model never read), while the unmasked pass, which reads those tokens,
# denoises them like any other. What the masked pass trains is the encoder and the
# side-interpolater: the visible tokens' noise must still be predicted from a context with holes in it,
# and the decoder reads, at the hidden positions, features the side-interpolater inferred from the
# visible tokens. MDTv2's dense input shortcut (lesson 05) hands the hidden x_t to the decoder, and
# there ε̂ is no longer zero. The cell after the widget measures how much each kind of token costs.
#
# Slide the mask ratio and t: how much of a face can be hidden before the visible estimate degrades, and
# which visible tokens pay for the holes?

# %%
# What the masked pass predicts where it cannot see, in numbers: RMS of ε̂ over the hidden and over the
# visible tokens (64 smileys, t = 300).
from mdt_teach.lessons import hidden_visible_rms, reconstruct

x_check, y_check = smileys_batch(64, seed=7)
rec = reconstruct(model, x_check, y_check, diffusion, t=300, mask_ratio=0.3)
hidden_rms, visible_rms = hidden_visible_rms(rec, model.patch_size)
print(f"RMS of ε̂: hidden tokens {hidden_rms:.3f}, visible tokens {visible_rms:.3f}")
assert hidden_rms < 0.1 * visible_rms, "a trained MDT v1 predicts (almost) no noise where it cannot see"

# %%
from mdt_teach.viz.reconstruction import reconstruction_widget

reconstruction_widget(model, x0[:3], y[:3], diffusion)

# %% [markdown]
# ### Where the masked pass's loss comes from
# The figure shows one face at a time; the loss over 64 faces says what each kind of token teaches.
# `masked_pass_errors` runs both passes on the same x_t and measures the ε-MSE per element over the
# hidden tokens and over the visible ones — for the masked pass and, at the same tokens, for the
# unmasked pass (which sees everything).

# %%
# NBVAL_CHECK_OUTPUT
from mdt_teach.lessons import masked_pass_errors

for t_probe in (100, 300):
    e = masked_pass_errors(model, x_check, y_check, diffusion, t=t_probe, mask_ratio=0.3, seed=7)
    print(f"t = {t_probe}: masked pass MSE hidden {e['masked_hidden']:.3f}, visible {e['masked_visible']:.3f}"
          f" | unmasked pass at the same tokens: {e['unmasked_hidden']:.3f}, {e['unmasked_visible']:.3f}")
    assert abs(e["masked_hidden"] - 1) < 0.05                         # the irreducible E[ε²] = 1: ε̂ ≈ 0
    assert e["masked_visible"] < 1.5 * e["unmasked_visible"]          # the holes cost the visible tokens little

# %% [markdown]
# The hidden tokens' error sits at the irreducible 1 (ε̂ ≈ 0 against noise of variance 1): all the gradient
# there does is hold ε̂ at zero. The visible tokens carry the learning signal, and at this toy scale the
# holes make their task barely harder than in the unmasked pass (compare the two visible columns). Lesson 05
# runs the same measurement on MDTv2, where the hidden column changes completely.

# %% [markdown]
# ## Summary
# - MDT v1 = DiT's blocks split into an encoder (depth − 2 blocks) and a decoder (2 blocks), with a
#   side-interpolater between them in the masked pass only.
# - Global positions (`pos_embed`) are added before masking; local positions are a per-layer relative
#   bias, gathered to the kept × kept pairs in shuffled order. Its table has 3 unused rows.
# - The side-interpolater fills mask tokens, adds `decoder_pos_embed`, runs one block, and keeps its
#   output only at masked positions. At inference it is skipped; it costs nothing to sample.
# - Loss = unmasked-pass loss + masked-pass loss, 1:1, same x_0 and t, fresh noise, all tokens.
# - At hidden tokens the noise is unknowable, so a trained v1 predicts ε̂ ≈ 0 there (error ≈ 1, measured):
#   the masked pass teaches through the visible tokens' predictions, not by painting the hidden ones.
# - The masked pass costs almost a full pass (0.93 of one for this tiny MDT); a training step costs 1.93×
#   a DiT step here and 1.75× at MDT-XL/2 (lesson 05); sampling costs the same as DiT.
#
# ## Exercises
# 1. In `my_masked_forward`, feed the side block's output to the kept tokens too
#    (`return x_side`). Does the output still match the library? Which positions differ?
# 2. How many rows of the relative bias table does the paper's 16 × 16 grid use, and which are unused?
# 3. Count the attention-logit entries the encoder computes per head in the masked pass and in the
#    full pass, for G = 16 and r = 0.3.
# 4. Why can't the kept tokens simply be sorted before the encoder, to make the bias gather easier?

# %% [markdown]
# <details><summary>Solutions</summary>
#
# 1. No. Kept positions now carry the side block's output instead of x_before; masked positions are
#    unchanged. Measured on this lesson's batch (`tests/test_lesson_claims.py` checks it), the output
#    moves by 0.67 per element on average at the kept tokens and by 0.0007 at the hidden ones: the
#    decoder attends across tokens, but at hidden positions the trained v1 outputs ε̂ ≈ 0 whatever its
#    context, so the change hardly reaches them.
# 2. (2·16 − 1)² = 961 rows (indices 0 … 960) are used; rows 961, 962, 963 are BEiT's leftovers.
# 3. K = int(256·0.7) = 179: 179² = 32,041 logits against 256² = 65,536, about half.
# 4. They could: attention with the bias gathered in the same order is permutation-equivariant, so
#    sorting only permutes the encoder's outputs. But `ids_restore` would have to be recomputed for the
#    sorted order; the official code avoids that by keeping the shuffled order from masking to un-shuffle.
#
# </details>
