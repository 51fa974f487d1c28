# %% [markdown]
# # 05 · MDTv2: long and dense shortcuts
# *A U-Net inside the encoder, the noisy input fed to every decoder block — and what that costs.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mdt-teach/mdt-teach/blob/main/notebooks/05_mdtv2_shortcuts.ipynb)

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
# MDTv2 keeps MDT's masked second pass and side-interpolater (lesson 04) but rewires the blocks:
# - the encoder becomes a small **U-Net**: `en_inblocks` push their outputs on a stack, `en_outblocks`
#   pop them (last in, first out) and fuse them with a **long skip** `skip_linear(concat[h, skip])`;
# - every decoder block fuses the encoder's input tokens h0 through a **dense input shortcut**
#   `skip_linear(concat[h, h0])`.
#
# The second change has a consequence the paper does not spell out: in the masked pass, the v2 decoder
# still *sees* the hidden tokens. We measure it. Finally a table of parameters and FLOPs for DiT, MDT
# and MDTv2 at every size, counted by the library.
#
# Paper: MDTv2 (the revised arXiv version of the MDT paper), its improved macro-network; code: the
# `MDTv2` class on the official repository's `main` branch.
#
# Read along: [MDTv2](https://arxiv.org/abs/2303.14389) (arXiv 2303.14389) (the revised version);
# [`masked_diffusion/models.py`](https://github.com/sail-sg/MDT/blob/main/masked_diffusion/models.py)
# `MDTv2.forward`.

# %% [markdown]
# ## The map
# What MDTv2 changes (orange): the encoder splits into in- and out-blocks joined by long skips, and the
# dense shortcut carries h0 — every token's noisy input, the hidden ones included — to every decoder
# block. That arc is why, in the masked pass, the v2 decoder still reads what the encoder never saw.

# %%
import matplotlib.pyplot as plt

from mdt_teach.viz.architecture import render_architecture

render_architecture(highlight=("encoder", "long_skips", "dense_shortcut"), kinds=("mdt", "mdtv2"),
                    title="lesson 05 builds MDTv2's shortcuts (orange)")
plt.show()

# %%
import torch

from mdt_teach.data import smileys_batch
from mdt_teach.diffusion import GaussianDiffusion
from mdt_teach.masking import draw_mask_ratio, random_masking
from mdt_teach.model_size import count_flops, count_params
from mdt_teach.models import build_model
from mdt_teach.lessons import masked_forward


def randomize(model, std=0.05, seed=0):
    """Add noise to every weight, so the zero-initialised gates open and the blocks do something."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * std)
    return model.eval()


v2 = randomize(build_model("MDTv2-T/4"))          # depth 6, decode_layer 2 → 2 in + 2 out + 2 decoder blocks
diffusion = GaussianDiffusion()
x0, y = smileys_batch(4, seed=5)
t = torch.tensor([50, 300, 600, 900])
x_t = diffusion.q_sample(x0, t, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)))
print("blocks: in", len(v2.en_inblocks), "| out", len(v2.en_outblocks), "| decoder", len(v2.de_blocks),
      "| side", len(v2.sideblocks))

# %% [markdown]
# ## 1 · Long skips: a LIFO stack
# With half = (depth − decode_layer) / 2, in-block i pushes its output; out-block j pops, so it pairs with
# in-block half − 1 − j. The first out-block pops the output of the **last** in-block — which is also
# its own input, so it concatenates h with itself. Each skip block fuses first, then runs as usual:
#
# $$h \leftarrow W_{\text{skip}}\,[h;\ s] + b = W_h h + W_s s + b,\qquad
# h \leftarrow \mathrm{Block}(h, c)$$
#
# ## 2 · The dense input shortcut
# After the hand-off (side-interpolater in the masked pass, `+ decoder_pos_embed` otherwise) every
# decoder block fuses the **same** h0 = PatchEmbed(x_t) + pos_embed — the full, unmasked token sequence.

# %%
def my_v2_forward(model, x_t, t, y, generator=None):
    """MDTv2: in-blocks push, out-blocks pop (long skips), hand-off, decoder fuses h0 every block."""
    h0 = model.x_embedder(x_t) + model.pos_embed                          # (B, N, D)
    c = model.t_embedder(t) + model.y_embedder(y, train=False)            # (B, D)
    h, ids_keep = h0, None
    if generator is not None:                                             # the masked pass
        ratio = draw_mask_ratio(model.mask_ratio, model.mask_ratio_jitter, "cpu", generator)
        h, mask, ids_restore, ids_keep = random_masking(h0, ratio, generator)  # (B, K, D)
    stack = []
    for block in model.en_inblocks:
        h = block(h, c, ids_keep=ids_keep)
        stack.append(h)
    pairs = []
    for j, block in enumerate(model.en_outblocks):
        skip = stack.pop()                                                # last in, first out
        pairs.append(skip is h)                                           # True only for j = 0
        h = block(h, c, skip=skip, ids_keep=ids_keep)                     # long U-Net skip
    if ids_keep is None:
        h = h + model.decoder_pos_embed                                   # (B, N, D)
    else:
        h = model.forward_side_interpolater(h, c, mask, ids_restore)      # (B, N, D), lesson 04
    for block in model.de_blocks:
        h = block(h, c, skip=h0)                                          # dense input shortcut
    return model.head(h, c), pairs


with torch.no_grad():
    mine, pairs = my_v2_forward(v2, x_t, t, y)
    torch.testing.assert_close(mine, v2(x_t, t, y), atol=1e-5, rtol=1e-5)
    mine_masked, _ = my_v2_forward(v2, x_t, t, y, torch.Generator().manual_seed(7))
    lib_masked = v2(x_t, t, y, enable_mask=True, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(mine_masked, lib_masked, atol=1e-5, rtol=1e-5)
assert pairs == [True, False]                     # out-block 0 fuses the last in-block's output with itself

# skip_linear by hand: one matrix on the concatenation = two matrices on the parts.
blk = v2.de_blocks[0]
h_dec, h0 = torch.randn(4, 64, 128), v2.x_embedder(x_t) + v2.pos_embed
W = blk.skip_linear.weight                                                # (D, 2D)
torch.testing.assert_close(blk.skip_linear(torch.cat([h_dec, h0], -1)),
                           h_dec @ W[:, :128].T + h0 @ W[:, 128:].T + blk.skip_linear.bias, atol=1e-5, rtol=1e-5)

# %% [markdown]
# > **What the official code actually does.** The out-blocks pop the stack in LIFO order, so the
# > first out-block's skip is the tensor it already receives — the paper's U-Net equation has the same
# > self-pairing at the middle. The concatenation order is [h, skip], and `skip_linear` is
# > Xavier-initialised (not zero, not identity), so unlike the adaLN-Zero blocks a skip block is *not*
# > the identity at step 0. With an odd depth − decode_layer the official code silently drops one
# > encoder block; the library refuses to build it:

# %%
try:
    build_model("MDTv2-S/2", decode_layer=3)
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ## 3 · Does the decoder see the hidden tokens?
# Take the masked pass, change the pixels of one **hidden** patch, and measure how much the output at
# that patch moves. In MDT v1 the hidden token is dropped before the first block and nothing downstream
# ever reads it, so the answer must be exactly 0. In MDTv2 the dense shortcut hands h0 — all tokens,
# hidden ones included — to every decoder block.

# %%
v1 = randomize(build_model("MDT-T/4"))
p, G = 4, 8


def change_at_patch(model, token_kind, seed=3):
    """Max |Δ output| at one patch of image 0 after adding 1 to its pixels, in the seeded masked pass."""
    out, mask = masked_forward(model, x_t, t, y, seed=seed)
    n = int((mask[0] == (1 if token_kind == "hidden" else 0)).nonzero()[0])  # first such token
    r, q = divmod(n, G)
    rows, cols = slice(r * p, (r + 1) * p), slice(q * p, (q + 1) * p)
    x_pert = x_t.clone()
    x_pert[0, :, rows, cols] += 1.0
    out_pert, mask_pert = masked_forward(model, x_pert, t, y, seed=seed)
    assert torch.equal(mask_pert, mask)                                   # same seed, same mask
    return float((out_pert - out)[0, :, rows, cols].abs().max())


change = {(name, kind): change_at_patch(model, kind)
          for name, model in (("MDT v1", v1), ("MDTv2", v2)) for kind in ("hidden", "kept")}
assert change[("MDT v1", "hidden")] == 0.0                                # v1: masked content never arrives
assert change[("MDTv2", "hidden")] > 0 and change[("MDT v1", "kept")] > 0 and change[("MDTv2", "kept")] > 0
for (name, kind), value in change.items():
    print(f"{name:7s} perturb a {kind:6s} patch → output there moves by {value:.2f}")

# %% [markdown]
# > **What the official code actually does.** Masking hides tokens **only from the encoder**. The dense
# > shortcut gives every decoder block concat[h, h0] with h0 the full noisy input (with `pos_embed`, not
# > `decoder_pos_embed`), so the masked pass of v2 is an easier task than v1's: the decoder can read the
# > noisy hidden patches, and the encoder's context only has to help. The paper's equation says the same —
# > it writes the decoder input as B̂ ⊕ u, with u the full token set — even where its prose speaks more
# > loosely of hiding tokens from the network.

# %% [markdown]
# ### What that changes in the loss
# Lesson 04 measured where MDT v1's masked-pass loss comes from on its trained checkpoint. The same
# measurement on a trained MDTv2 (`data/lesson09_mdtv2_tiny.pt`, the checkpoint lesson 09 samples from):
# ε-MSE per element over the hidden and the visible tokens, masked pass against unmasked pass on the
# same x_t.

# %%
# NBVAL_CHECK_OUTPUT
from mdt_teach.lessons import load_lesson_checkpoint, masked_pass_errors

trained = {"MDT v1": load_lesson_checkpoint("lesson04_mdt_tiny.pt")[0],
           "MDTv2": load_lesson_checkpoint("lesson09_mdtv2_tiny.pt")[0]}
x_check, y_check = smileys_batch(64, seed=7)
errors = {(name, t_probe): masked_pass_errors(m, x_check, y_check, GaussianDiffusion(), t=t_probe, mask_ratio=0.3,
                                              seed=7)
          for name, m in trained.items() for t_probe in (100, 300)}
for (name, t_probe), e in errors.items():
    print(f"{name:6s} t = {t_probe}: masked pass MSE hidden {e['masked_hidden']:.3f}, visible "
          f"{e['masked_visible']:.3f} | unmasked pass at the same tokens {e['unmasked_hidden']:.3f}, "
          f"{e['unmasked_visible']:.3f}")
assert all(abs(errors[("MDT v1", t_)]["masked_hidden"] - 1) < 0.05 for t_ in (100, 300))   # unknowable
assert all(errors[("MDTv2", t_)]["masked_hidden"] < 0.1 for t_ in (100, 300))            # predictable again
assert errors[("MDTv2", 100)]["masked_hidden"] > errors[("MDTv2", 100)]["unmasked_hidden"]  # context missing

# %% [markdown]
# In v2 the hidden tokens' error drops from v1's irreducible 1 to nearly the visible tokens' — but not to
# what the unmasked pass reaches at the same tokens: without the encoder's view of them, the decoder
# denoises a hidden token from its own x_t and the context inferred from the visible tokens, and the gap
# is what the missing context costs. That gap is the masked pass's signal in MDTv2. With every piece now
# built, here is the course's account of the masked pass, the one place it is told in full (lesson 04
# measured v1's half; [docs/masked_pass.md](../docs/masked_pass.md) keeps it with the evidence):
#
# The masked pass hides 30–50% of the noisy tokens from the encoder and still asks for the noise of
# every token. In MDT v1 a hidden token's noise is unknowable — the model never reads its x_t — so it
# predicts ε̂ ≈ 0 there and learns only from the visible tokens, denoised in a context with holes that
# the side-interpolater fills with features inferred from the visible ones. In MDTv2 the dense
# shortcut hands the decoder every token's x_t, so a hidden token's noise becomes predictable again,
# from its own noisy input plus the context inferred from the visible tokens: that hidden-token error
# is the signal that rewards inferring one part from the others.
#
# Whether that signal makes the model relate the parts of a face sooner than DiT — the paper's story of
# the second eye — is not measured here: lesson 08 races the models, and lesson 11 tests the relation
# directly with the missing-eye probe ([docs/masked_pass.md](../docs/masked_pass.md) keeps what is
# measured apart from what is hypothesis).

# %% [markdown]
# ## 4 · Parameters and FLOPs at every size
# All counts below come from the library: models are built on PyTorch's `meta` device (shapes, no
# memory, no arithmetic), `count_params` sums `parameters()`, and `count_flops` runs one forward pass of
# a 256 × 256 image's latents (4 × 32 × 32, 2 × 2 patches → 256 tokens) under torch's FLOP counter.
# GFLOPs here are multiply-accumulates (FLOPs / 2), the unit of the DiT and MDT papers. "Inference"
# parameters leave out the side block and mask token, which sampling never uses.

# %%
def size_table(families=("DiT", "MDT", "MDTv2"), sizes=("S", "B", "L", "XL")):
    """{name: (total params, inference params, GFLOPs of one unmasked forward)} counted on the meta device."""
    rows = {}
    for family in families:
        for size in sizes:
            name = f"{family}-{size}/2"
            with torch.device("meta"):
                model = build_model(name)
            rows[name] = (count_params(model), count_params(model, inference=True), count_flops(model) / 2e9)
    return rows


table = size_table()
# v1 masks a fixed 0.3; v2 draws from U[0.3, 0.5): its lightest mask and its middle, 0.4.
with torch.device("meta"):
    masked_gflops = {(name, r): count_flops(build_model(name), enable_mask=True, mask_ratio=r) / 2e9
                     for name, r in (("MDT-XL/2", 0.3), ("MDTv2-XL/2", 0.3), ("MDTv2-XL/2", 0.4))}

# %% [markdown]
# Check against the official numbers (counted by instantiating the classes of the official
# `masked_diffusion/models.py`; `docs/model_sizes.md` records them) and against a closed form for MDTv2,
# built term by term like lesson 02's count for DiT. For D = hidden size, H heads, C = 4 latent channels,
# p = 2, a 16 × 16 grid, 1000 classes and learned σ:
#
# | piece | parameters |
# |---|---|
# | one block: qkv 3D² + 3D, proj D² + D, MLP 8D² + 5D, adaLN 6D² + 6D | 18D² + 15D |
# | its relative-bias table: (2·16 − 1)² + 3 = 964 rows × H | 964H |
# | blocks with a bias: h in + h out + dl decoder + 1 side block | × (2h + dl + 1) |
# | one skip projection `skip_linear`: 2D → D | 2D² + D, × (h + dl) |
# | pos_embed + decoder_pos_embed (256 × D each, learned, both initialised to the sin-cos table) | 512D |
# | mask token | D |
# | patch embedding: a p × p conv from C = 4 channels, + bias | 16D + D = 17D |
# | timestep embedder: 256 → D → D | (256D + D) + (D² + D) = D² + 258D |
# | label table: 1000 classes + the null class | 1001D |
# | final layer: adaLN 2D² + 2D, linear D → p²·2C = 32, + bias | 2D² + 34D + 32 |

# %%
def mdtv2_params(depth, D, H, dl):
    """The table above, summed (C = 4, p = 2, learned σ, 1000 classes, G = 16)."""
    h = (depth - dl) // 2
    block, bias_table, skip = 18 * D**2 + 15 * D, 964 * H, 2 * D**2 + D
    stem = 512 * D + D + 17 * D + (D**2 + 258 * D) + 1001 * D          # pos embeds, mask token, embedders
    head = 2 * D**2 + 34 * D + 32
    return (2 * h + dl + 1) * (block + bias_table) + (h + dl) * skip + stem + head


assert table["DiT-XL/2"][0] == 675_129_632
assert table["MDT-XL/2"][:2] == (699_778_144, 675_856_416)
assert table["MDTv2-XL/2"][:2] == (742_263_904, 718_342_176) == (mdtv2_params(28, 1152, 16, 4), 718_342_176)
assert table["MDTv2-S/2"][0] == 38_454_872 == mdtv2_params(12, 384, 6, 6)
assert [round(table[n][2], 2) for n in ("DiT-S/2", "DiT-B/2", "DiT-L/2", "DiT-XL/2")] == [6.06, 23.01, 80.70, 118.62]
assert round(table["MDT-XL/2"][2], 2) == 118.62 and round(table["MDTv2-XL/2"][2], 2) == 129.49
assert [round(g, 2) for g in masked_gflops.values()] == [88.97, 99.99, 88.75]

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'model':12s} {'params':>13s} {'inference':>13s} {'GFLOPs':>8s}")
for name, (total, inference, gflops) in table.items():
    print(f"{name:12s} {total:13,d} {inference:13,d} {gflops:8.2f}")
print()
for (name, r), gflops in masked_gflops.items():
    full = table[name][2]
    print(f"{name}: masked pass (r = {r}, K = {int(256 * (1 - r))} of 256 kept) {gflops:.2f} GFLOPs; one training "
          f"step (both passes) = {(full + gflops) / table['DiT-XL/2'][2]:.2f}× a DiT-XL/2 step")
print("v1 hidden-patch change is exactly 0:", change[("MDT v1", "hidden")] == 0.0,
      "| v2 hidden-patch change > 0:", change[("MDTv2", "hidden")] > 0)

# %%
# Parameters and compute side by side, one group of bars per size (DiT and MDT v1 coincide at inference).
import numpy as np

sizes, families = ("S", "B", "L", "XL"), ("DiT", "MDT", "MDTv2")
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
for k, family in enumerate(families):
    names = [f"{family}-{size}/2" for size in sizes]
    pos = np.arange(len(sizes)) + (k - 1) * 0.27
    axes[0].bar(pos, [table[n][1] / 1e6 for n in names], width=0.27, label=family)
    axes[1].bar(pos, [table[n][2] for n in names], width=0.27, label=family)
for ax, label in zip(axes, ("inference parameters (M)", "GFLOPs per forward")):
    ax.set_xticks(np.arange(len(sizes)), [f"{s}/2" for s in sizes])
    ax.set_ylabel(label)
axes[0].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# > **What the official code actually does.** Tables elsewhere quote MDTv2-XL/2 at 676M parameters and
# > 119 GFLOPs — MDT v1's numbers. The v2 code with decode_layer 4 has 718.3M inference parameters
# > (742.3M in the checkpoint, side block and mask token included) and 129.5 GFLOPs: the 16 skip
# > projections add 2D² each and the 4-block decoder always runs on all 256 tokens. Also remember that
# > an MDT **training step** runs two forward passes: 1.75× the forward FLOPs of a DiT-XL/2 step for
# > MDT-XL/2 (K = 179), 1.93× for MDTv2-XL/2 at K = 179 and 1.84× at K = 153, the middle of its range
# > (printed above): speed-ups measured "per step" are not speed-ups per FLOP.

# %% [markdown]
# ## Summary
# - MDTv2's encoder is a U-Net: in-blocks push, out-blocks pop (LIFO); out-block j pairs with in-block
#   half − 1 − j, and the first out-block fuses its input with itself. Fusion = `skip_linear([h, skip])`.
# - Every decoder block fuses concat[h, h0] with h0 the full noisy token sequence: masking hides tokens
#   from the encoder only. Perturbing a hidden patch moves v1's output by exactly 0 and v2's by more.
# - At XL/2: DiT 675.1M / 118.6 GFLOPs, MDT 675.9M (inference) / 118.6, MDTv2 718.3M / 129.5; an MDT
#   training step costs 1.75× a DiT step at MDT-XL/2 (K = 179) and 1.84× at MDTv2-XL/2 (K = 153).
#
# ## Exercises
# 1. Which in-block does each out-block of MDTv2-XL/2 (12 in, 12 out) pair with? Print the pairs.
# 2. Replace `skip=h0` in the decoder of `my_v2_forward` by `skip=h`. Is the hidden-patch change now 0?
# 3. Use the closed form to find how many parameters the long skips and the dense shortcuts add to
#    MDTv2-XL/2 separately.
# 4. Compute the masked-pass GFLOPs of MDTv2-XL/2 at the other end of its ratio range (r = 0.5).

# %% [markdown]
# <details><summary>Solutions</summary>
#
# 1. `[(j, 11 - j) for j in range(12)]`: out-block 0 ↔ in-block 11 (itself), …, out-block 11 ↔ in-block 0.
# 2. Yes — then no block after the masking reads h0, exactly as in v1 (check with a copy of
#    `change_at_patch` that calls your function instead of `masked_forward`).
# 3. Each skip block adds 2D² + D = 2,655,360 parameters at D = 1152: 12 long skips ≈ 31.9M and
#    4 dense shortcuts ≈ 10.6M.
# 4. `count_flops(build_model("MDTv2-XL/2"), enable_mask=True, mask_ratio=0.5) / 2e9` on the meta
#    device ≈ 78 GFLOPs (K = 128).
#
# </details>
