"""Official checkpoints: a state_dict laid out as the official `masked_diffusion/models.py` and DiT `models.py` save
them (written here key by key) loads strictly; bad files give one clear error."""
import argparse

import pytest
import torch

from mdt_teach import cli
from mdt_teach.compat import infer_config, load_official, read_state_dict
from mdt_teach.models import build_model


def official_layout(family, depth, D, H, dl=None, G=16, C=4, p=2, classes=1000):
    """Ordered (key, shape) list of an official state_dict, written out independently of mdt_teach."""
    top = [("pos_embed", (1, G * G, D))]
    if family != "DiT":
        top += [("decoder_pos_embed", (1, G * G, D)), ("mask_token", (1, 1, D))]
    top += [("x_embedder.proj.weight", (D, C, p, p)), ("x_embedder.proj.bias", (D,)),
            ("t_embedder.mlp.0.weight", (D, 256)), ("t_embedder.mlp.0.bias", (D,)),
            ("t_embedder.mlp.2.weight", (D, D)), ("t_embedder.mlp.2.bias", (D,)),
            ("y_embedder.embedding_table.weight", (classes + 1, D))]

    def block(prefix, skip):
        keys = [("attn.qkv.weight", (3 * D, D)), ("attn.qkv.bias", (3 * D,)),
                ("attn.proj.weight", (D, D)), ("attn.proj.bias", (D,))]
        if family != "DiT":
            keys += [("attn.rel_pos_bias.relative_position_bias_table", ((2 * G - 1) ** 2 + 3, H)),
                     ("attn.rel_pos_bias.relative_position_index", (G * G, G * G))]
        keys += [("mlp.fc1.weight", (4 * D, D)), ("mlp.fc1.bias", (4 * D,)),
                 ("mlp.fc2.weight", (D, 4 * D)), ("mlp.fc2.bias", (D,)),
                 ("adaLN_modulation.1.weight", (6 * D, D)), ("adaLN_modulation.1.bias", (6 * D,))]
        if skip:
            keys += [("skip_linear.weight", (D, 2 * D)), ("skip_linear.bias", (D,))]
        return [(f"{prefix}.{k}", s) for k, s in keys]

    blocks = []
    if family == "MDTv2":
        h = (depth - dl) // 2
        groups = [("en_inblocks", h, False), ("en_outblocks", h, True), ("de_blocks", dl, True), ("sideblocks", 1, False)]
    else:
        groups = [("blocks", depth, False)] + ([("sideblocks", 1, False)] if family == "MDT" else [])
    for name, n, skip in groups:
        for i in range(n):
            blocks += block(f"{name}.{i}", skip)
    tail = [("final_layer.linear.weight", (p * p * 2 * C, D)), ("final_layer.linear.bias", (p * p * 2 * C,)),
            ("final_layer.adaLN_modulation.1.weight", (2 * D, D)), ("final_layer.adaLN_modulation.1.bias", (2 * D,))]
    return top + blocks + tail


def beit_index(G):
    """BEiT's relative index (arXiv 2106.08254), written as a plain double loop over token pairs."""
    N = G * G
    return torch.tensor([[(i // G - j // G + G - 1) * (2 * G - 1) + (i % G - j % G + G - 1) for j in range(N)]
                         for i in range(N)], dtype=torch.int64)


def synthetic_state(layout, G=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    index = beit_index(G)
    return {k: index.clone() if k.endswith("relative_position_index") else torch.randn(s, generator=g) * 0.02
            for k, s in layout}


@pytest.mark.parametrize("family, dl, entries", [("MDTv2", 6, 188), ("MDTv2", 4, 186), ("MDT", 2, 170)])
def test_official_layout_loads_strictly_for_s2(family, dl, entries):
    layout = official_layout(family, 12, 384, 6, dl=dl)
    assert len(layout) == entries
    state = synthetic_state(layout)
    model = load_official(state)
    cfg = model.config
    assert (cfg.family, cfg.input_size, cfg.patch_size, cfg.in_channels, cfg.hidden_size, cfg.depth,
            cfg.num_heads, cfg.num_classes, cfg.learn_sigma, cfg.decode_layer) == \
        (family, 32, 2, 4, 384, 12, 6, 1000, True, dl)
    assert cfg.mask_ratio == 0.3                                   # trained (non-zero) mask token
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == layout
    assert torch.equal(model.state_dict()["de_blocks.0.mlp.fc1.weight" if family == "MDTv2"
                                          else "blocks.3.mlp.fc1.weight"],
                       state["de_blocks.0.mlp.fc1.weight" if family == "MDTv2" else "blocks.3.mlp.fc1.weight"])
    assert not model.training
    ours = build_model(f"{family}-S/2", decode_layer=dl)
    ours.load_state_dict(state, strict=True)                       # the preset itself takes it strictly too


def test_loaded_model_matches_source_model_and_does_not_share_memory():
    torch.manual_seed(0)
    src = build_model("MDTv2-T/4")
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    src.eval()
    loaded = load_official(src.state_dict())
    x, t, y = torch.randn(2, 3, 32, 32), torch.tensor([5, 900]), torch.tensor([0, 3])
    torch.testing.assert_close(loaded(x, t, y), src(x, t, y))
    assert loaded.pos_embed.data_ptr() != src.pos_embed.data_ptr()


def test_dit_heads_and_frozen_pos_embed_and_v1_decode_layer():
    dit_state = synthetic_state(official_layout("DiT", 12, 384, 6))
    cfg, notes = infer_config(dit_state)
    assert cfg.family == "DiT" and cfg.num_heads == 6 and any("no head count" in n for n in notes)
    dit = load_official(dit_state)
    assert not dit.pos_embed.requires_grad
    v1 = synthetic_state(official_layout("MDT", 4, 128, 4, G=8, C=3, p=4, classes=4), G=8)
    v1["mask_token"].zero_()
    model = load_official(v1, decode_layer=3)
    assert model.decode_layer == 3 and model.mask_ratio is None and not model.mask_token.requires_grad


def test_wrapped_and_prefixed_dicts_unwrap_ema_first():
    state = build_model("DiT-T/4").state_dict()
    other = {k: torch.zeros_like(v) for k, v in state.items()}
    wrapped = {"model": other, "ema": {f"module.{k}": v for k, v in state.items()}, "opt": {}, "args": None}
    unwrapped = read_state_dict(wrapped)
    assert list(unwrapped) == list(state) and torch.equal(unwrapped["pos_embed"], state["pos_embed"])


def test_file_roundtrip_and_bad_files(tmp_path):
    state = build_model("MDT-T/4").state_dict()
    good = tmp_path / "good.pt"
    torch.save({"ema": state, "args": argparse.Namespace(model="MDT-T/4")}, good)
    assert load_official(good).config.family == "MDT"
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_official(truncated)
    foreign = tmp_path / "notes.txt"
    foreign.write_text("hello, not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_official(foreign)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_official(tmp_path / "missing.pt")
    pickled = tmp_path / "object.pt"
    torch.save({"pos_embed": torch.zeros(1), "extra": torch.nn.Linear(2, 2)}, pickled)
    with pytest.raises(ValueError, match="asks to rebuild Python objects .*torch.nn.modules.linear.Linear"):
        load_official(pickled)


def test_mismatched_state_dicts_name_the_problem():
    state = build_model("MDTv2-T/4").state_dict()
    dropped = {k: v for k, v in state.items() if not k.startswith("de_blocks.1.attn.proj")}
    with pytest.raises(ValueError, match="2 missing keys .*de_blocks.1.attn.proj.weight"):
        load_official(dropped)
    reshaped = dict(state, **{"en_inblocks.0.mlp.fc1.bias": torch.zeros(7)})
    with pytest.raises(ValueError, match="shape mismatch"):
        load_official(reshaped)
    corrupt = dict(state, **{"sideblocks.0.attn.rel_pos_bias.relative_position_index":
                             torch.zeros(64, 64, dtype=torch.int64)})
    with pytest.raises(ValueError, match="corrupt"):
        load_official(corrupt)
    with pytest.raises(ValueError, match="not a DiT or MDT checkpoint"):
        load_official({"weight": torch.zeros(3)})
    with pytest.raises(ValueError, match="not a tensor"):
        load_official({"pos_embed": "oops"})


def test_convert_cli_prints_config_and_saves_atomically(tmp_path, capsys):
    src = tmp_path / "v2.pt"
    torch.save(build_model("MDTv2-T/4").state_dict(), src)
    out = tmp_path / "sub" / "converted.pt"
    assert cli.main(["convert", str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "family: MDTv2" in printed and "decode_layer: 2" in printed and "loaded strictly" in printed
    assert out.is_file() and not list(out.parent.glob("*.tmp"))
    assert list(torch.load(out, weights_only=True)) == list(torch.load(src, weights_only=True))
    assert cli.main(["convert", str(tmp_path / "nope.pt")]) == 2
