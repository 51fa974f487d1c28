"""DiT / MDT / MDTv2: official parameter counts and state_dict key order, init, masking behaviour, CFG, errors.

Parameter counts and FLOPs are those of the official classes (docs/model_sizes.md says how they were counted).
"""
import pytest
import torch

import mdt_teach.models as models
from mdt_teach.layers import sincos_2d
from mdt_teach.model_config import MODEL_PRESETS
from mdt_teach.model_size import count_flops, count_params
from mdt_teach.models import MDT, MDTv2, build_model, from_config
from mdt_teach.guidance import cfg_scale_at

TINY = ["DiT-T/4", "MDT-T/4", "MDTv2-T/4"]

# (preset, overrides, total params, inference params), counted on the official classes (docs/model_sizes.md)
MDT_COUNTS = [
    ("MDTv2-S/2", dict(decode_layer=6), 38_454_872, 35_788_736),
    ("MDTv2-S/2", dict(decode_layer=4), 38_159_576, 35_493_440),
    ("MDTv2-B/2", dict(decode_layer=6), 152_112_272, 141_471_584),
    ("MDTv2-B/2", dict(decode_layer=4), 150_931_856, 140_291_168),
    ("MDTv2-L/2", dict(decode_layer=4), 507_015_776, 488_109_600),
    ("MDTv2-XL/2", dict(decode_layer=4), 742_263_904, 718_342_176),
    ("MDT-S/2", dict(), 35_797_208, 33_131_072),
    ("MDT-B/2", dict(), 141_488_528, 130_847_840),
    ("MDT-L/2", dict(), 477_641_312, 458_735_136),
    ("MDT-XL/2", dict(), 699_778_144, 675_856_416),
]
DIT_COUNTS = [("DiT-S/2", 32_963_360, 32_865_056), ("DiT-B/2", 130_512_416, 130_315_808),
              ("DiT-L/2", 458_102_816, 457_840_672), ("DiT-XL/2", 675_129_632, 674_834_720)]


def _inputs(model, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = model.input_size
    x = torch.randn(batch, model.in_channels, s, s, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    y = torch.randint(0, model.num_classes, (batch,), generator=g)
    return x, t, y


def _randomize(model, seed=0, std=0.05):
    """Move every parameter off its (partly zero) init so outputs depend on everything."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
    return model


@pytest.mark.parametrize("name, overrides, total, inference", MDT_COUNTS)
def test_mdt_parameter_counts_match_official(name, overrides, total, inference):
    with torch.device("meta"):
        model = build_model(name, **overrides)
    assert count_params(model) == total
    assert count_params(model, inference=True) == inference


@pytest.mark.parametrize("name, total, trainable", DIT_COUNTS)
def test_dit_parameter_counts_match_official(name, total, trainable):
    with torch.device("meta"):
        model = build_model(name)
    assert count_params(model) == total and count_params(model, inference=True) == total
    assert count_params(model, trainable=True) == trainable     # pos_embed is a frozen parameter


def test_flops_match_the_official_table():
    """DiT-S/2 6.06 and MDTv2-S/2 (dl 6) 6.74 GMACs per image; masked v2 pass at K=179 is cheaper.

    Values measured on the official classes: docs/model_sizes.md.
    """
    with torch.device("meta"):
        dit, v2 = build_model("DiT-S/2"), build_model("MDTv2-S/2")
    assert count_flops(dit) / 2e9 == pytest.approx(6.06, abs=0.01)
    assert count_flops(v2) / 2e9 == pytest.approx(6.74, abs=0.01)
    masked = count_flops(v2, enable_mask=True, mask_ratio=0.3) / 2e9
    assert masked == pytest.approx(6.20, abs=0.01)
    assert v2.mask_ratio == 0.3 and v2.mask_ratio_jitter == 0.2     # restored after counting


def test_the_cost_of_one_training_step_quoted_in_the_docs_is_computed():
    """docs/model_sizes.md's step costs — (full pass + masked pass) / DiT's full pass, forward FLOPs — each with
    its model size: MDT-XL/2 at K = 179, MDTv2-XL/2 at K = 153 (ratio 0.4, the middle of U[0.3, 0.5)) and
    MDTv2-S/2 (decode_layer 6) at K = 153, against DiT of the same size."""
    from pathlib import Path
    with torch.device("meta"):
        models = {n: build_model(n) for n in ("DiT-XL/2", "MDT-XL/2", "MDTv2-XL/2", "DiT-S/2", "MDTv2-S/2")}
    full = {n: count_flops(m) for n, m in models.items()}

    def step(name, dit, ratio):
        return (full[name] + count_flops(models[name], enable_mask=True, mask_ratio=ratio)) / full[dit]

    k153 = 1 - 153 / 256
    costs = {"MDT-XL/2": step("MDT-XL/2", "DiT-XL/2", 0.3), "MDTv2-XL/2": step("MDTv2-XL/2", "DiT-XL/2", k153),
             "MDTv2-S/2": step("MDTv2-S/2", "DiT-S/2", k153)}
    doc = " ".join((Path(__file__).resolve().parents[1] / "docs" / "model_sizes.md").read_text().split())
    assert (f"{costs['MDT-XL/2']:.2f}× for MDT-XL/2 at K = 179, {costs['MDTv2-XL/2']:.2f}× for MDTv2-XL/2 at "
            f"K = 153" in doc), costs
    assert f"MDTv2-S/2 with decode_layer 6 it is {costs['MDTv2-S/2']:.2f}× at K = 153" in doc, costs


def _expected_prefix_order(family, depth, dl):
    groups = {"DiT": [("blocks", depth)], "MDT": [("blocks", depth), ("sideblocks", 1)],
              "MDTv2": [("en_inblocks", (depth - dl) // 2), ("en_outblocks", (depth - dl) // 2),
                        ("de_blocks", dl), ("sideblocks", 1)]}[family]
    top = ["pos_embed"] + (["decoder_pos_embed", "mask_token"] if family != "DiT" else [])
    return top + ["x_embedder", "t_embedder", "y_embedder"] + [f"{g}.{i}" for g, n in groups for i in range(n)] \
        + ["final_layer"]


@pytest.mark.parametrize("name", TINY)
def test_state_dict_key_order(name):
    model = build_model(name)
    keys = list(model.state_dict())
    seen = []
    for key in keys:
        parts = key.split(".")
        prefix = ".".join(parts[:2]) if parts[0].endswith("blocks") else parts[0]
        if not seen or seen[-1] != prefix:
            seen.append(prefix)
    assert seen == _expected_prefix_order(model.family, model.depth, getattr(model, "decode_layer", 0))
    block = [k.split(".", 2)[2] for k in keys if k.startswith(("blocks.1.", "de_blocks.1."))]
    expected = ["attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias"]
    if model.family != "DiT":
        expected += ["attn.rel_pos_bias.relative_position_bias_table", "attn.rel_pos_bias.relative_position_index"]
    expected += ["mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
                 "adaLN_modulation.1.weight", "adaLN_modulation.1.bias"]
    if model.family == "MDTv2":
        expected += ["skip_linear.weight", "skip_linear.bias"]
    assert block == expected


@pytest.mark.parametrize("name", TINY)
def test_fresh_model_outputs_exact_zeros(name):
    model = build_model(name)
    x, t, y = _inputs(model)
    out = model(x, t, y)
    assert out.shape == (2, 6, 32, 32) and torch.equal(out, torch.zeros_like(out))
    masked = model(x, t, y, enable_mask=True)
    assert torch.equal(masked, torch.zeros_like(masked))


def test_init_rules():
    torch.manual_seed(0)
    model = build_model("MDTv2-T/4")
    table = sincos_2d(128, 8)[None]
    assert torch.equal(model.pos_embed.data, table) and torch.equal(model.decoder_pos_embed.data, table)
    assert model.pos_embed.requires_grad and model.decoder_pos_embed.requires_grad
    for block in model.all_blocks():
        assert torch.all(block.adaLN_modulation[-1].weight == 0)
    bound = (6 / (3 * 128)) ** 0.5                               # xavier on Linear(2D → D), not zero
    skip = model.de_blocks[0].skip_linear.weight
    assert skip.abs().max() <= bound and skip.std() > 0.3 * bound
    assert 0.01 < model.mask_token.std() < 0.03 and model.mask_token.requires_grad
    assert 0.01 < model.y_embedder.embedding_table.weight.std() < 0.03
    dit = build_model("DiT-T/4")
    assert not dit.pos_embed.requires_grad and not hasattr(dit, "decoder_pos_embed")
    no_mask = build_model("MDT-T/4", mask_ratio=None)
    assert no_mask.mask_ratio is None and not no_mask.mask_token.requires_grad
    assert torch.all(no_mask.mask_token == 0)


def _masked_patch_probe(model, seed):
    """Which patches the seeded masked pass hides (same generator draws as the forward, eval mode)."""
    tokens = torch.zeros(1, model.x_embedder.num_patches, model.hidden_size)
    _, mask, _, _ = model.mask_tokens(tokens, torch.Generator().manual_seed(seed))
    return mask[0]


@pytest.mark.parametrize("name, reaches_output", [("MDT-T/4", False), ("MDTv2-T/4", True)])
def test_masked_content_reaches_output_only_in_v2(name, reaches_output):
    """v1 hides masked patches from the whole network, v2's decoder sees them via h0 (`MDT.forward`, `MDTv2.forward`).

    In the official MDTv2.forward every decoder block's skip is `input_skip`, the unmasked token sequence.
    """
    model = _randomize(build_model(name)).eval()
    x, t, y = _inputs(model, batch=1)
    mask = _masked_patch_probe(model, seed=5)
    n = int(mask.nonzero()[0])
    G, p = model.x_embedder.grid_size, model.patch_size
    x2 = x.clone()
    x2[0, :, (n // G) * p:(n // G + 1) * p, (n % G) * p:(n % G + 1) * p] += 3.0
    out1 = model(x, t, y, enable_mask=True, generator=torch.Generator().manual_seed(5))
    out2 = model(x2, t, y, enable_mask=True, generator=torch.Generator().manual_seed(5))
    diff = (out1 - out2).abs().max().item()
    assert (diff > 1e-3) if reaches_output else (diff == 0.0)
    unmasked = (model(x, t, y) - model(x2, t, y)).abs().max().item()
    assert unmasked > 1e-3                                      # without the mask the patch always matters


@pytest.mark.parametrize("name", ["MDT-T/4", "MDTv2-T/4"])
def test_side_interpolater_only_in_masked_pass(name):
    model = _randomize(build_model(name))
    x, t, y = _inputs(model)
    model(x, t, y).square().mean().backward()
    assert all(p.grad is None for p in model.sideblocks.parameters()) and model.mask_token.grad is None
    assert model.blocks[0].attn.qkv.weight.grad is not None if name == "MDT-T/4" else True
    model.zero_grad(set_to_none=True)
    model(x, t, y, enable_mask=True).square().mean().backward()
    assert model.sideblocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.mask_token.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["MDT-T/4", "MDTv2-T/4"])
def test_ratio_zero_masked_pass_equals_unmasked_pass(name):
    """r = 0, jitter 0: every token kept but shuffled; gathered bias + unshuffle must make it a no-op."""
    model = _randomize(build_model(name, mask_ratio=0.0, mask_ratio_jitter=0.0)).eval()
    x, t, y = _inputs(model)
    torch.testing.assert_close(model(x, t, y, enable_mask=True), model(x, t, y), atol=1e-4, rtol=1e-4)


def test_seeded_masked_forward_draws_like_official(monkeypatch):
    """Global RNG order in a training-mode MDTv2 forward: label coins (CPU), ratio, then token noise."""
    model = build_model("MDTv2-T/4").train()
    x, t, y = _inputs(model, batch=3)
    seen = {}

    def spy(h, ratio, generator=None):
        out = models_random_masking(h, ratio, generator)
        seen.update(ratio=ratio, ids_keep=out[3])
        return out

    models_random_masking = models.random_masking
    monkeypatch.setattr(models, "random_masking", spy)
    torch.manual_seed(21)
    model(x, t, y, enable_mask=True)
    torch.manual_seed(21)
    torch.rand(3)                                               # label dropout coins
    rho = torch.rand(1) * 0.2 + 0.3
    ids = torch.argsort(torch.rand(3, 64), dim=1)[:, :int(64 * (1 - rho))]
    assert torch.equal(seen["ratio"], rho) and torch.equal(seen["ids_keep"], ids)


def test_mask_ratio_none_never_masks():
    model = _randomize(build_model("MDTv2-T/4", mask_ratio=None)).eval()
    x, t, y = _inputs(model)
    assert torch.equal(model(x, t, y, enable_mask=True), model(x, t, y))
    dit = _randomize(build_model("DiT-T/4")).eval()
    assert dit.mask_ratio is None and not dit.is_mdt
    assert torch.equal(dit(x, t, y, enable_mask=True), dit(x, t, y))


def test_presets_and_attributes():
    for name in ["DiT-S/2", "DiT-XL/8", "MDT-B/2", "MDTv2-L/2"] + TINY:
        assert name in MODEL_PRESETS
    assert MODEL_PRESETS["MDTv2-S/2"]["decode_layer"] == 6 and MODEL_PRESETS["MDTv2-XL/2"]["decode_layer"] == 4
    assert MODEL_PRESETS["MDT-XL/2"]["decode_layer"] == 2 and MODEL_PRESETS["MDT-S/2"]["mask_ratio"] == 0.3
    m = build_model("MDTv2-T/4")
    assert (m.in_channels, m.out_channels, m.learn_sigma, m.input_size, m.patch_size, m.num_classes) == \
        (3, 6, True, 32, 4, 4)
    assert m.is_mdt and m.mask_ratio == 0.3 and m.mask_ratio_jitter == 0.2 and m.decode_layer == 2
    assert build_model("MDT-T/4").mask_ratio_jitter == 0.0
    assert len(m.en_inblocks) == len(m.en_outblocks) == len(m.de_blocks) == 2 and len(m.sideblocks) == 1
    small = build_model("DiT-T/4", learn_sigma=False, num_classes=10, in_channels=1, input_size=16)
    assert small.out_channels == 1 and small.y_embedder.embedding_table.num_embeddings == 11
    rebuilt = from_config(m.config)
    assert list(rebuilt.state_dict()) == list(m.state_dict()) and rebuilt.config == m.config


def test_unknown_name_and_wrong_overrides():
    with pytest.raises(ValueError, match="valid names: .*MDTv2-T/4"):
        build_model("MDTv3-S/2")
    with pytest.raises(ValueError, match="DiT does not take mask_ratio"):
        build_model("DiT-S/2", mask_ratio=0.3)


@pytest.mark.parametrize("depth, dl", [(12, 3), (6, 1), (28, 5)])
def test_odd_encoder_depth_is_rejected(depth, dl):
    with pytest.raises(ValueError, match="is odd"):
        MDTv2(depth=depth, decode_layer=dl, hidden_size=64, num_heads=2, input_size=8)


def test_bad_configs():
    with pytest.raises(ValueError, match="not divisible by patch size 4"):
        build_model("DiT-T/4", input_size=30)
    with pytest.raises(ValueError, match="mask_ratio"):
        build_model("MDTv2-T/4", mask_ratio=1.2)
    with pytest.raises(ValueError, match="decode_layer"):
        MDT(depth=6, decode_layer=0, hidden_size=64, num_heads=2, input_size=8)


@pytest.mark.parametrize("name", TINY)
def test_bad_inputs_raise_one_sentence(name):
    model = build_model(name)
    x, t, y = _inputs(model)
    cases = [
        ((torch.randn(2, 3, 30, 30), t, y), "not divisible by patch size 4"),
        ((torch.randn(2, 3, 64, 64), t, y), "built for 32×32"),
        ((torch.randn(2, 4, 32, 32), t, y), "has 4 channels but this model takes 3"),
        ((x, t, torch.tensor([1, 5])), r"labels must lie in 0\.\.4"),
        ((x, t, torch.tensor([-1, 0])), r"labels must lie in 0\.\.4"),
        ((x, t[:, None], y), r"t must have shape \(2,\)"),
        ((x, t[:1], y), r"t must have shape \(2,\)"),
        ((x, t, y.float()), "integer class labels"),
        ((x[0], t, y), r"\(B, C, H, W\)"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            model(*args)
        assert "\n" not in str(info.value)
    model(x, t, torch.tensor([4, 4]))                            # the null class is a valid label


def test_power_cosine_weights_match_the_official_formula():
    """w_eff(t) for w = 3.8, from the formula in the official `MDTv2.forward_with_cfg` (2 decimals)."""
    t = torch.tensor([999, 750, 500, 250, 100, 0])
    for pow_, row in [(4.0, [1.00, 1.00, 1.03, 1.64, 3.06, 3.80]), (1.0, [1.00, 1.41, 2.40, 3.39, 3.73, 3.80]),
                      (0.01, [3.77, 3.80, 3.80, 3.80, 3.80, 3.80])]:
        got = cfg_scale_at(t, 3.8, pow_)
        assert got.tolist() == pytest.approx(row, abs=0.006)
    assert cfg_scale_at(t, 3.8, 0.0).tolist() == pytest.approx([3.8] * 6)   # DiT's constant scale


def test_forward_with_cfg_guides_three_channels_with_power_cosine():
    model = _randomize(build_model("MDTv2-T/4")).eval()
    x, t, y = _inputs(model)
    xx, tt = torch.cat([x, x]), torch.cat([t, t])
    yy = torch.cat([y, torch.full_like(y, model.num_classes)])
    out = model.forward_with_cfg(xx, tt, yy, cfg_scale=4.0, scale_pow=1.0)
    raw = model(xx, tt, yy)
    w = cfg_scale_at(t, 4.0, 1.0).view(-1, 1, 1, 1)
    guided = raw[2:, :3] + w * (raw[:2, :3] - raw[2:, :3])
    torch.testing.assert_close(out[:2, :3], guided, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[2:, :3], guided, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, 3:], raw[:, 3:])
    assert torch.equal(model.forward_with_cfg(xx, tt, yy), raw)
    four = _randomize(build_model("MDTv2-T/4", in_channels=4)).eval()
    x4 = torch.randn(4, 4, 32, 32)
    all_channels = four.forward_with_cfg(x4, tt, yy, cfg_scale=4.0, scale_pow=1.0, guided_channels=None)
    assert torch.equal(all_channels[:2, :4], all_channels[2:, :4])        # all 4 ε channels guided
    assert not torch.equal(all_channels[:2, 4:], all_channels[2:, 4:])    # v channels keep cond / uncond
    with pytest.raises(ValueError, match="even size"):
        model.forward_with_cfg(x[:1], t[:1], y[:1], cfg_scale=4.0)
