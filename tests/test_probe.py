"""The missing-eye probe, inpainting and the eye-to-eye attention measure (issue: what masking teaches)."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mdt_teach.cli import main
from mdt_teach.data import smileys_batch
from mdt_teach.diffusion import GaussianDiffusion
from mdt_teach.models import build_model
from mdt_teach.data import part_masks, render_meta
from mdt_teach.painters import BLIND_PAINTERS, mirror
from mdt_teach.probe import (PROBE_SEED, attention_maps, chance_line, completed, dark_blob_in, hidden_tokens,
                             missing_eye_probe, other_colour, part_attention, wilson_interval)
from mdt_teach.sampling import inpaint, keep_from_tokens, repaint_schedule
from mdt_teach.images import save_grid

FACES = smileys_batch(64, seed=PROBE_SEED, meta=True)


class Oracle(nn.Module):
    """Knows the true faces (the world's generator): predicts exactly the noise that turns them into x_t."""

    in_channels, input_size, num_classes, patch_size = 3, 32, 4, 4

    def __init__(self, x0):
        super().__init__()
        self.x0, self.abar = x0, torch.tensor(GaussianDiffusion().alphas_cumprod, dtype=torch.float32)

    def forward(self, x, t, y):
        a = self.abar[t].view(-1, 1, 1, 1)
        eps = (x - a.sqrt() * self.x0[: len(x)]) / (1 - a).sqrt()
        return torch.cat([eps, torch.zeros_like(eps)], 1)


class FollowingOracle(Oracle):
    """Knows both versions of every face (the follow test's) and draws the one whose visible eye it sees:
    per face, the version whose left-eye pixels are nearer x_t's."""

    def __init__(self, x0_a, x0_b, left_eye):
        super().__init__(x0_a)
        self.x0_b, self.left_eye = x0_b, torch.from_numpy(left_eye)[:, None]

    def forward(self, x, t, y):
        a = self.abar[t].view(-1, 1, 1, 1)
        d_a = ((x - a.sqrt() * self.x0) ** 2 * self.left_eye).sum((1, 2, 3))
        d_b = ((x - a.sqrt() * self.x0_b) ** 2 * self.left_eye).sum((1, 2, 3))
        x0 = torch.where((d_b < d_a).view(-1, 1, 1, 1), self.x0_b, self.x0)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return torch.cat([eps, torch.zeros_like(eps)], 1)


class NoiseModel(Oracle):
    def forward(self, x, t, y):
        return torch.cat([torch.randn_like(x), torch.zeros_like(x)], 1)


def _usable(region):
    return FACES[0][hidden_tokens(FACES[2], region, 4)[1]]


@pytest.mark.parametrize("region", ["eye", "cheek"])
def test_an_oracle_completes_every_face_and_noise_none(region):
    oracle = missing_eye_probe(Oracle(_usable(region)), region, steps="10", resamples=1, faces=FACES)
    noise = missing_eye_probe(NoiseModel(_usable(region)), region, steps="10", resamples=1, faces=FACES)
    assert oracle.faces == noise.faces >= 20
    assert oracle.completed == 1.0 and noise.completed == 0.0
    assert oracle.completed_ci[0] > 0.85 and noise.completed_ci[1] < 0.15
    assert oracle.chance == noise.chance and set(oracle.chance) == set(BLIND_PAINTERS)
    if region == "eye":
        assert max(oracle.chance.values()) <= 0.15           # the painters' chance line, on the same faces
        assert oracle.follow == 0.0                           # knows one version only: cannot follow the other
    # the cheek control never counts as an eye on the true faces; the eye region always holds one
    assert oracle.eye_in_region == (1.0 if region == "eye" else 0.0)


def test_the_follow_test_needs_a_look_at_the_visible_eye():
    """1000 faces: a painter that copies the visible eye follows 100%; every relation-blind painter ≈ never."""
    images, _, meta = smileys_batch(1000, seed=PROBE_SEED, meta=True)
    hide, usable = hidden_tokens(meta, "eye", 4)
    images, meta = images[usable], {k: v[usable] for k, v in meta.items()}
    keep = 1 - keep_from_tokens(torch.from_numpy(hide[usable]), 4)
    meta_b = other_colour(meta)
    assert (meta_b["eye_color"] != meta["eye_color"]).any(-1).all()            # every face: another colour
    assert np.array_equal(hidden_tokens(meta_b, "eye", 4)[0], hide[usable])   # the same hidden tokens
    images_b = render_meta(meta_b)
    a = chance_line(images, meta, keep, "smileys", painters={"mirror": mirror})
    b = chance_line(images_b, meta_b, keep, "smileys", painters={"mirror": mirror})
    assert (a["mirror"] & b["mirror"]).all()
    blind_a, blind_b = chance_line(images, meta, keep, "smileys"), chance_line(images_b, meta_b, keep, "smileys")
    for painter in BLIND_PAINTERS:
        assert blind_a[painter].mean() <= 0.10, painter                        # the probe's chance line
        assert (blind_a[painter] & blind_b[painter]).mean() <= 0.01, painter   # follows: measured 0%


def test_an_oracle_that_sees_the_visible_eye_follows():
    images, labels, meta = FACES
    hide, usable = hidden_tokens(meta, "eye", 4)
    sub = {k: v[usable] for k, v in meta.items()}
    x0_b = render_meta(other_colour(sub))
    oracle = FollowingOracle(images[usable], x0_b, part_masks(sub)["eye_0"].astype(np.float32))
    r = missing_eye_probe(oracle, "eye", steps="10", resamples=1, faces=FACES)
    assert r.completed == 1.0 and r.follow == 1.0 and max(r.follow_chance.values()) <= 0.05


def test_hidden_regions_are_what_they_say():
    images, _, meta = FACES
    eye, usable = hidden_tokens(meta, "eye", 4)
    cheek, usable_cheek = hidden_tokens(meta, "cheek", 4)
    none, _ = hidden_tokens(meta, "none", 4)
    assert usable.mean() > 0.35 and not none.any()
    assert (eye[usable_cheek].sum(1) == cheek[usable_cheek].sum(1)).all()       # as many tokens
    assert not (eye & cheek)[usable_cheek].any()
    from mdt_teach.data import part_masks
    parts = part_masks(meta)
    px = keep_from_tokens(torch.from_numpy(cheek), 4)[:, 0].numpy() > 0.5
    assert not (px & (parts["eyes"] | parts["mouth"]))[usable_cheek].any()
    assert not dark_blob_in(images, px, parts["face"])[usable_cheek].any()       # plain skin on the real faces
    with pytest.raises(ValueError, match="unknown probe region"):
        hidden_tokens(meta, "nose", 4)
    # any eye can be the hidden one; every other eye, however many, must stay visible
    from mdt_teach.probe import token_cover
    left, usable_left = hidden_tokens(meta, "eye", 4, hide_eye=0)
    assert np.array_equal(left, token_cover(parts["eye_0"], 4)) and usable_left.mean() > 0.35
    three = {k: v.copy() for k, v in meta.items()}
    three["eye_centers"] = np.concatenate([meta["eye_centers"], meta["eye_centers"][:, 1:] + [1.0, 0.0]], 1)
    three["eye_radii"] = np.concatenate([meta["eye_radii"], meta["eye_radii"][:, 1:]], 1)
    three["eye_color"] = np.concatenate([meta["eye_color"], meta["eye_color"][:, 1:]], 1)
    _, usable_three = hidden_tokens(three, "eye", 4, hide_eye=2)      # a third eye on top of the right one
    assert not usable_three.any()                                     # its tokens touch eye 1: never usable
    with pytest.raises(ValueError, match="hide_eye 2 is not one of the faces' 2 eyes"):
        hidden_tokens(meta, "eye", 4, hide_eye=2)


def test_inpainting_keeps_the_known_region_exactly():
    torch.manual_seed(0)
    model = build_model("MDTv2-T/4", depth=2, hidden_size=32, num_heads=2).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    x, y = smileys_batch(3, seed=1)
    tokens = torch.zeros(3, 64, dtype=torch.bool)
    tokens[:, 18:22] = True
    keep = 1 - keep_from_tokens(tokens, 4)
    out = inpaint(model, x, keep, y, GaussianDiffusion(), steps="6", jump_length=2, resamples=2,
                  cfg_scale=2.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out * keep, x * keep)                  # exactly as given at t = 0
    assert (out - x).abs()[(keep == 0).expand_as(x)].mean() > 0.05   # and something new was drawn


def test_repaint_schedule():
    assert repaint_schedule(4) == [4, 3, 2, 1, 0]             # plain replacement: straight down
    path = repaint_schedule(6, jump_length=2, resamples=2)
    assert path[0] == 6 and path[-1] == 0
    downs = sum(b < a for a, b in zip(path, path[1:]))
    ups = sum(b > a for a, b in zip(path, path[1:]))
    assert ups == 4 and downs == 6 + 4                        # two jumps back up by 2, each walked down again
    assert all(abs(b - a) == 1 for a, b in zip(path, path[1:]))
    # RePaint's get_schedule_jump(t_T=6, n_sample=1, jump_length=2, jump_n_sample=2), worked by hand from its
    # loop, is [5, 4, 3, 2, 3, 4, 3, 2, 1, 0, 1, 2, 1, 0, -1] (timestep indices of x, -1 = clean); +1 gives levels
    assert path == [6, 5, 4, 3, 4, 5, 4, 3, 2, 1, 2, 3, 2, 1, 0]
    assert 0 not in path[:-1]                                 # the clean x0 is reached once, at the end


def test_part_attention_on_a_hand_built_pattern():
    w = torch.zeros(1, 1, 2, 4, 4)                            # (L, B, H, N, N)
    w[0, 0, 0, 0] = torch.tensor([0.1, 0.1, 0.5, 0.3])        # head 0: query 0 → keys
    w[0, 0, 1, 0] = torch.tensor([0.4, 0.4, 0.1, 0.1])        # head 1
    w[0, 0, :, 1] = torch.tensor([0.25, 0.25, 0.25, 0.25])    # query 1 is not asked about
    queries = torch.tensor([[True, False, False, False]])
    keys = torch.tensor([[False, False, True, True]])
    # per key token: head 0 (0.5 + 0.3) / 2 = 0.4, head 1 (0.1 + 0.1) / 2 = 0.1 → mean 0.25
    assert part_attention(w, queries, keys).tolist() == pytest.approx([0.25])


def test_attention_maps_of_a_model():
    model = build_model("MDTv2-T/4", depth=4, hidden_size=32, num_heads=2).eval()
    x, y = smileys_batch(2, seed=0)
    w = attention_maps(model, x, torch.tensor([10, 500]), y)
    assert w.shape == (4, 2, 2, 64, 64)                      # the side block does not run unmasked
    torch.testing.assert_close(w.sum(-1), torch.ones(4, 2, 2, 64))


def test_wilson_interval():
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and 0.1 < hi < 0.2
    lo, hi = wilson_interval(20, 20)
    assert hi == pytest.approx(1.0) and 0.8 < lo < 0.9


def test_inpaint_and_probe_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    model = build_model("MDTv2-T/4", depth=2, hidden_size=32, num_heads=2)
    torch.save(model.state_dict(), tmp_path / "official.pt")
    x, _ = smileys_batch(1, seed=0)
    save_grid(x, tmp_path / "face.png", nrow=1)
    mask = np.zeros((32, 32), np.uint8)
    mask[4:12, 16:24] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert main(["inpaint", "--ckpt", "official.pt", "--image", "face.png", "--hide", "mask.png", "--steps", "4",
                 "--resamples", "1", "--out", "o.png"]) == 0
    assert "64 of 1024 pixels redrawn" in capsys.readouterr().out
    assert Image.open("o.png").size == (4 * (3 * 33 + 1), 4 * 34)   # image, mask, result, shown at 4×
    assert main(["inpaint", "--ckpt", "official.pt", "--image", "face.png", "--hide-tokens", "9,10", "--steps", "4",
                 "--out", "p.png"]) == 0
    assert "32 of 1024 pixels redrawn" in capsys.readouterr().out
    assert main(["inpaint", "--ckpt", "official.pt", "--image", "face.png", "--hide-tokens", "99",
                 "--out", "q.png"]) == 2
    assert "--hide-tokens must lie in 0..63" in capsys.readouterr().err
    assert main(["probe", "--ckpt", "official.pt", "--n", "16", "--steps", "3", "--resamples", "1",
                 "--regions", "eye,none", "--attention", "--json", "probe.json"]) == 0
    out = capsys.readouterr().out
    assert "eye " in out and "none" in out and (tmp_path / "probe.json").exists()
    assert "chance line (relation-blind painters, same faces): independent" in out and "follows" in out
    assert "attention at t=100: left eye → right eye per token" in out          # one value per layer (2 here)
    import json
    record = json.loads((tmp_path / "probe.json").read_text())
    assert len(record["attention"]["400"]["other_eye"]) == 2 and set(record["regions"]) == {"eye", "none"}
    assert set(record["regions"]["eye"]["chance"]) == {"independent", "canonical", "context", "transplant"}
    assert record["regions"]["eye"]["follow"] is not None and record["world"] == "smileys"
    assert main(["probe", "--ckpt", "official.pt", "--regions", "nose"]) == 2


def test_inpaint_cli_in_latent_space(tmp_path, monkeypatch, capsys):
    """A tiny latent model (4 channels, the tiny VAE): encode, inpaint latents, decode."""
    monkeypatch.chdir(tmp_path)
    model = build_model("MDTv2-T/4", depth=2, hidden_size=32, num_heads=2, in_channels=4, input_size=8,
                        patch_size=2)
    torch.save(model.state_dict(), tmp_path / "latent.pt")
    x, _ = smileys_batch(1, seed=0)
    save_grid(torch.nn.functional.interpolate(x, size=64), tmp_path / "face.png", nrow=1)
    assert main(["inpaint", "--ckpt", "latent.pt", "--image", "face.png", "--hide-tokens", "5", "--steps", "3",
                 "--vae", "tiny", "--vae-decoder", "tiny", "--out", "l.png"]) == 0
    assert "256 of 4096 pixels redrawn" in capsys.readouterr().out


def test_one_shot_prediction_with_a_chosen_mask_equals_the_random_masked_pass():
    """Hiding the tokens a seeded random mask hid gives the masked pass's own x̂0 (token order does not matter)."""
    from mdt_teach.lessons import one_shot_prediction, reconstruct
    from mdt_teach.masking import mask_from_hidden

    torch.manual_seed(0)
    model = build_model("MDTv2-T/4", depth=4, hidden_size=32, num_heads=2).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x0, y = smileys_batch(2, seed=4)
    rec = reconstruct(model, x0, y, GaussianDiffusion(), t=300, mask_ratio=0.3, seed=5)
    mine = one_shot_prediction(model, x0, y, rec["mask"].bool(), GaussianDiffusion(), t=300, seed=5)
    torch.testing.assert_close(mine, rec["x0_hat"], atol=1e-5, rtol=1e-5)
    assert "mask_tokens" not in model.__dict__                  # the instance is left as it was
    with pytest.raises(ValueError, match="as many tokens"):
        mask_from_hidden(torch.zeros(2, 4, 1), torch.tensor([[True, False, False, False], [True, True, False, False]]))


def test_the_committed_probe_results_are_on_the_relational_world_and_in_the_docs():
    """data/probe/results.json is tools/probe_checkpoints.py's measurement of the committed checkpoints on the
    relational world, with a chance line under 10% beside every rate; docs/masked_pass.md quotes it row for row."""
    import json
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "tools"))
    from probe_checkpoints import markdown, sentence
    results = json.loads((root / "data" / "probe" / "results.json").read_text())
    index = json.loads((root / "data" / "probe" / "index.json").read_text())
    assert results["world"] == "smileys" and {info["world"] for info in index.values()} == {"smileys@2"}
    assert {r["checkpoint"] for r in results["rows"]} == set(index)
    assert markdown(results) in (root / "docs" / "masked_pass.md").read_text()
    assert sentence(results) in " ".join((root / "README.md").read_text().split())   # across line breaks
    assert max(results["free_chance"].values()) <= 0.10
    for row in results["rows"]:
        assert row["eye"]["faces"] >= 200 and max(row["eye"]["chance"].values()) <= 0.10, row["checkpoint"]
        assert max(row["eye"]["follow_chance"].values()) <= 0.02, row["checkpoint"]
        assert row["none"]["completed"] >= 0.98, row["checkpoint"]      # the scorer on the true faces


def test_lesson_11_solution_3_a_painter_that_reads_the_expression_stays_blind():
    """Lesson 11, exercise 3: a painter that draws, per face, the eye of a donor with the same label (expression)
    scores no better than the blind painters: the world draws the eyes independently of the label."""
    from mdt_teach.painters import donors, right_eye, with_right_eye
    images, _, meta = smileys_batch(1000, seed=PROBE_SEED, meta=True)
    hide, usable = hidden_tokens(meta, "eye", 4)
    images, meta = images[usable], {k: v[usable] for k, v in meta.items()}
    keep = 1 - keep_from_tokens(torch.from_numpy(hide[usable]), 4)
    pool = donors("smileys")
    eyes = right_eye(pool)

    def by_label(m):
        pick = np.array([np.flatnonzero(pool["label"] == label)[i % 97] for i, label in enumerate(m["label"])])
        return with_right_eye(m, {k: v[pick] for k, v in eyes.items()})

    rates = {k: v.mean() for k, v in chance_line(images, meta, keep, "smileys", painters={"label": by_label}).items()}
    assert rates["label"] <= 0.10, rates
