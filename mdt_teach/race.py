"""`mdt-teach race`: DiT vs MDT vs MDTv2 on smileys with equal budgets, plus the ablations that isolate
each MDTv2 ingredient (masking, Adan, Min-SNR). Every variant trains the tiny preset (same width and
depth), on the same data order with the same seed, and is evaluated at fixed step intervals with a fixed
sampler and fixed noise: two-eyes score, its funnel, and FD-smileys. The results (JSON curves, small
sample grids, summary.json with the speed-ups at equal steps and equal wall-clock) go to `data/race/`.

The race can be stopped and continued: a finished variant is a file `<out>/<variant>.json` that the race
skips; an unfinished one resumes from its checkpoint under `work/` with its curve so far (`curve_partial.json`).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import list_checkpoints, read_checkpoint, latest_checkpoint, write_json
from .metrics import score_smileys
from .probe import missing_eye_probe
from .recipe import TrainConfig
from .sampling import generate
from .train import Trainer
from .viz.images import save_grid


@dataclass(frozen=True)
class Variant:
    """One contestant: a tiny preset and the recipe changes that make it."""

    name: str
    model: str
    label: str
    isolates: str
    overrides: dict = field(default_factory=dict)


# The race pins its optimizers (the committed results were made with these): MDTv2 with Adan at the toy
# lr 1e-3, and the Adan → AdamW ablation at the same lr (the trainer's tiny MDTv2 default is AdamW 2e-3).
PROBE_FACES = 64   # faces drawn for the race's probe hook (about 28 are usable for the eye region)
ADAN_TINY = dict(opt="adan", lr=1e-3)
ADAMW_TINY = dict(opt="adamw", lr=1e-3, betas=(0.9, 0.99), max_grad_norm=0.0)
VARIANTS = {v.name: v for v in [
    Variant("dit", "DiT-T/4", "DiT", "baseline: AdamW, no weighting, one pass"),
    Variant("mdt", "MDT-T/4", "MDT v1", "masking + side-interpolater (AdamW, dual pass, ratio 0.3)"),
    Variant("mdtv2", "MDTv2-T/4", "MDTv2", "the full recipe: shortcuts, Adan, Min-SNR-5, ratio U[0.3,0.5)",
            ADAN_TINY),
    Variant("mdtv2_mask0", "MDTv2-T/4", "MDTv2, mask ratio 0", "masking (same architecture, two passes, weighting)",
            {**ADAN_TINY, "model_args": {"mask_ratio": 0.0, "mask_ratio_jitter": 0.0}}),
    Variant("mdtv2_adamw", "MDTv2-T/4", "MDTv2 with AdamW", "the optimizer (Adan → AdamW)", ADAMW_TINY),
    Variant("dit_minsnr", "DiT-T/4", "DiT + Min-SNR-5", "the loss weighting on DiT", {"weighting": "min_snr"}),
]}


def parse_variants(text: str | None) -> list[Variant]:
    """Comma-separated variant names (default: all) → Variants; unknown names → one clear error."""
    names = list(VARIANTS) if not text else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown race variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    return [VARIANTS[n] for n in names]


class Evaluator:
    """The trainer hook: every `every` steps, score `n` EMA samples (fixed noise) with the clock paused."""

    def __init__(self, folder: Path, every: int, n: int, grid: int = 8, sample_steps: str = "ddim25",
                 method: str = "ddim", probe_every: int = 0):
        self.folder, self.every, self.n, self.grid = folder, every, n, grid
        self.sample_steps, self.method = sample_steps, method
        self.probe_every = probe_every   # run the missing-eye probe at every k-th evaluation (0: never)
        self.curve: list[dict] = []
        self.partial: Path | None = None  # where the curve so far is kept, for a resumed race

    def __call__(self, trainer, logs: dict) -> None:
        if trainer.step % self.every == 0:
            self.evaluate(trainer)

    def evaluate(self, trainer) -> dict:
        """Generate, score and record one point of the curve; the time it takes is not training time."""
        if self.curve and self.curve[-1]["step"] == trainer.step:
            return self.curve[-1]
        seconds = round(trainer.elapsed(), 2) if trainer.step else 0.0  # training time, before this eval
        with trainer.paused():
            images, labels = generate(trainer.ema.model, self.n, diffusion=trainer.diffusion,
                                      steps=self.sample_steps, method=self.method, seed=12345)
            point = {"step": trainer.step, "seconds": seconds,
                     **{k: round(v, 5) for k, v in score_smileys(images, labels).items()}}
            if self.grid:
                save_grid(images[: self.grid], self.folder / f"step_{trainer.step:06d}.png", nrow=self.grid)
            if self.probe_every and len(self.curve) % self.probe_every == 0:
                point.update(self.probe(trainer))
            self.curve.append(point)
            if self.partial is not None:
                write_json(self.partial, self.curve)
            trainer.log(f"  step {point['step']:5d} · {point['seconds']:6.0f} s · two-eyes "
                        f"{point['two_eyes']:.1%} · FD-smileys {point['fd_smileys']:.2f}", flush=True)
        return point


    @staticmethod
    def probe(trainer) -> dict:
        """The missing-eye probe of the EMA model (PROBE_FACES faces, a short RePaint), and its cost."""
        began = time.perf_counter()
        r = missing_eye_probe(trainer.ema.model, "eye", n=PROBE_FACES, steps="25", jump_length=5, resamples=2)
        return {"probe_eye": round(r.completed, 4), "probe_eye_ci": [round(v, 4) for v in r.completed_ci],
                "probe_faces": r.faces, "probe_seconds": round(time.perf_counter() - began, 2)}


def make_trainer(v: Variant, work: Path, seed: int, batch_size: int, minutes=None, steps=None, resume=False,
                 ckpt_every: int = 100):
    """A Trainer for one variant: the tiny preset, its recipe plus the variant's overrides, smileys."""
    cfg = TrainConfig(model=v.model, data="smileys", minutes=minutes, steps=steps, batch_size=batch_size,
                      seed=seed, out=str(work / v.name), ckpt_every=ckpt_every, keep=1, eval_samples=0,
                      grid_samples=0, sample_every=0, progress=False, resume=resume, **v.overrides)
    return Trainer(cfg, log=lambda *a, **k: None)


def calibrate(variants: list[Variant], work: Path, seed: int, batch_size: int, rounds: int = 8) -> dict:
    """Seconds per training step of each variant, timed round-robin in one process so that every variant
    sees the same machine load (the wall-clock comparison uses these, not the noisy in-run clock)."""
    trainers = {v.name: make_trainer(v, work / "calibration", seed, batch_size, steps=10**9) for v in variants}
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for r in range(rounds + 2):
        for name, trainer in trainers.items():
            began = time.perf_counter()
            trainer.train_step()
            if r >= 2:  # the first two steps warm up allocators and caches
                times[name].append(time.perf_counter() - began)
    return {name: float(np.median(ts)) for name, ts in times.items()}


def run_variant(v: Variant, out: Path, work: Path, steps: int, seed: int, batch_size: int,
                every: int, n: int, sample_steps: str = "ddim25", method: str = "ddim", probe_every: int = 0) -> dict:
    """Train one variant for `steps` steps, evaluating every `every` steps; resumes an interrupted run from its
    checkpoint under `work/<variant>` and its curve so far (points after that checkpoint are evaluated again)."""
    folder = out / v.name
    folder.mkdir(parents=True, exist_ok=True)
    evaluator = Evaluator(folder, every, n, sample_steps=sample_steps, method=method, probe_every=probe_every)
    evaluator.partial = folder / "curve_partial.json"
    resume = bool(list_checkpoints(work / v.name))
    trainer = make_trainer(v, work, seed, batch_size, steps=steps, resume=resume, ckpt_every=min(100, every))
    if resume:
        at = read_checkpoint(latest_checkpoint(work / v.name))["step"]
        saved = json.loads(evaluator.partial.read_text()) if evaluator.partial.exists() else []
        evaluator.curve = [p for p in saved if p["step"] <= at]
        print(f"race: {v.name} resumes at step {at} ({len(evaluator.curve)} evaluations kept)", flush=True)
    else:
        evaluator.evaluate(trainer)  # step 0: the zero-initialised model
    trainer.fit(hooks=evaluator)
    evaluator.evaluate(trainer)  # the final point
    record = {"name": v.name, "label": v.label, "model": v.model, "isolates": v.isolates,
              "opt": trainer.cfg.opt, "lr": trainer.cfg.lr, "weighting": trainer.cfg.weighting,
              "steps": trainer.step, "seconds": round(trainer.elapsed(), 1),
              "seconds_per_step": round(trainer.elapsed() / max(1, trainer.step), 4),
              "curve": evaluator.curve}
    write_json(out / f"{v.name}.json", record)
    evaluator.partial.unlink(missing_ok=True)
    return record


def first_reaching(curve: list[dict], key: str, target: float, higher_is_better: bool):
    """The first curve point whose `key` reaches `target` (None if it never does)."""
    for point in curve:
        value = point[key]
        if (value >= target) if higher_is_better else (value <= target):
            return point
    return None


def with_calibrated_seconds(record: dict, seconds_per_step: float) -> dict:
    """Add `cal_seconds` = step × calibrated seconds per step to every curve point."""
    for point in record["curve"]:
        point["cal_seconds"] = round(point["step"] * seconds_per_step, 2)
    record["cal_seconds_per_step"] = round(seconds_per_step, 5)
    return record


def summarize(records: dict[str, dict], baseline: str = "dit") -> dict:
    """For each model, the steps and (calibrated) seconds needed to reach the baseline's final two-eyes and
    FD, and the speed-up ratios at equal steps and at equal wall-clock."""
    base = records[baseline]
    final = base["curve"][-1]
    targets = {"two_eyes": (final["two_eyes"], True), "fd_smileys": (final["fd_smileys"], False)}
    out = {"baseline": baseline, "targets": {k: t for k, (t, _) in targets.items()}, "models": {}}
    for name, rec in records.items():
        row = {"label": rec["label"], "isolates": rec["isolates"], "steps": rec["steps"],
               "seconds": rec["seconds"], "seconds_per_step": rec["seconds_per_step"],
               "cal_seconds_per_step": rec["cal_seconds_per_step"],
               "final_two_eyes": rec["curve"][-1]["two_eyes"], "final_fd_smileys": rec["curve"][-1]["fd_smileys"]}
        for key, (target, higher) in targets.items():
            hit = first_reaching(rec["curve"], key, target, higher)
            base_hit = first_reaching(base["curve"], key, target, higher)
            row[f"{key}_reached_at_step"] = None if hit is None else hit["step"]
            row[f"{key}_reached_at_seconds"] = None if hit is None else hit["cal_seconds"]
            ok = hit is not None and base_hit is not None and hit["step"] > 0
            row[f"{key}_speedup_steps"] = round(base_hit["step"] / hit["step"], 2) if ok else None
            row[f"{key}_speedup_seconds"] = round(base_hit["cal_seconds"] / hit["cal_seconds"], 2) if ok else None
        out["models"][name] = row
    return out


def run_race(out: Path, budget: float, seed: int = 0, variants: list[Variant] | None = None,
             batch_size: int = 32, every: int = 250, n: int = 512, work: Path = Path("runs/race"),
             label: str = "cpu", sample_steps: str = "ddim25", method: str = "ddim", probe_every: int = 0) -> dict:
    """Run every variant not already finished in `out` (resumable), then write summary.json."""
    out.mkdir(parents=True, exist_ok=True)
    variants = variants or list(VARIANTS.values())
    cal_path = out / "calibration.json"
    if cal_path.exists():
        per_step = json.loads(cal_path.read_text())
    else:
        print("race: timing every variant round-robin (seconds per step)", flush=True)
        per_step = calibrate(variants, work, seed, batch_size)
        write_json(cal_path, per_step)
    records = {}
    for v in variants:
        done = out / f"{v.name}.json"
        if done.exists():
            records[v.name] = json.loads(done.read_text())
            print(f"race: {v.name} already finished ({done}); delete it to rerun", flush=True)
            continue
        steps = max(every, int(60 * budget / per_step[v.name]))  # equal wall-clock at the calibrated speed
        print(f"race: {v.label} ({v.model}) — isolates {v.isolates}; {steps} steps "
              f"= {budget:g} min at {per_step[v.name]:.3f} s/step", flush=True)
        records[v.name] = run_variant(v, out, work, steps, seed, batch_size, every, n, sample_steps, method,
                                      probe_every)
    for name, rec in records.items():
        write_json(out / f"{name}.json", with_calibrated_seconds(rec, per_step[name]))
    summary = summarize(records) if "dit" in records else {"models": {}}
    summary.update(label=label, budget_minutes=budget, seed=seed, batch_size=batch_size, eval_every=every,
                   eval_samples=n, sampler=f"{method} {sample_steps}", threads=torch.get_num_threads(),
                   finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    write_json(out / "summary.json", summary)
    print(format_table(summary), flush=True)
    return summary


def format_table(summary: dict) -> str:
    """A plain-text table of the summary for the terminal and the notes."""
    lines = [f"{'model':22s} {'steps':>6s} {'s/step':>7s} {'two-eyes':>9s} {'FD':>7s} "
             f"{'×steps(2E)':>10s} {'×time(2E)':>9s} {'×steps(FD)':>10s} {'×time(FD)':>9s}"]
    fmt = lambda v: "—" if v is None else f"{v:.2f}"  # noqa: E731
    for row in summary.get("models", {}).values():
        lines.append(f"{row['label']:22s} {row['steps']:6d} {row['seconds_per_step']:7.3f} "
                     f"{row['final_two_eyes']:9.1%} {row['final_fd_smileys']:7.2f} "
                     f"{fmt(row['two_eyes_speedup_steps']):>10s} {fmt(row['two_eyes_speedup_seconds']):>9s} "
                     f"{fmt(row['fd_smileys_speedup_steps']):>10s} {fmt(row['fd_smileys_speedup_seconds']):>9s}")
    return "\n".join(lines)


def load_results(folder: Path) -> tuple[dict, dict]:
    """(summary, {variant: record}) of a finished race folder, e.g. data/race/cpu (lesson 08)."""
    folder = Path(folder)
    if not (folder / "summary.json").exists():
        raise FileNotFoundError(f"no race results in {folder}: run `mdt-teach race --out {folder}` first")
    summary = json.loads((folder / "summary.json").read_text())
    records = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))
               if p.stem not in ("summary", "calibration")}
    return summary, records


def curve_array(record: dict, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, calibrated seconds, values) of one metric along a variant's curve."""
    c = record["curve"]
    return (np.array([p["step"] for p in c]), np.array([p.get("cal_seconds", p["seconds"]) for p in c]),
            np.array([p[key] for p in c], dtype=float))
