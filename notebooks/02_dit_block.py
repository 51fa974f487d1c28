# %% [markdown]
# # 02 · The DiT block
# *Tokens, positions, time and class: everything a diffusion transformer block needs, built by hand.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mdt-teach/mdt-teach/blob/main/notebooks/02_dit_block.ipynb)

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
# MDT keeps DiT's building block unchanged; only the way blocks are wired differs (lessons 04–05).
# This lesson builds that block and everything that feeds it:
# - **patchify**: an image becomes a sequence of tokens through one strided convolution;
# - the **2-D sin-cos position table** (and its exact channel layout in the official code);
# - the **timestep embedding** (256 frequencies, cos first) and the **label embedding** with a null class
#   for classifier-free guidance;
# - **adaLN-Zero**: the condition c = t_emb + y_emb sets a shift, scale and gate for each half of the
#   block, and zero-initialised gates make every block start as the identity.
#
# You will build a block from scratch, load the library block's weights into it and check that both
# agree, then count DiT-XL/2's 675 million parameters with a formula.
#
# Paper: DiT (Peebles & Xie 2023) §3.2, the adaLN-Zero block; MDT and MDTv2 reuse it unchanged.
#
# Read along: [DiT](https://arxiv.org/abs/2212.09748) (arXiv 2212.09748) §3.2;
# [`models.py`](https://github.com/facebookresearch/DiT/blob/main/models.py) `DiTBlock`;
# [`masked_diffusion/models.py`](https://github.com/sail-sg/MDT/blob/main/masked_diffusion/models.py)
# `MDTBlock`.

# %% [markdown]
# ## The map
# The three models of this course, as a token sequence flows through them (block counts of the XL/2
# models in the official scripts). In orange, what this lesson builds: patchify, the transformer block
# and its conditioning c — one block design that DiT, MDT v1 and MDTv2 all stack; they differ only in
# the wiring, which lessons 04 and 05 add.

# %%
import matplotlib.pyplot as plt

from mdt_teach.viz.architecture import render_architecture

render_architecture(highlight=("patchify", "blocks", "encoder", "decoder", "adaln"),
                    title="lesson 02 builds the shared block (orange)")
plt.show()

# %%
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from mdt_teach import layers
from mdt_teach.data import smileys_batch

torch.manual_seed(0)
x, y = smileys_batch(4, seed=0)   # 4 smileys (B, 3, 32, 32) in [-1, 1] and their classes
D, p = 128, 4                     # the tiny model's width and patch size
print(x.shape, y.tolist())

# %% [markdown]
# ## 1 · Images to tokens
# Cut the image into p×p patches, flatten each patch to a vector of p²·C numbers and map it to D
# numbers with one shared linear layer. A convolution with kernel = stride = p does exactly that, so
# the official code (timm's `PatchEmbed`) uses `Conv2d(C, D, p, stride=p)`. Tokens are numbered
# row-major: token n sits at grid row n // G and column n mod G (G = H / p). Inside a patch the conv's
# weight (D, C, p, p) fixes the order channel first, (c p1 p2); lesson 00 flattened pixel first,
# (p1 p2 c). Any fixed order works as long as the weights use the same one — the cell checks it.
#
# $$\text{token}_n = W\,\mathrm{vec}(\text{patch}_n) + b, \qquad N = (H/p)^2$$

# %%
# Patchify by hand: the conv weight (D, C, p, p) is a (D, C·p·p) matrix acting on each flattened patch.
embed = layers.PatchEmbed(img_size=32, patch_size=p, in_chans=3, embed_dim=D)
patches = rearrange(x, "b c (gh p1) (gw p2) -> b (gh gw) (c p1 p2)", p1=p, p2=p)  # (B, N, C·p·p)
W = embed.proj.weight.reshape(D, -1)                                              # (D, C·p·p)
tokens = patches @ W.T + embed.proj.bias                                          # (B, N, D)

torch.testing.assert_close(tokens, embed(x), atol=1e-5, rtol=1e-5)
print("patches", tuple(patches.shape), "→ tokens", tuple(tokens.shape))

# Lesson 00 flattened each patch pixel by pixel, channels last: (p1 p2 c). The same numbers in another order,
# so a linear layer whose weight columns are permuted the same way gives the same tokens.
pixel_first = rearrange(x, "b c (gh p1) (gw p2) -> b (gh gw) (p1 p2 c)", p1=p, p2=p)     # (B, N, p·p·C)
W_pixel_first = rearrange(embed.proj.weight, "d c p1 p2 -> d (p1 p2 c)")                   # (D, p·p·C)
torch.testing.assert_close(pixel_first @ W_pixel_first.T + embed.proj.bias, tokens, atol=1e-5, rtol=1e-5)

# %% [markdown]
# ## 2 · Where is each token? The 2-D sin-cos table
# Attention is blind to order, so a position vector is added to every token. DiT (and MDT's initial
# value) uses fixed sines and cosines. With ω_k = 10000^{−k/(D/4)} for k = 0 … D/4 − 1 and a token at
# row r, column q:
#
# $$\mathrm{pos}(r, q) = \big[\,\sin(q\,\omega),\ \cos(q\,\omega),\ \sin(r\,\omega),\ \cos(r\,\omega)\,\big]
# \in \mathbb R^{D}$$
#
# Each quarter has D/4 channels: the **column** fills the first half, the **row** the second, and in
# each half the sines come first.

# %%
def sincos_table(D, G):
    """2-D sin-cos positions (G·G, D): [sin(qω), cos(qω), sin(rω), cos(rω)] for token n = r·G + q."""
    omega = 1.0 / 10000 ** (torch.arange(D // 4, dtype=torch.float64) / (D / 4))  # (D/4,)
    r, q = torch.meshgrid(torch.arange(G), torch.arange(G), indexing="ij")        # (G, G) each
    r, q = r.reshape(-1, 1).double(), q.reshape(-1, 1).double()                   # (N, 1)
    return torch.cat([torch.sin(q * omega), torch.cos(q * omega),
                      torch.sin(r * omega), torch.cos(r * omega)], dim=1).float()  # (N, D)


G = 32 // p
pos = sincos_table(D, G)
torch.testing.assert_close(pos, layers.sincos_2d(D, G), atol=0, rtol=0)

# Token 27 sits at row 3, column 3; token 31 at row 3, column 7: they share the row half exactly.
assert torch.equal(pos[27, D // 2:], pos[31, D // 2:]) and not torch.equal(pos[27, : D // 2], pos[31, : D // 2])

# %% [markdown]
# Neighbouring tokens get similar vectors. Below: the dot product of token 27's position vector with
# every other token's, drawn on the 8 × 8 grid — it peaks at token 27 and falls off with distance.

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 3))
axes[0].imshow(pos.T, aspect="auto", cmap="RdBu")
axes[0].set_xlabel("token n")
axes[0].set_ylabel("channel")
axes[0].set_title("sin-cos table (D × N)", fontsize=9)
axes[1].imshow((pos @ pos[27]).reshape(G, G), cmap="viridis")
axes[1].set_title("similarity to token 27 (row 3, col 3)", fontsize=9)
plt.show()

# %% [markdown]
# > **What the official code actually does.** The table comes from MAE's `get_2d_sincos_pos_embed`.
# > Its grid is built as `meshgrid(w, h)`, so the half it calls `emb_h` encodes the **column** (x)
# > index and comes first; each half is `[sin, cos]`. DiT keeps this table frozen; MDT makes it
# > learnable (`pos_embed`) and initialises a second copy, `decoder_pos_embed` (lesson 04), to the same
# > values. A mix-up of the halves (or of sin and cos) is invisible in training from scratch but breaks
# > loading the published checkpoints.

# %% [markdown]
# ## 3 · When? The timestep embedding
# The integer step t ∈ {0 … 999} becomes 256 frequency features, then a small MLP (Linear, SiLU,
# Linear) maps them to D. With f_k = exp(−ln(10000)·k/128), k = 0 … 127:
#
# $$\phi(t) = \big[\cos(t f_0), \dots, \cos(t f_{127}),\ \sin(t f_0), \dots, \sin(t f_{127})\big]$$
#
# Note the order: **cos first** here, sin first in the position table.

# %%
def timestep_features(t, dim=256, max_period=10000.0):
    """[cos(t·f), sin(t·f)] with f_k = exp(−ln(max_period)·k/half)  (GLIDE / DiT)."""
    half = dim // 2
    f = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)  # (half,)
    args = t[:, None].float() * f[None]                                                    # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)                            # (B, dim)


t = torch.tensor([0, 10, 500, 999])
torch.testing.assert_close(timestep_features(t), layers.timestep_embedding(t, 256))

t_embedder = layers.TimestepEmbedder(D)
t_emb = t_embedder.mlp(timestep_features(t))                  # (B, D)
torch.testing.assert_close(t_emb, t_embedder(t))

# %% [markdown]
# ## 4 · What? The label embedding and the null class
# Each class has a learned row in a table. For classifier-free guidance (lesson 09) the table has one
# extra row, index `num_classes`, the **null class** "no label". During training every label is
# replaced by the null class with probability 0.1, so the same network learns p(x) and p(x | y).
# The condition that drives every block is the sum
#
# $$c = \mathrm{t\_emb}(t) + \mathrm{y\_emb}(y) \in \mathbb R^{D}.$$

# %%
y_embedder = layers.LabelEmbedder(num_classes=4, hidden_size=D, dropout_prob=0.1)
print("label table rows:", y_embedder.embedding_table.num_embeddings, "(4 classes + null)")

# Forcing a drop replaces the label by the null row 4; in eval mode labels pass through untouched.
dropped = y_embedder(y, train=False, force_drop_ids=torch.tensor([1, 0, 1, 0]))
torch.testing.assert_close(dropped[0], y_embedder.embedding_table.weight[4])
torch.testing.assert_close(y_embedder(y, train=False), y_embedder.embedding_table(y))

# In training mode about 10% of labels become the null class.
coins = y_embedder.token_drop(torch.zeros(10_000, dtype=torch.long), generator=torch.Generator().manual_seed(0))
print(f"share dropped to null: {(coins == 4).float().mean():.3f}")
c = t_emb + y_embedder(y, train=False)                        # (B, D)

# %% [markdown]
# > **What the official code actually does.** The label-dropout coin flips are drawn with
# > `torch.rand` on the **CPU** in MDT and on the labels' device in DiT: same distribution, different
# > random stream. `force_drop_ids` exists in both but only DiT's sampling script uses it.

# %% [markdown]
# ## 5 · adaLN-Zero
# Instead of fixed LayerNorm gains, DiT lets the condition c choose them. One linear layer maps
# SiLU(c) to six D-vectors, in this order: shift₁, scale₁, gate₁ for attention and shift₂, scale₂,
# gate₂ for the MLP:
#
# $$\mathrm{mod}(h; \text{shift}, \text{scale}) = h\,(1 + \text{scale}) + \text{shift}$$
# $$x \leftarrow x + \text{gate}_1 \odot \mathrm{Attn}\big(\mathrm{mod}(\mathrm{LN}(x);\ \text{shift}_1, \text{scale}_1)\big)$$
# $$x \leftarrow x + \text{gate}_2 \odot \mathrm{MLP}\big(\mathrm{mod}(\mathrm{LN}(x);\ \text{shift}_2, \text{scale}_2)\big)$$
#
# The LayerNorms have no weights of their own (`elementwise_affine=False`, ε = 10⁻⁶). The "Zero" is
# the initialisation: that last linear layer starts at **zero**, so every gate is 0 and the whole
# block is the identity at step 0. Training starts from a network that passes its input straight
# through, which DiT found trains best.
#
# We build the block from scratch, keeping the official parameter names so the library's weights
# load into ours.

# %%
class MyAttention(nn.Module):
    """softmax(q·kᵀ/√d_h)·v over H heads, with one fused qkv projection (no relative bias: DiT)."""

    def __init__(self, D, H):
        super().__init__()
        self.H = H
        self.qkv = nn.Linear(D, 3 * D)
        self.proj = nn.Linear(D, D)

    def forward(self, x):
        B, N, D = x.shape
        q, k, v = rearrange(self.qkv(x), "b n (s h d) -> s b h n d", s=3, h=self.H)  # 3 × (B, H, N, d_h)
        weights = (q @ k.transpose(-2, -1) / math.sqrt(D // self.H)).softmax(dim=-1)  # (B, H, N, N)
        return self.proj(rearrange(weights @ v, "b h n d -> b n (h d)"))             # (B, N, D)


class MyMlp(nn.Module):
    """D → 4D → D with the tanh-approximated GELU."""

    def __init__(self, D):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class MyBlock(nn.Module):
    """adaLN-Zero block: c → (shift, scale, gate) × (attention, MLP)."""

    def __init__(self, D, H):
        super().__init__()
        self.attn, self.mlp = MyAttention(D, H), MyMlp(D)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))

    def forward(self, x, c):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c)[:, None].chunk(6, dim=-1)
        ln = lambda h: F.layer_norm(h, h.shape[-1:], eps=1e-6)
        x = x + gate1 * self.attn(ln(x) * (1 + scale1) + shift1)
        return x + gate2 * self.mlp(ln(x) * (1 + scale2) + shift2)


# %% [markdown]
# ## Check against the library
# Copy the library block's weights into ours (the names match, so `strict=True` works) and compare
# outputs. A freshly initialised block has zero gates, which would make any two blocks agree, so we
# give the adaLN layer random weights first.

# %%
lib_block = layers.Block(D, num_heads=4)
nn.init.normal_(lib_block.adaLN_modulation[-1].weight, std=0.02)
my_block = MyBlock(D, 4)
my_block.load_state_dict(lib_block.state_dict(), strict=True)

h = tokens + pos                                              # (B, N, D): what the first block receives
torch.testing.assert_close(my_block(h, c), lib_block(h, c), atol=1e-5, rtol=1e-5)

# adaLN-Zero: with the official init the block is exactly the identity.
zero_block = layers.Block(D, num_heads=4)
nn.init.zeros_(zero_block.adaLN_modulation[-1].weight)
nn.init.zeros_(zero_block.adaLN_modulation[-1].bias)
assert torch.equal(zero_block(h, c), h)

# %% [markdown]
# The same holds for a whole model: every block's gates and the final layer start at zero, so a new
# DiT predicts ε̂ = 0 (and v = 0) for any input.

# %%
from mdt_teach.model_size import count_params
from mdt_teach.models import build_model

tiny_dit = build_model("DiT-T/4")
out = tiny_dit(x, torch.tensor([1, 2, 3, 4]), y)
assert out.abs().max() == 0

# %% [markdown]
# ## DiT-XL/2 has 675,129,632 parameters
# Count one block: qkv (3D² + 3D), proj (D² + D), MLP (4D² + 4D + 4D² + D) and adaLN (6D² + 6D) make
# **18D² + 15D**. Around the `depth` blocks sit the patch embedding (C·p²·D + D), the position table
# (N·D, frozen), the timestep MLP (256·D + D + D² + D), the label table (1001·D) and the final layer
# (2D² + 2D for its adaLN, D·p²·C_out + p²·C_out for its linear):
#
# $$P = \text{depth}\,(18D^2 + 15D) + (C p^2 + 1)D + N D + (D^2 + 258D) + 1001D + (2D^2 + 2D) + (D + 1)\,p^2 C_{out}$$
#
# We build DiT-XL/2 on PyTorch's `meta` device — shapes without memory, so this costs nothing — and
# let the library count.

# %%
def dit_params(depth, D, C=4, p=2, N=256, classes=1000):
    """Closed-form parameter count of DiT with learn_sigma (C_out = 2C)."""
    c_out = 2 * C
    return (depth * (18 * D**2 + 15 * D) + (C * p * p + 1) * D + N * D + (D**2 + 258 * D)
            + (classes + 1) * D + (2 * D**2 + 2 * D) + (D + 1) * p * p * c_out)


with torch.device("meta"):
    dit_xl = build_model("DiT-XL/2")
n_xl = count_params(dit_xl)
assert n_xl == dit_params(28, 1152) == 675_129_632
assert count_params(dit_xl, trainable=True) == n_xl - 256 * 1152   # the sin-cos table is frozen in DiT
assert count_params(tiny_dit) == dit_params(6, 128, C=3, p=4, N=64, classes=4)

# %%
# NBVAL_CHECK_OUTPUT
print("tokens", tuple(tokens.shape), "| positions", tuple(pos.shape), "| t features", tuple(timestep_features(t).shape))
print("condition c", tuple(c.shape), "| block output", tuple(my_block(h, c).shape))
print(f"DiT-XL/2 parameters: {n_xl:,} (trainable {count_params(dit_xl, trainable=True):,})")
print(f"DiT-T/4 parameters: {count_params(tiny_dit):,}")

# %% [markdown]
# ## Summary
# - Patchify = one strided conv: (B, C, H, W) → (B, N, D), tokens row-major.
# - Positions: a fixed 2-D sin-cos table, column half first, sin before cos; time: 256 features, cos
#   before sin, then an MLP; class: a table with an extra **null** row for CFG.
# - c = t_emb + y_emb drives every block through adaLN: six vectors (shift, scale, gate) × 2.
# - adaLN-Zero initialises the gates (and the final layer) to zero: each block starts as the identity
#   and a new model outputs zeros.
# - DiT-XL/2: 28 blocks of 18D² + 15D plus the embedders and head = 675,129,632 parameters.
#
# ## Exercises
# 1. Swap the two halves of `sincos_table` (row first). Does the library check still pass? Would the
#    model train any worse from scratch? Why does it matter anyway?
# 2. What fraction of DiT-XL/2's parameters sit in the adaLN layers?
# 3. Give `zero_block` non-zero **shift** and **scale** but keep the gates at zero. Is it still the identity?
# 4. Build `build_model("DiT-T/4")`, the tiny DiT the later lessons train on smileys. How many rows does
#    its label table (`y_embedder.embedding_table`) have, and which row is the null class?

# %% [markdown]
# <details><summary>Solutions</summary>
#
# 1. No, the check fails: the layout differs. From scratch it would train the same (the network sees a
#    fixed permutation of channels), but the published checkpoints were trained with the official
#    layout, so loading them would scramble every token's position.
# 2. Each block's adaLN layer has 6D² + 6D parameters: 28·(6·1152² + 6·1152) ≈ 223M of 675M, about a third.
# 3. Yes: every residual branch is multiplied by its gate, so shift and scale only change what the
#    zeroed gate multiplies. Set `zero_block.adaLN_modulation[-1].bias.data[:2*D] = 1` and rerun the assert.
# 4. The tiny presets have `num_classes=4` (the four smiley moods), so the table has 4 + 1 = 5 rows and the
#    null class is the last one, index 4 (`model.y_embedder.num_classes`).
#
# </details>
