"""Layers: the official layouts, relative bias gathering, attention vs a by-hand softmax.

Each layout test names the function of the official `masked_diffusion/models.py` (sail-sg/MDT) it follows.
"""
import math

import pytest
import torch

from mdt_teach.layers import (Attention, Block, LabelEmbedder, explicit_attention, PatchEmbed, RelativePositionBias, modulate,
                              relative_position_index, sincos_2d, timestep_embedding, unpatchify)


def test_sincos_layout_at_row3_col7():
    """[sin(q·ω), cos(q·ω), sin(r·ω), cos(r·ω)], column q first, ω_k = 10000^(-k/(D/4)) (`get_2d_sincos_pos_embed`)."""
    D, G, r, q = 384, 16, 3, 7
    table = sincos_2d(D, G)
    assert table.shape == (G * G, D) and table.dtype == torch.float32
    row = table[r * G + q]
    quarter = D // 4
    for k in (0, 1, 17, quarter - 1):
        omega = 1.0 / 10000 ** (k / quarter)
        assert row[k].item() == pytest.approx(math.sin(q * omega), abs=1e-6)
        assert row[quarter + k].item() == pytest.approx(math.cos(q * omega), abs=1e-6)
        assert row[2 * quarter + k].item() == pytest.approx(math.sin(r * omega), abs=1e-6)
        assert row[3 * quarter + k].item() == pytest.approx(math.cos(r * omega), abs=1e-6)


def test_sincos_rejects_width_not_multiple_of_4():
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(6, 4)


def test_timestep_features_are_cos_then_sin():
    """256 features, cos in 0..127, sin in 128..255, f_k = exp(-ln(1e4)·k/128), raw integer t.

    Official `TimestepEmbedder.timestep_embedding`.
    """
    t = torch.tensor([0, 500, 999])
    emb = timestep_embedding(t, 256)
    assert emb.shape == (3, 256)
    for k in (0, 5, 127):
        f = math.exp(-math.log(10000) * k / 128)
        assert emb[1, k].item() == pytest.approx(math.cos(500 * f), abs=2e-4)
        assert emb[1, 128 + k].item() == pytest.approx(math.sin(500 * f), abs=2e-4)
    assert torch.equal(emb[0, :128], torch.ones(128)) and torch.equal(emb[0, 128:], torch.zeros(128))


def test_relative_index_formula_and_range():
    """idx = (r_i − r_j + G − 1)(2G − 1) + (q_i − q_j + G − 1), range 0..960 for G = 16 (`RelativePositionBias`)."""
    G = 16
    index = relative_position_index(G)
    assert index.shape == (256, 256) and index.dtype == torch.int64
    assert index.min().item() == 0 and index.max().item() == 960
    for i, j in [(0, 0), (0, 255), (255, 0), (17, 200), (55, 3), (128, 129)]:
        ri, qi, rj, qj = i // G, i % G, j // G, j % G
        assert index[i, j].item() == (ri - rj + G - 1) * (2 * G - 1) + (qi - qj + G - 1)
    assert torch.all(index.diagonal() == 15 * 31 + 15)


def test_bias_table_shape_and_persistent_buffer():
    rel = RelativePositionBias(16, 6)
    state = rel.state_dict()
    assert list(state) == ["relative_position_bias_table", "relative_position_index"]
    assert state["relative_position_bias_table"].shape == (964, 6)
    assert state["relative_position_index"].dtype == torch.int64
    assert rel(None).shape == (6, 256, 256)
    assert 0.01 < rel.relative_position_bias_table.std().item() < 0.03    # trunc-normal std 0.02


def test_gathered_bias_equals_slicing_the_full_bias():
    torch.manual_seed(0)
    rel = RelativePositionBias(8, 4)
    full = rel(None)                                       # (H, N, N)
    ids_keep = torch.stack([torch.randperm(64)[:40] for _ in range(3)])   # (B, K), shuffled order
    gathered = rel(ids_keep)                               # (B, H, K, K)
    assert gathered.shape == (3, 4, 40, 40)
    for b in range(3):
        sliced = full[:, ids_keep[b]][:, :, ids_keep[b]]
        assert torch.equal(gathered[b], sliced)


def _attention_by_hand(attn: Attention, x, bias):
    """softmax(q·kᵀ/√d_h + bias)·v, heads laid out as (3, H, d_h) in the qkv output (official `Attention.forward`)."""
    B, N, D = x.shape
    H, dh = attn.num_heads, attn.head_dim
    qkv = attn.qkv(x).reshape(B, N, 3, H, dh).permute(2, 0, 3, 1, 4)
    logits = qkv[0] @ qkv[1].transpose(-2, -1) / math.sqrt(dh)
    if bias is not None:
        logits = logits + bias
    out = (logits.softmax(-1) @ qkv[2]).transpose(1, 2).reshape(B, N, D)
    return attn.proj(out)


def test_attention_matches_by_hand_softmax_full_and_masked():
    torch.manual_seed(0)
    attn = Attention(32, 4, grid_size=4)
    x = torch.randn(2, 16, 32)
    torch.testing.assert_close(attn(x), _attention_by_hand(attn, x, attn.rel_pos_bias()), atol=1e-5, rtol=1e-5)
    ids_keep = torch.stack([torch.randperm(16)[:9] for _ in range(2)])
    x_kept = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, 32))
    expected = _attention_by_hand(attn, x_kept, attn.rel_pos_bias(ids_keep))
    torch.testing.assert_close(attn(x_kept, ids_keep), expected, atol=1e-5, rtol=1e-5)
    plain = Attention(32, 4)                               # DiT attention: no bias, no rel_pos_bias keys
    assert all("rel_pos_bias" not in k for k in plain.state_dict())
    torch.testing.assert_close(plain(x), _attention_by_hand(plain, x, None), atol=1e-5, rtol=1e-5)


def test_explicit_attention_switch_matches_the_fused_kernel_and_keeps_weights():
    """The official explicit softmax form (one switch for the GPU benchmark and attention maps) = the fused path."""
    torch.manual_seed(0)
    attn = Attention(32, 4, grid_size=4)
    x = torch.randn(2, 16, 32)
    ids_keep = torch.stack([torch.randperm(16)[:9] for _ in range(2)])
    x_kept = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, 32))
    fused = attn(x), attn(x_kept, ids_keep)
    with explicit_attention(keep_weights=True):
        explicit = attn(x), attn(x_kept, ids_keep)
        assert attn.weights.shape == (2, 4, 9, 9)
        torch.testing.assert_close(attn.weights.sum(-1), torch.ones(2, 4, 9))
    assert not Attention.explicit and not Attention.keep_weights     # restored on exit
    for a, b in zip(fused, explicit):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_relative_bias_receives_gradient_through_sdpa():
    torch.manual_seed(0)
    attn = Attention(16, 2, grid_size=4)
    attn(torch.randn(2, 16, 16)).square().sum().backward()
    grad = attn.rel_pos_bias.relative_position_bias_table.grad
    assert grad.abs()[:49].sum() > 0 and torch.all(grad[49:] == 0)    # the 3 BEiT leftover rows are unused


def test_patch_embed_is_row_major():
    embed = PatchEmbed(16, 4, 3, 8)
    assert [k for k in embed.state_dict()] == ["proj.weight", "proj.bias"]
    with torch.no_grad():
        embed.proj.bias.zero_()
    x = torch.zeros(1, 3, 16, 16)
    r, q = 2, 1
    x[0, :, r * 4:(r + 1) * 4, q * 4:(q + 1) * 4] = 1.0
    tokens = embed(x)
    assert tokens.shape == (1, 16, 8)
    nonzero = tokens.abs().sum(-1)[0].nonzero().flatten().tolist()
    assert nonzero == [r * 4 + q]


def test_label_embedder_null_row_and_dropout():
    emb = LabelEmbedder(4, 8, 0.1)
    assert emb.embedding_table.num_embeddings == 5
    assert LabelEmbedder(4, 8, 0.0).embedding_table.num_embeddings == 4
    labels = torch.arange(4).repeat(50)
    torch.manual_seed(3)
    out = emb.token_drop(labels)
    torch.manual_seed(3)
    expected = torch.where(torch.rand(200) < 0.1, 4, labels)   # the CPU coin flips of the official code
    assert torch.equal(out, expected) and 0 < (out == 4).sum() < 60
    always = LabelEmbedder(4, 8, 1.0)
    torch.testing.assert_close(always(labels, train=True), always.embedding_table.weight[4].expand(200, 8))
    torch.testing.assert_close(always(labels, train=False), always.embedding_table(labels))


def test_block_with_zero_adaln_is_identity_and_skip_linear_fuses_concat():
    torch.manual_seed(0)
    block = Block(16, 2, grid_size=4, skip=True)
    torch.nn.init.zeros_(block.adaLN_modulation[-1].weight)
    torch.nn.init.zeros_(block.adaLN_modulation[-1].bias)
    x, skip, c = torch.randn(2, 16, 16), torch.randn(2, 16, 16), torch.randn(2, 16)
    torch.testing.assert_close(block(x, c, skip=skip), block.skip_linear(torch.cat([x, skip], -1)))
    assert block.skip_linear.weight.shape == (16, 32)


def test_modulate_formula():
    x, shift, scale = torch.randn(2, 3, 4), torch.randn(2, 4), torch.randn(2, 4)
    torch.testing.assert_close(modulate(x, shift, scale), x * (1 + scale[:, None]) + shift[:, None])


def test_unpatchify_orders_outputs_pixel_row_col_channel():
    """Token (r, q), output index (pr·p + pc)·C + ch → pixel (ch, r·p + pr, q·p + pc) (official `MDTv2.unpatchify`)."""
    p, C, G = 2, 3, 4
    x = torch.arange(G * G * p * p * C, dtype=torch.float32).reshape(1, G * G, p * p * C)
    img = unpatchify(x, p, C)
    assert img.shape == (1, C, G * p, G * p)
    for r, q, pr, pc, ch in [(0, 0, 0, 0, 0), (1, 2, 1, 0, 2), (3, 3, 1, 1, 1)]:
        assert img[0, ch, r * p + pr, q * p + pc] == x[0, r * G + q, (pr * p + pc) * C + ch]
