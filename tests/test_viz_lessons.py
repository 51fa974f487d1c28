"""Lessons 03–04 widgets headless (mask explorer, masked-token reconstruction) and the lesson checkpoint."""
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from mdt_teach import models  # noqa: E402
from mdt_teach.data import smileys_batch  # noqa: E402
from mdt_teach.diffusion import GaussianDiffusion  # noqa: E402
from mdt_teach.models import build_model  # noqa: E402
from mdt_teach import lessons  # noqa: E402
from mdt_teach.viz import masks, reconstruction  # noqa: E402
from mdt_teach.viz.core import FigureWidget, figure_to_array  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def images():
    return smileys_batch(3, seed=0)


def _pixels(fig) -> np.ndarray:
    """figure_to_array of a widget's last figure; the widget closed it, so give it an Agg canvas again."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    return figure_to_array(fig)


def _randomized(name: str, seed: int = 0):
    """A tiny model with noise on every weight, so zero-initialised gates no longer hide its behaviour."""
    torch.manual_seed(seed)
    model = build_model(name)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Mask explorer
# ---------------------------------------------------------------------------------------------

def test_draw_mask_keeps_int_L_times_one_minus_r_and_matches_ids_keep():
    mask, ids_keep = masks.draw_mask(64, 0.3, seed=4)
    assert len(ids_keep) == int(64 * 0.7) == 44 and int(mask.sum()) == 20
    assert torch.equal((mask == 0).nonzero().squeeze(1), ids_keep.sort().values)
    again, _ = masks.draw_mask(64, 0.3, seed=4)
    assert torch.equal(again, mask)


def test_image_patches_are_row_major_and_kept_strip_places_them_in_order(images):
    x = images[0][0]
    patches = masks.image_patches(x, 4)
    assert patches.shape == (64, 4, 4, 3)
    # token 9 = grid row 1, column 1 → pixels [4:8, 4:8]; red channel mapped from [-1, 1] to [0, 1]
    np.testing.assert_allclose(patches[9][..., 0], ((x[0, 4:8, 4:8] + 1) / 2).numpy(), atol=1e-6)
    ids_keep = torch.tensor([9, 0, 63])
    strip = masks.kept_strip(patches, ids_keep, ncol=2)
    assert strip.shape == (2 * 5 + 1, 2 * 5 + 1, 3)
    np.testing.assert_array_equal(strip[1:5, 1:5], patches[9])         # slot 0 holds token 9
    np.testing.assert_array_equal(strip[6:10, 1:5], patches[63])       # slot 2 starts row 2


def test_mask_explorer_widget_redraws_on_every_control(images):
    w = masks.mask_explorer_widget(images[0], patch_size=4, static=False)
    assert isinstance(w, FigureWidget) and set(w.controls) == {"index", "mask_ratio", "seed"}
    before, count = _pixels(w.last_figure), w.draw_count
    for name, value in (("mask_ratio", 0.6), ("seed", 5), ("index", 2)):
        w.controls[name].value = value
        assert w.state()[name] == value and w.draw_count == count + 1
        after = _pixels(w.last_figure)
        assert after.shape != before.shape or not np.array_equal(after, before), name
        before, count = after, w.draw_count


def test_mask_explorer_static_grid_in_static_mode(images, monkeypatch):
    monkeypatch.setenv("MDT_STATIC", "1")
    fig = masks.mask_explorer_widget(images[0])
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 4


# ---------------------------------------------------------------------------------------------
# Masked forward and reconstruction
# ---------------------------------------------------------------------------------------------

def test_model_mask_is_the_mask_the_model_draws_for_v1_and_v2(monkeypatch):
    drawn = []
    real = models.random_masking
    monkeypatch.setattr(models, "random_masking", lambda *a, **k: drawn.append(real(*a, **k)) or drawn[-1])
    x, y = smileys_batch(4, seed=1)
    t = torch.tensor([10, 200, 500, 900])
    for name in ("MDT-T/4", "MDTv2-T/4"):
        model = _randomized(name)
        out, mask = lessons.masked_forward(model, x, t, y, seed=11)
        assert out.shape == (4, 6, 32, 32)
        assert torch.equal(mask, drawn[-1][1]), name
    assert 32 <= int(64 - drawn[-1][1][0].sum()) <= 44                   # MDTv2: ratio in [0.3, 0.5)


def test_v1_masked_pass_ignores_exactly_the_tokens_model_mask_reports():
    model = _randomized("MDT-T/4")
    x, y = smileys_batch(2, seed=2)
    t = torch.tensor([300, 300])
    out, mask = lessons.masked_forward(model, x, t, y, seed=3)
    hidden, kept = int((mask[0] == 1).nonzero()[0]), int((mask[0] == 0).nonzero()[0])
    for token, moves in ((hidden, False), (kept, True)):
        r, q = divmod(token, 8)
        x2 = x.clone()
        x2[0, :, 4 * r: 4 * r + 4, 4 * q: 4 * q + 4] += 1.0
        out2, _ = lessons.masked_forward(model, x2, t, y, seed=3)
        assert (not torch.equal(out2, out)) == moves


def test_masked_forward_fixed_ratio_restores_the_model_and_rejects_dit():
    model = _randomized("MDTv2-T/4").train()
    x, y = smileys_batch(2, seed=0)
    _, mask = lessons.masked_forward(model, x, torch.tensor([5, 5]), y, seed=0, mask_ratio=0.75)
    assert int(mask.sum(1)[0]) == 64 - 16
    assert (model.mask_ratio, model.mask_ratio_jitter, model.training) == (0.3, 0.2, True)
    with pytest.raises(ValueError, match="MDT"):
        lessons.masked_forward(build_model("DiT-T/4"), x, torch.tensor([5, 5]), y)


def test_reconstruct_uses_q_sample_noise_and_the_eps_channels():
    model = _randomized("MDT-T/4")
    diffusion = GaussianDiffusion()
    x0, y = smileys_batch(2, seed=0)
    rec = lessons.reconstruct(model, x0, y, diffusion, t=400, mask_ratio=0.5, seed=9)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(rec["x_t"], diffusion.q_sample(x0, torch.tensor([400, 400]), noise))
    expected = diffusion.predict_x0_from_eps(rec["x_t"], torch.tensor([400, 400]), rec["eps_hat"]).clamp(-1, 1)
    torch.testing.assert_close(rec["x0_hat"], expected)
    assert rec["eps_hat"].shape == x0.shape and int(rec["mask"][0].sum()) == 32


def test_reconstruction_widget_redraws_for_mask_ratio_t_and_face():
    model = _randomized("MDT-T/4")
    x0, y = smileys_batch(2, seed=0)
    w = reconstruction.reconstruction_widget(model, x0, y, GaussianDiffusion(), static=False)
    assert set(w.controls) == {"mask_ratio", "t", "face"} and w.controls["face"].max == 1
    before = _pixels(w.last_figure)
    for name, value in (("mask_ratio", 0.7), ("t", 800), ("face", 1)):
        w.controls[name].value = value
        assert w.state()[name] == value
        after = _pixels(w.last_figure)
        assert not np.array_equal(after, before), name
        before = after
    assert w.draw_count == 4
    static = reconstruction.reconstruction_widget(model, x0, y, GaussianDiffusion(), static=True)
    assert isinstance(static, matplotlib.figure.Figure) and len(static.axes) == 3
    height, width = figure_to_array(static).shape[:2]
    assert width <= 1000 and height > width          # one notebook column; the settings stacked, not squeezed
    with pytest.raises(ValueError, match="not one of the 2 faces"):
        reconstruction.render_reconstruction(0.3, 300, 2, model, x0, y, GaussianDiffusion())


def test_two_pass_reconstruction_compares_both_passes_on_one_x_t():
    """Lesson 04's figure: the masked pass (`reconstruct`) and the unmasked pass on the same x_t, scored
    against the noise that made x_t; the hole-cost panel is blank exactly at the hidden tokens."""
    model, diffusion = _randomized("MDT-T/4"), GaussianDiffusion()
    x0, y = smileys_batch(2, seed=0)
    rec = reconstruction.two_pass_reconstruction(model, x0, y, diffusion, t=400, mask_ratio=0.5, seed=9)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(9))
    t = torch.tensor([400, 400])
    with torch.no_grad():
        eps_full = model.eval()(rec["x_t"], t, y)[:, :3]
    torch.testing.assert_close(rec["mse_full"], lessons.token_rms(eps_full - noise, 4).pow(2))
    torch.testing.assert_close(rec["mse_masked"], lessons.token_rms(rec["eps_hat"] - noise, 4).pow(2))
    expected = diffusion.predict_x0_from_eps(rec["x_t"], t, eps_full).clamp(-1, 1)
    torch.testing.assert_close(rec["x0_hat_full"], expected)
    assert not torch.allclose(rec["mse_full"], rec["mse_masked"])          # the holes change the prediction
    fig = reconstruction.render_reconstruction(0.5, 400, 1, model, x0, y, diffusion, seed=9)
    cost = fig.axes[3].images[0].get_array()
    assert np.array_equal(np.ma.getmaskarray(cost) | np.isnan(cost.data), rec["mask"][1].reshape(8, 8).bool().numpy())


# ---------------------------------------------------------------------------------------------
# The lesson checkpoint
# ---------------------------------------------------------------------------------------------

def test_lesson_checkpoint_round_trip_and_errors(tmp_path, monkeypatch):
    model = _randomized("MDT-T/4")
    (tmp_path / "data").mkdir()
    lessons.save_lesson_checkpoint(model, tmp_path / "data" / "m.pt", {"steps": 7})
    monkeypatch.setenv("MDT_TEACH_ROOT", str(tmp_path))
    loaded, info = lessons.load_lesson_checkpoint("m.pt")
    assert info == {"steps": 7} and not loaded.training and loaded.config == model.config
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(b, a.half().to(a.dtype), msg=k)
    torch.save({"format": "other"}, tmp_path / "data" / "bad.pt")
    with pytest.raises(ValueError, match="not a lesson checkpoint"):
        lessons.load_lesson_checkpoint("bad.pt")
    with pytest.raises(FileNotFoundError):
        lessons.load_lesson_checkpoint("missing.pt")


def test_committed_lesson04_checkpoint_is_a_small_trained_mdt():
    path = ROOT / "data" / lessons.LESSON_CHECKPOINT
    assert path.stat().st_size <= 5 * 2**20
    model, info = lessons.load_lesson_checkpoint()
    assert model.family == "MDT" and model.mask_ratio == 0.3 and info["steps"] > 0
    assert info["world"] == "smileys@2"                                   # trained on the faces lessons draw
    assert model.final_layer.linear.weight.abs().max() > 0                # trained: no longer the zero init
    # what lesson 04 shows: the noise at hidden tokens is unknowable, so the trained v1 predicts ε̂ ≈ 0 there
    x0, y = smileys_batch(16, seed=7)
    rec = lessons.reconstruct(model, x0, y, GaussianDiffusion(), t=300, mask_ratio=0.3)
    hidden, visible = lessons.hidden_visible_rms(rec, model.patch_size)
    assert hidden < 0.1 * visible and visible > 0.5


def test_token_rms_and_the_hidden_visible_split():
    eps = torch.zeros(1, 3, 8, 8)
    eps[:, :, :4, :4] = 2.0                                               # token 0 of a 2×2 grid of 4×4 tokens
    assert torch.allclose(lessons.token_rms(eps, 4), torch.tensor([[[2.0, 0.0], [0.0, 0.0]]]))
    rec = {"x_t": eps, "eps_hat": eps, "mask": torch.tensor([[1.0, 0.0, 0.0, 1.0]])}
    hidden, visible = lessons.hidden_visible_rms(rec, 4)
    assert hidden == pytest.approx(2 ** 0.5) and visible == 0.0            # hidden: tokens 0 and 3


def test_make_lesson_checkpoint_trains_and_writes(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    import make_lesson_checkpoint as tool

    with pytest.raises(SystemExit):
        tool.parse_args([])
    out = tmp_path / "ck.pt"
    assert tool.main(["--steps", "1", "--batch-size", "4", "--out", str(out)]) == 0
    blob = torch.load(out, weights_only=True)
    assert blob["info"]["steps"] == 1 and blob["model_config"]["family"] == "MDT"
    assert all(v.dtype == torch.float16 for v in blob["state_dict"].values() if v.is_floating_point())


def test_hide_tokens_paints_exactly_the_masked_patches():
    image = torch.rand(3, 8, 8)
    mask = torch.tensor([0.0, 1.0, 0.0, 0.0])                              # 2×2 grid of 4×4 tokens: hide token 1
    out = reconstruction.hide_tokens(image, mask, patch_size=4, fill=-0.5)
    assert (out[:, :4, 4:] == -0.5).all()
    assert torch.equal(out[:, :4, :4], image[:, :4, :4]) and torch.equal(out[:, 4:], image[:, 4:])


def test_attention_panels_share_one_colour_scale_with_a_colour_bar():
    """Lesson 11's attention view: the same colour is the same weight in every model's panel."""
    from mdt_teach.viz.probe import render_attention
    x, y = smileys_batch(1, seed=0)
    tiny = {"depth": 2, "hidden_size": 32, "num_heads": 2}
    torch.manual_seed(0)
    a = build_model("DiT-T/4", **tiny).eval()
    b = build_model("MDTv2-T/4", **tiny).eval()
    for p in list(a.parameters()) + list(b.parameters()):      # not the zero init: attention that varies
        p.data.normal_(0, 0.3)
    fig = render_attention(token=20, layer=1, t=100, models={"DiT": a, "MDTv2": b}, image=x, label=y)
    overlays = [ax.images[-1] for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert len(overlays) == 2 and overlays[0].get_clim() == overlays[1].get_clim()
    assert overlays[0].get_array().max() != overlays[1].get_array().max()   # one scale for two maxima
    assert any(ax.get_label() == "<colorbar>" for ax in fig.axes)
