"""What a training run shows and leaves behind (rank 0 only): the run folder, the progress bar, the logs.

runs/<name>/
  config.json        the resolved TrainConfig
  metrics.jsonl      one line per optimizer step: loss parts, lr (and the clip coefficient when the trainer clips)
  eval.jsonl         pair agreement and two-eyes of every sample grid; + funnel, pair tests, FD-smileys of every
                     evaluation
  samples/           EMA sample grids step_<step>.png and final.png (upscaled so a 32 px face can be seen)
  ckpt/              the newest --keep checkpoints ckpt_<step>.pt
  loss_curve.png     the loss (and its moving average) against the step
  summary.json       steps, wall time, the final scores and, on smileys, the chance line (`painters.blind_rates`)
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .checkpoint import atomic_write, write_json
from .metrics import score_smileys, two_eyes
from .painters import blind_rates
from .smileys import WORLDS
from .sampling import generate
from .images import save_grid

GRID_SCALE = 4   # a 32 px face becomes 128 px in the saved grids (nearest neighbour: no blur)


# ----------------------------------------------------------------------------------------------
# JSON lines
# ----------------------------------------------------------------------------------------------

def finite_or_none(v):
    """JSON has no NaN: write null instead."""
    return v if isinstance(v, (int, str)) or (v is not None and math.isfinite(v)) else None


def append_jsonl(path: Path, record: dict) -> None:
    """One JSON line, flushed (a kill -9 loses at most the line being written)."""
    with open(path, "a") as f:
        f.write(json.dumps({k: finite_or_none(v) for k, v in record.items()}) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """All records of a .jsonl file (none when it does not exist)."""
    path = Path(path)
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []


def truncate_jsonl(path: Path, step: int) -> None:
    """Drop the lines of a step log written after `step` (by a run that was killed after its checkpoint)."""
    kept = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    if Path(path).exists():
        atomic_write(path, "".join(json.dumps(r) + "\n" for r in kept))


# ----------------------------------------------------------------------------------------------
# The loss curve
# ----------------------------------------------------------------------------------------------

def plot_loss_curve(metrics: list[dict], path: Path, window: int = 50) -> None:
    """loss per step (thin) and its moving average (thick), log scale, saved as a PNG.

    Drawn on a pyplot-free Figure: switching the global backend to Agg here would silence every later
    figure of a notebook that trains (the lesson 08 bug the browser check found)."""
    from matplotlib.figure import Figure

    steps = np.array([m["step"] for m in metrics])
    loss = np.array([m["loss"] if m["loss"] is not None else np.nan for m in metrics])
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot(steps, loss, lw=0.5, alpha=0.4, label="loss")
    if len(loss) >= window:
        ax.plot(steps[window - 1:], np.convolve(loss, np.ones(window) / window, mode="valid"), lw=2,
                label=f"mean of {window}")
    ax.set(xlabel="step", ylabel="loss", yscale="log", title="training loss")
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=100, format="png"))


# ----------------------------------------------------------------------------------------------
# The run folder
# ----------------------------------------------------------------------------------------------

class RunLogger:
    """Rank 0's outputs: folder, config, per-step metrics, progress bar, sample grids, evaluations."""

    def __init__(self, trainer):
        self.t = trainer
        self.out = Path(trainer.out)
        self.metrics_path, self.eval_path = self.out / "metrics.jsonl", self.out / "eval.jsonl"
        self.bar = None

    def start(self) -> None:
        """Create the folder (validation is over), drop log lines past the checkpoint, open the bar."""
        cfg = self.t.cfg
        (self.out / "samples").mkdir(parents=True, exist_ok=True)
        write_json(self.out / "config.json", asdict(cfg))
        truncate_jsonl(self.metrics_path, self.t.step)
        truncate_jsonl(self.eval_path, self.t.step)
        print(f"mdt-teach train: {cfg.model} on {cfg.data}, global batch {cfg.batch_size} "
              f"({self.t.dist.world_size} process(es)), {cfg.opt} lr {cfg.lr:g}, weighting {cfg.weighting}; "
              f"writing to {self.out}/", flush=True)
        by_time = cfg.steps is None   # a time budget: the bar counts training seconds and shows what is left
        self.bar = tqdm(total=round(60 * cfg.minutes) if by_time else cfg.steps,
                        initial=0 if by_time else self.t.step, unit="s" if by_time else "step",
                        desc="training time" if by_time else "steps", disable=not cfg.progress,
                        dynamic_ncols=True, mininterval=1.0,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                   "[{elapsed}<{remaining}{postfix}]")

    def step(self, logs: dict) -> None:
        """Log one step; advance the bar by a step, or by the training seconds of a time budget."""
        append_jsonl(self.metrics_path, {"step": self.t.step, **logs, "time": round(self.t.elapsed(), 3)})
        if self.t.cfg.steps is None:
            self.bar.update(min(self.bar.total, round(self.t.session_seconds())) - self.bar.n)
            self.bar.set_postfix(step=self.t.step, loss=f"{logs['loss']:.4f}", refresh=False)
        else:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)

    def periodic(self) -> None:
        """Sample grids and evaluations at their cadence."""
        cfg, step = self.t.cfg, self.t.step
        if cfg.sample_every and step % cfg.sample_every == 0:
            self.grid(self.out / "samples" / f"step_{step:07d}.png")
        if cfg.eval_every and step % cfg.eval_every == 0:
            self.evaluate(cfg.eval_samples)

    def _generate(self, n: int):
        """n EMA samples, classes in turn, from a fixed sampling seed (the training RNG is untouched)."""
        cfg = self.t.cfg
        return generate(self.t.ema.model, n, diffusion=self.t.diffusion, steps=cfg.sample_steps,
                        method=cfg.sample_method, cfg_scale=cfg.cfg_scale, seed=cfg.seed)

    def grid(self, path: Path) -> None:
        """Save an EMA sample grid; on smileys log its two-eyes score too."""
        if not self.t.cfg.grid_samples:
            return
        with self.t.paused():
            images, labels = self._generate(self.t.cfg.grid_samples)
        save_grid(images, path, nrow=8, scale=GRID_SCALE)
        if self.t.cfg.data in WORLDS:
            result = two_eyes(images.clamp(-1, 1), labels)
            append_jsonl(self.eval_path, {"step": self.t.step, "kind": "grid", "n": len(images),
                                          "pair_agreement": result.pair_score, "two_eyes": result.score})
            self.bar.write(f"step {self.t.step}: grid {path.name}, pair agreement {result.pair_score:.0%}, "
                           f"two-eyes {result.score:.0%}")

    def evaluate(self, n: int) -> dict:
        """Pair agreement, two-eyes and FD-smileys of n EMA samples (smileys worlds only)."""
        if not n or self.t.cfg.data not in WORLDS:
            return {}
        with self.t.paused():
            images, labels = self._generate(n)
            scores = score_smileys(images, labels, world=self.t.cfg.data)
        append_jsonl(self.eval_path, {"step": self.t.step, "kind": "eval", "n": n, **scores})
        fd = "n/a" if scores["fd_smileys"] is None else f"{scores['fd_smileys']:.2f}"
        self.bar.write(f"step {self.t.step}: pair agreement {scores['pair_agreement']:.1%}, two-eyes "
                       f"{scores['two_eyes']:.1%}, FD-smileys {fd} ({n} samples)")
        return scores

    def finish(self) -> dict:
        """Final grid, evaluation, loss curve and summary; print where everything is."""
        self.bar.close()
        train_seconds = self.t.elapsed()
        self.grid(self.out / "samples" / "final.png")
        scores = self.evaluate(self.t.cfg.eval_samples)
        metrics = read_jsonl(self.metrics_path)
        if metrics:
            plot_loss_curve(metrics, self.out / "loss_curve.png")
        chance = {"chance_line": blind_rates(self.t.cfg.data)} if scores else {}
        summary = {"steps": self.t.step, "train_seconds": round(train_seconds, 1),
                   "seconds_per_step": round(train_seconds / max(1, self.t.step), 4),
                   "final_loss": metrics[-1]["loss"] if metrics else None, **scores, **chance,
                   "checkpoint": str(self.t.out / "ckpt"), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        write_json(self.out / "summary.json", summary)
        written = [label for name, label in (("samples", "samples"), ("metrics.jsonl", "metrics.jsonl"),
                                             ("loss_curve.png", "loss_curve.png"), ("ckpt", "checkpoints"))
                   if (self.out / name).is_file() or (self.out / name).is_dir() and any((self.out / name).iterdir())]
        print(f"mdt-teach train: {self.t.step} steps in {train_seconds / 60:.1f} min; "
              f"{', '.join(written + ['summary.json'])} in {self.out}/", flush=True)   # only what is there
        return summary
