"""Headless widget logic of lessons 01, 08 and 09: moving a control changes the state and the figure."""
import json

import numpy as np
import pytest
import torch

from mdt_teach.data import smileys_batch
from mdt_teach.diffusion import GaussianDiffusion
from mdt_teach.models import build_model
from mdt_teach.viz.core import FigureWidget, figure_to_array
from mdt_teach.viz.diffusion import forward_process_widget
from mdt_teach.images import save_grid
from mdt_teach.viz.race import (point_at, race_widget, render_curves, render_funnel, render_overview, render_probe,
                                 seed_band)
from mdt_teach.viz.sampling import cfg_widget, render_cfg


def _moved(widget: FigureWidget, name: str, value):
    before = figure_to_array(widget.last_figure)
    count = widget.draw_count
    widget.controls[name].value = value
    assert widget.draw_count == count + 1 and widget.state()[name] == value
    after = figure_to_array(widget.last_figure)
    return before.shape != after.shape or not np.array_equal(before, after)


def test_forward_process_widget_redraws_on_t():
    x0, _ = smileys_batch(2, seed=0)
    w = forward_process_widget(x0, GaussianDiffusion(), static=False)
    assert _moved(w, "t", 700)
    static = forward_process_widget(x0, GaussianDiffusion(), static=True)
    assert figure_to_array(static).ndim == 3


def test_cfg_widget_redraws_on_scale_and_power():
    model = build_model("MDTv2-T/4", depth=2, hidden_size=32, num_heads=2).eval()
    for p in model.parameters():  # a zero-initialised model ignores its label; give it some weights
        torch.nn.init.normal_(p, std=0.02)
    w = cfg_widget(model, GaussianDiffusion(), static=False)
    assert _moved(w, "cfg_scale", 6.0)
    assert _moved(w, "scale_pow", 1.0)


def _random_tiny_mdtv2():
    model = build_model("MDTv2-T/4", depth=2, hidden_size=32, num_heads=2).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    return model


def test_cfg_grids_mark_each_face_by_the_checker_and_count_them():
    """Lesson 09: both grids come from the same noise (w = 1, then the sliders' w and pow); each face is framed
    green when the checker reads its mouth as its row's class, and the title counts them."""
    from mdt_teach.checker import two_eyes
    from mdt_teach.viz import sampling as viz_sampling

    model, diffusion = _random_tiny_mdtv2(), GaussianDiffusion()
    fig = render_cfg(6.0, 4.0, model, diffusion, per_class=2, steps="ddim5")
    for ax, w, p in ((fig.axes[1], 1.0, 0.0), (fig.axes[2], 6.0, 4.0)):
        images = viz_sampling.cached_class_grid(model, diffusion, 2, w, p, "ddim5", 0)
        ok = two_eyes(images, torch.arange(8) // 2).expression_ok
        assert np.array_equal(viz_sampling.class_consistency(images, 2), ok)
        assert ax.get_title().split(":")[1].strip().startswith(f"{int(ok.sum())} of 8 mouths")
    faces, labels = smileys_batch(64, seed=0)
    rows = torch.cat([faces[labels == k][:3] for k in range(4)])               # 3 real faces per class, in order
    assert viz_sampling.class_consistency(rows, 3).all()
    assert viz_sampling.class_consistency(rows.flip(0), 3).sum() <= 6          # rows swapped: classes 0↔3, 1↔2 miss
    images = torch.zeros(3, 3, 4, 4)
    grid = viz_sampling.framed_grid(images, np.array([True, False, True]), nrow=3, pad=2, gap=1)
    assert grid.shape == (1 + 8 + 1, 1 + 3 * (8 + 1), 3)                     # 4-px faces in 8-px frames, 1-px gaps
    assert np.allclose(grid[0, 0], 1.0) and np.allclose(grid[1, 1], viz_sampling.MATCH)
    assert np.allclose(grid[1, 10], viz_sampling.MISS) and np.allclose(grid[8, 17], viz_sampling.MISS)
    assert np.allclose(grid[3:7, 3:7], 0.5)                                  # the face itself, untouched (0 → grey)


def test_mean_guidance_is_w_eff_averaged_over_the_steps_the_sampler_visits():
    from mdt_teach.viz.sampling import mean_guidance

    diffusion = GaussianDiffusion()
    assert mean_guidance(8.0, 0.0, diffusion, "ddim10") == pytest.approx(8.0)
    by_hand = np.mean([1 + 7 * (1 - np.cos(np.pi * (1 - t / 1000) ** 4)) / 2 for t in range(0, 1000, 100)])
    assert mean_guidance(8.0, 4.0, diffusion, "ddim10") == pytest.approx(by_hand)


def test_cfg_grids_are_cached_until_the_weights_change(monkeypatch):
    """A slider moved back, or pow moved while w = 1, redraws without sampling again."""
    from mdt_teach.viz import sampling as viz_sampling

    model, diffusion = _random_tiny_mdtv2(), GaussianDiffusion()
    first = viz_sampling.cached_class_grid(model, diffusion, 1, 4.0, 2.0, "ddim5", 0)
    unguided = viz_sampling.cached_class_grid(model, diffusion, 1, 1.0, 0.0, "ddim5", 0)
    calls = []
    monkeypatch.setattr(viz_sampling, "class_grid", lambda *a: calls.append(a) or torch.zeros(4, 3, 32, 32))
    assert viz_sampling.cached_class_grid(model, diffusion, 1, 4.0, 2.0, "ddim5", 0) is first
    assert viz_sampling.cached_class_grid(model, diffusion, 1, 1.0, 3.5, "ddim5", 0) is unguided  # pow moot at w = 1
    assert not calls
    with torch.no_grad():
        next(model.parameters()).add_(0.1)
    viz_sampling.cached_class_grid(model, diffusion, 1, 4.0, 2.0, "ddim5", 0)
    assert len(calls) == 1


@pytest.fixture
def race_folder(tmp_path):
    """Two seeds of DiT and one of MDTv2, each with a curve, its sample grids and a final block."""
    images, _ = smileys_batch(4, seed=0)
    records = {}
    for name, seed, per_step, scores in [("dit", 0, 0.1, [0.0, 0.1, 0.2]), ("dit", 1, 0.1, [0.0, 0.3, 0.4]),
                                         ("mdtv2", 0, 0.2, [0.0, 0.3, 0.5])]:
        stem = f"{name}_seed{seed}"
        (tmp_path / stem).mkdir()
        curve = []
        for step, score in zip([0, 10, 20], scores):
            save_grid(images * (1 - score), tmp_path / stem / f"step_{step:06d}.png", nrow=4)
            funnel = {"funnel_face_found": 0.9, "funnel_two_eyes": 0.5 + score / 2, "funnel_passed": score}
            curve.append({"step": step, "seconds": step * per_step * 1.2, "cal_seconds": step * per_step,
                          "two_eyes": score, "fd_smileys": 50 - 100 * score, **funnel})
        records[stem] = {"name": name, "seed": seed, "label": name, "curve": curve, "final": curve[-1]}
        (tmp_path / f"{stem}.json").write_text(json.dumps(records[stem]))
    return tmp_path, records


def test_race_widget_follows_steps_and_time(race_folder):
    folder, records = race_folder
    assert point_at(records["mdtv2_seed0"], 15, "steps")["step"] == 10
    assert point_at(records["mdtv2_seed0"], 3.9 / 60, "seconds")["step"] == 10  # 20 steps cost 4 s at 0.2 s/step
    w = race_widget(records, folder, static=False)
    assert _moved(w, "fraction", 1.0)
    assert _moved(w, "axis", "steps")


def test_race_curves_show_the_mean_over_seeds_and_their_range(race_folder):
    _, records = race_folder
    x, mean, lo, hi = seed_band(records, "dit", "two_eyes", "steps")
    assert x.tolist() == [0, 10, 20] and np.allclose(mean, [0.0, 0.2, 0.3])
    assert np.allclose(lo, [0.0, 0.1, 0.2]) and np.allclose(hi, [0.0, 0.3, 0.4])
    assert seed_band(records, "mdtv2", "two_eyes", "seconds")[0].tolist() == [0, 2 / 60, 4 / 60]
    fig = render_curves(records)
    assert len(fig.axes[0].collections) == 1                 # one band: only DiT has more than one seed
    fig = render_funnel(records, minutes=1 / 60)              # the evaluation nearest 1 minute: step 10 of DiT
    bars = [b.get_height() for b in fig.axes[0].patches]
    assert np.allclose(bars[:3], [0.9, 0.6, 0.2])             # DiT's funnel, mean over its two seeds at step 10


def test_race_figures_plot_the_relational_worlds_headline_with_its_chance_lines(race_folder):
    """On the relational world the curves are pair agreement with the painters' chance line; the overview's bars
    are each contrast's paired change (mean) with a dot per seed; the probe figure ends at the final probe."""
    _, records = race_folder
    for rec in records.values():
        rec["world"] = "smileys@2"
        for i, point in enumerate(rec["curve"]):
            point["pair_agreement"] = point["two_eyes"] / 2
            if i:
                point.update(probe_eye=0.1 * i, probe_follow=0.05 * i, probe_chance=0.06)
        rec["final"] = {**rec["curve"][-1], "probe_eye": 0.5, "probe_follow": 0.3}   # the fixture shares the dict
    fig = render_curves(records, chance=0.055)
    assert fig.axes[0].get_title() == "pair agreement ↑"
    assert any(list(line.get_ydata()) == [0.055, 0.055] for line in fig.axes[0].lines)
    change = {"pair_agreement": {"mean": 0.1, "per_seed": [0.05, 0.15]}}
    masking = {"from": "mdtv2_mask0", "to": "mdtv2", "seeds": [0, 1], "isolates": "masking", "final_change": change}
    summary = {"headline": "pair_agreement", "chance_line": 0.055, "models": {"dit": {}, "mdtv2": {}},
               "contrasts": {"masking": masking}}
    fig = render_overview(records, summary)
    left, right = fig.axes
    assert [round(b.get_width(), 6) for b in right.patches] == [10.0]          # +0.1 → 10 points
    assert sorted(right.lines[0].get_xdata()) == [5.0, 15.0]                   # one dot per seed
    dit = next(line for line in left.lines if line.get_label().startswith("dit"))
    assert np.allclose(dit.get_ydata(), [0.0, 0.1, 0.15])                      # mean over DiT's two seeds
    fig = render_probe(records)
    line = next(line for line in fig.axes[0].lines if line.get_label() == "mdtv2")
    assert np.allclose(line.get_ydata(), [0.1, 0.2, 0.5]) and line.get_xdata()[-1] > 4 / 60   # the end: final


def test_widget_figures_are_png_bytes_whatever_the_backend(tmp_path):
    """Training code may run in the same kernel; neither it nor the widget depends on the inline backend."""
    import io

    import matplotlib
    import matplotlib.pyplot as plt
    from PIL import Image

    from mdt_teach.runlog import plot_loss_curve
    from mdt_teach.viz.core import figure_to_png

    original = matplotlib.get_backend()
    plt.switch_backend("svg")   # any backend but Agg stands in for a notebook's inline backend
    try:
        plot_loss_curve([{"step": k, "loss": 1.0 / (k + 1)} for k in range(60)], tmp_path / "curve.png")
        assert matplotlib.get_backend() == "svg", "plot_loss_curve switched the session's matplotlib backend"
    finally:
        plt.switch_backend(original)
    assert Image.open(tmp_path / "curve.png").size == (600, 350)
    fig, ax = plt.subplots(figsize=(2, 1), dpi=50)
    ax.plot([0, 1], [1, 0])
    png = figure_to_png(fig)
    plt.close(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and Image.open(io.BytesIO(png)).size == (100, 50)


def test_lesson11_widgets_redraw():
    """Lesson 11: the inpainting widget (face, hidden region, resamples) and the attention map (token, layer, t)."""
    from mdt_teach.probe import PROBE_SEED
    from mdt_teach.viz.probe import attention_widget, inpainting_widget, render_probe_results

    models = {"A": _random_tiny_mdtv2(), "B": build_model("DiT-T/4", depth=2, hidden_size=32, num_heads=2).eval()}
    faces = smileys_batch(3, seed=PROBE_SEED, meta=True)
    w = inpainting_widget(models, faces, static=False)
    assert _moved(w, "region", "cheek") and _moved(w, "face", 2) and _moved(w, "resamples", 1)
    image, label = faces[0][:1], faces[1][:1]
    a = attention_widget(models, image, label, token=20, static=False)
    assert _moved(a, "token", 27) and _moved(a, "layer", 0) and _moved(a, "t", 500)
    row = {"model": "dit", "steps": 600, "pair_agreement": 0.1,
           "eye": {"completed": 0.2, "completed_ci": [0.1, 0.3], "chance": {"canonical": 0.05}, "follow": 0.1},
           "attention": {"100": {"other_eye": [0.02, 0.03], "skin": [0.02, 0.02]}}}
    fig = render_probe_results({"rows": [row, {**row, "steps": 3000}], "free_chance": {"canonical": 0.06}})
    assert len(fig.axes) == 3
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes[:2]]
    assert "relation-blind painters ≤ 5%" in legends[0] and "relation-blind painters ≤ 6%" in legends[1]


def test_inpainting_completions_are_remembered_per_face_region_and_weights(monkeypatch):
    """Lesson 11's widget: a face, region or resampling count revisited redraws without running RePaint again."""
    from mdt_teach.viz import probe as viz_probe

    model = _random_tiny_mdtv2()
    image, label = smileys_batch(1, seed=0)
    keep = torch.ones(1, 1, 32, 32)
    keep[..., :8, :8] = 0
    calls = []
    monkeypatch.setattr(viz_probe, "inpaint", lambda *a, **k: calls.append(k["resamples"]) or torch.zeros(1, 3, 32, 32))
    first = viz_probe.cached_inpaint(model, image, keep, label, "5", 2, 0)
    assert viz_probe.cached_inpaint(model, image, keep, label, "5", 2, 0) is first and calls == [2]
    viz_probe.cached_inpaint(model, image, 1 - keep, label, "5", 2, 0)       # another region
    viz_probe.cached_inpaint(model, image, keep, label, "5", 3, 0)           # another resampling count
    with torch.no_grad():
        next(model.parameters()).add_(0.1)
    viz_probe.cached_inpaint(model, image, keep, label, "5", 2, 0)           # new weights
    assert calls == [2, 2, 3, 2]


def test_cfg_class_consistency_tool_in_miniature(tmp_path):
    """tools/cfg_class_consistency.py (lesson 09's 512-face table) on a tiny checkpoint and 8 faces per setting:
    the committed table's settings and fields, its provenance, and one unguided run shared by every pow."""
    import sys
    from pathlib import Path

    from mdt_teach.lessons import save_lesson_checkpoint

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "tools"))
    import cfg_class_consistency as tool

    threads = torch.get_num_threads()
    save_lesson_checkpoint(_random_tiny_mdtv2(), tmp_path / "tiny.pt", {"model": "MDTv2-T/4", "world": "smileys@2"})
    try:
        assert tool.main(["--n", "8", "--threads", "1", "--checkpoint", str(tmp_path / "tiny.pt"),
                          "--out", str(tmp_path / "cc.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    record = json.loads((tmp_path / "cc.json").read_text())
    committed = json.loads((root / "data" / "cfg_class_consistency.json").read_text())
    assert set(record) == set(committed) and set(record["rows"][0]) == set(committed["rows"][0])
    settings = lambda r: [(row["cfg_scale"], row["scale_pow"]) for row in r["rows"]]  # noqa: E731
    assert settings(record) == settings(committed) and record["made_by"].startswith("python tools/cfg_class")
    unguided = [{k: v for k, v in row.items() if k != "scale_pow"} for row in record["rows"] if row["cfg_scale"] == 1]
    assert len(unguided) == len(tool.POWERS) and all(row == unguided[0] for row in unguided)
    faces, labels = smileys_batch(32, seed=0)
    assert (tool.classifier_reading(faces) == labels).float().mean() > 0.9     # the second judge reads real faces


def test_static_grid_repeats_pixels_of_tiles_drawn_at_their_own_size_or_larger():
    """Stacked wide figures (lesson 04) are not blurred by resampling (noise would bloat the stored PNG);
    a tile shrunk to fit keeps matplotlib's antialiasing."""
    import matplotlib.pyplot as plt

    from mdt_teach.viz.core import static_grid

    def render(width):
        fig, ax = plt.subplots(figsize=(width, 2))
        ax.imshow(np.random.default_rng(0).random((8, 40)))
        return fig

    small = static_grid(render, [{"width": 9.0}, {"width": 9.0}])          # 900 px tiles in a 1000 px column
    large = static_grid(render, [{"width": 12.0}, {"width": 12.0}])        # 1200 px tiles shrunk to fit
    assert {ax.images[0].get_interpolation() for ax in small.axes} == {"nearest"}
    assert "nearest" not in {ax.images[0].get_interpolation() for ax in large.axes}
