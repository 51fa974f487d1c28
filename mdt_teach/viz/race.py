"""Lesson 08's figures: the race's curves with a band over seeds and the chance line, what each ingredient
changes (paired by seed), the missing-eye probe along the way, the two-eyes funnel (where a model fails), and a
slider over training progress that shows each model's EMA samples beside its curves, at equal steps or at equal
(calibrated) wall-clock. Every figure plots the headline score of the records' world (pair agreement on the
relational world, two-eyes on the classic one)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from mdt_teach.race import curve_array
from mdt_teach.race_summary import distinct_contrasts, headline_of
from mdt_teach.viz import core

AXES = {"steps": 0, "seconds": 1}
FUNNEL = [("funnel_face_found", "face found"), ("funnel_two_eyes", "two eye blobs"),
          ("funnel_passed", "symmetric, mouth below\n(= two-eyes)")]
TITLES = {"pair_agreement": "pair agreement ↑", "two_eyes": "two-eyes score ↑", "fd_smileys": "FD-smileys ↓"}


def headline(records: dict) -> str:
    """The headline score of the world the records raced on."""
    return headline_of(next(iter(records.values())).get("world"))


def runs_of(records: dict, name: str) -> list[dict]:
    """The records of variant `name` (one per seed), by seed."""
    return sorted((r for r in records.values() if r.get("name", name) == name), key=lambda r: r.get("seed", 0))


def seed_band(records: dict, name: str, key: str, axis: str = "steps"):
    """(x, mean, min, max) of `key` over the seeds of `name` at its evaluations (every seed evaluates at the same
    steps: the same budget and calibrated speed); x in steps or calibrated minutes."""
    runs = runs_of(records, name)
    n = min(len(r["curve"]) for r in runs)
    x = curve_array(runs[0], key)[AXES[axis]][:n]
    values = np.stack([curve_array(r, key)[2][:n] for r in runs])
    return (x if axis == "steps" else x / 60), values.mean(0), values.min(0), values.max(0)


def plot_bands(ax, records: dict, names, key: str, axis: str = "steps"):
    """One line per variant (the mean over seeds) with its min–max band over seeds shaded."""
    for name in names:
        x, mean, lo, hi = seed_band(records, name, key, axis)
        seeds = len(runs_of(records, name))
        (line,) = ax.plot(x, mean, marker=".", ms=3, label=f"{runs_of(records, name)[0]['label']} ({seeds} seed"
                          f"{'s' if seeds > 1 else ''})")
        if seeds > 1:
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("training step" if axis == "steps" else "training minutes (calibrated)")


def render_curves(records: dict, names=None, axis: str = "seconds", targets=(0.25, 0.5, 0.75),
                  chance: float | None = None):
    """Figure: the headline score and FD-smileys along training, mean over seeds with the seeds' range shaded;
    dotted lines at the headline targets, a dashed one at `chance` (the relation-blind painters' score)."""
    names = list(names or dict.fromkeys(r["name"] for r in records.values()))
    key = headline(records)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, k in zip(axes, (key, "fd_smileys")):
        plot_bands(ax, records, names, k, axis)
        ax.set_title(TITLES[k])
    for t in targets:
        axes[0].axhline(t, color="grey", lw=0.6, ls=":")
    if chance is not None:
        axes[0].axhline(chance, color="black", lw=0.8, ls="--", label=f"chance (relation-blind) {chance:.1%}")
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def render_overview(records: dict, summary: dict, names=None):
    """The race in one figure. Left: the headline score along calibrated minutes for every variant (mean over
    seeds, the seeds' range shaded) with the chance line. Right: what each ingredient changes in the final
    headline score, after − before, paired by seed (bar: mean; dots: each seed)."""
    names = list(names or summary["models"])
    key = summary["headline"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.2, 1]})
    plot_bands(left, records, names, key, "seconds")
    left.axhline(summary["chance_line"], color="black", lw=0.8, ls="--",
                 label=f"chance: relation-blind painter ({summary['chance_line']:.1%})")
    left.set(title=f"{TITLES[key]} along the race", ylim=(0, None))
    left.legend(fontsize=7)
    rows = [(f"{c['isolates']} (seeds {','.join(map(str, c['seeds']))})", c["final_change"][key])
            for c in distinct_contrasts(summary).values() if key in c["final_change"]]
    for i, (label, change) in enumerate(rows):
        right.barh(i, 100 * change["mean"], color="tab:green" if change["mean"] > 0 else "tab:red", alpha=0.6)
        right.plot([100 * v for v in change["per_seed"]], [i] * len(change["per_seed"]), "k.", ms=5)
    right.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=7)
    right.invert_yaxis()
    right.axvline(0, color="black", lw=0.8)
    right.set(xlabel=f"change in final {key.replace('_', ' ')} (points)",
              title="what each change does (paired by seed)" if rows else "contrasts: not all their runs are in")
    fig.tight_layout()
    return fig


def render_probe(records: dict, names=None):
    """Figure: the missing-eye probe along training (every evaluation that ran it, and the end; mean over seeds):
    how often a model redraws a hidden eye that matches the visible one (solid) and how often it follows a
    changed visible eye (dashed), with the probe's chance line (grey; following's chance is 0)."""
    names = list(names or dict.fromkeys(r["name"] for r in records.values()))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for name in names:
        runs = runs_of(records, name)
        probed = [[p for p in r["curve"] if "probe_eye" in p] for r in runs]
        n = min(len(q) for q in probed)
        if n == 0:
            continue
        x = [probed[0][i]["cal_seconds"] / 60 for i in range(n)]
        eye = [np.mean([q[i]["probe_eye"] for q in probed]) for i in range(n)]
        follow = [np.mean([q[i]["probe_follow"] for q in probed]) for i in range(n)]
        if all(r.get("final", {}).get("probe_eye") is not None for r in runs):   # the end, on more faces
            x.append(runs[0]["curve"][-1]["cal_seconds"] / 60 + 1e-3)
            eye.append(np.mean([r["final"]["probe_eye"] for r in runs]))
            follow.append(np.mean([r["final"]["probe_follow"] for r in runs]))
        (line,) = ax.plot(x, eye, marker="o", ms=3, label=runs[0]["label"])
        ax.plot(x, follow, ls="--", marker=".", ms=3, color=line.get_color())
    chance = [p["probe_chance"] for r in records.values() for p in r["curve"] if "probe_chance" in p]
    if chance:
        ax.axhline(max(chance), color="grey", lw=0.8, label=f"probe chance ({max(chance):.0%})")
    ax.set(xlabel="training minutes (calibrated)", ylabel="fraction of probe faces", ylim=(0, 1),
           title="missing-eye probe: matches the visible eye (solid), follows it when it changes (dashed)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def render_funnel(records: dict, names=None, minutes: float | None = None):
    """Figure: the two-eyes funnel per variant (face found → two eye blobs → symmetric), the mean over seeds
    with the seeds' range as error bars; at the end of the race (its larger final sample) or at the evaluation
    nearest `minutes` of calibrated training."""
    names = list(names or dict.fromkeys(r["name"] for r in records.values()))
    fig, ax = plt.subplots(figsize=(8, 3.4))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        runs = runs_of(records, name)
        if minutes is None:
            points = [r.get("final") or r["curve"][-1] for r in runs]
        else:
            points = [point_near(r, minutes) for r in runs]
        values = np.array([[p[k] for k, _ in FUNNEL] for p in points])
        mean = values.mean(0)
        err = np.stack([mean - values.min(0), values.max(0) - mean])
        ax.bar(np.arange(len(FUNNEL)) + (i - (len(names) - 1) / 2) * width, mean, width, yerr=err, capsize=2,
               label=runs[0]["label"])
    ax.set_xticks(np.arange(len(FUNNEL)), [label for _, label in FUNNEL], fontsize=8)
    ax.set(ylim=(0, 1), ylabel="fraction of samples",
           title="the funnel at the end of the race" if minutes is None else f"the funnel after {minutes:g} min")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def point_at(record: dict, progress: float, axis: str = "steps") -> dict:
    """The last evaluation of `record` at or before `progress` (a step count or calibrated minutes)."""
    where = curve_array(record, "fd_smileys")[AXES[axis]]
    where = where if axis == "steps" else where / 60
    i = int(np.searchsorted(where, progress, side="right")) - 1
    return record["curve"][max(i, 0)]


def point_near(record: dict, minutes: float) -> dict:
    """The evaluation of `record` nearest `minutes` of calibrated training (the evaluations fall a hair after
    each whole minute, so "nearest" rather than "at or before")."""
    return min(record["curve"], key=lambda p: abs(p["cal_seconds"] / 60 - minutes))


def grid_image(folder: Path, stem: str, step: int) -> np.ndarray | None:
    """The sample grid the race saved for run `stem` at `step` (None when it is not there)."""
    path = Path(folder) / stem / f"step_{step:06d}.png"
    return np.asarray(Image.open(path).convert("RGB")) if path.exists() else None


def render_race(fraction: float, records: dict, folder, axis: str = "steps", names=None):
    """Figure: one row of sample grids (seed 0 of each model) above the headline and FD curves, at `fraction`
    of the race (0 to 1) in steps or in calibrated minutes."""
    names = list(names or dict.fromkeys(r["name"] for r in records.values()))
    key = headline(records)
    end = max(curve_array(r, key)[AXES[axis]][-1] for r in records.values() if r["name"] in names)
    progress = fraction * (end if axis == "steps" else end / 60)
    fig = plt.figure(figsize=(11, 5.2))
    grid = fig.add_gridspec(2, len(names), height_ratios=[1, 1.6])
    stems = {r["name"]: stem for stem, r in sorted(records.items(), key=lambda kv: -kv[1].get("seed", 0))}
    for col, name in enumerate(names):
        record = records[stems[name]]
        point = point_at(record, progress, axis)
        ax = fig.add_subplot(grid[0, col])
        img = grid_image(folder, stems[name], point["step"])
        if img is not None:
            ax.imshow(img)
        ax.set_title(f"{record['label']}\nstep {point['step']} · {TITLES[key].rstrip(' ↑↓')} {point[key]:.0%}", fontsize=8)
        ax.axis("off")
    for col, k in enumerate((key, "fd_smileys")):
        ax = fig.add_subplot(grid[1, col * len(names) // 2:(col + 1) * len(names) // 2])
        plot_bands(ax, records, names, k, axis)
        ax.axvline(progress, color="grey", lw=0.8)
        ax.set_title(TITLES[k])
        if k == "fd_smileys":
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def race_widget(records: dict, folder, names=None, static: bool | None = None):
    """Slider over the race's progress (a fraction of the longest run, in steps or calibrated minutes chosen with
    a dropdown) redrawing `render_race`."""
    controls = {}
    if core.widgets is not None:
        controls["axis"] = core.widgets.Dropdown(options=list(AXES), value="seconds", description="compare at")
        controls["fraction"] = core.widgets.FloatSlider(value=0.5, min=0, max=1, step=0.05, description="progress",
                                                        continuous_update=False)
    settings = [{"fraction": f, "axis": "seconds"} for f in (0.1, 0.5, 1.0)]
    return core.show(render_race, controls, settings, fixed={"records": records, "folder": folder, "names": names},
                     static=static)
