"""`mdt-teach train` and the run folder it writes (rank 0 only).

runs/<name>/
  config.json        the resolved TrainConfig
  metrics.jsonl      one line per optimizer step: loss parts, lr (and the clip coefficient when the trainer clips)
  eval.jsonl         two-eyes score of every sample grid; two-eyes + FD-smileys of every evaluation
  samples/           EMA sample grids step_<step>.png and final.png
  ckpt/              the newest --keep checkpoints ckpt_<step>.pt
  loss_curve.png     the loss (and its moving average) against the step
  summary.json       steps, wall time, the final scores

With no arguments it is the main job: MDTv2-T/4 on smileys in the tiny profile, 8.3 minutes of training
plus the final grid and evaluation (≤ 10 minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------

_FLAGS = [  # (flag, type, help); every default is None so the trainer knows what was given
    ("--model", str, "preset name, e.g. MDTv2-T/4, DiT-T/4, MDTv2-XL/2 (default: the profile's)"),
    ("--data", str, "smileys | digits | PATH to an image folder or a latent cache (default smileys)"),
    ("--steps", int, "optimizer steps (default: train until --minutes runs out)"),
    ("--batch-size", int, "GLOBAL batch over all processes and accumulation steps (default: the profile's)"),
    ("--out", str, "run folder (default runs/<model>-<data>-<time>)"),
    ("--seed", int, "seed of the init, the data order and every training draw (default 0)"),
    ("--ckpt-every", int, "checkpoint every K steps (default 500)"),
    ("--minutes", float, "training-time budget in minutes; sample grids and evaluations do not count "
                         "(default 8.3 when --steps is not given)"),
    ("--profile", str, "tiny | small | full (default: auto)"),
    ("--dtype", str, "float32 | float16 | bfloat16 autocast (default: the profile's)"),
    ("--opt", str, "adan | adamw (default: the model's recipe)"),
    ("--lr", float, "learning rate (default: the recipe's; constant)"),
    ("--weighting", str, "loss weighting: none | min_snr | soft_min_snr | p2"),
    ("--mask-ratio", float, "MDT mask ratio r (MDTv2 draws U[r, r + jitter))"),
    ("--max-grad-norm", float, "clip the global gradient norm (0 = off)"),
    ("--ema-decay", float, "EMA decay (default 0.9999; tiny presets 0.999)"),
    ("--warmup-steps", int, "linear lr warm-up steps (default 0, as official)"),
    ("--grad-accum", int, "accumulation shards per process and step (default 1)"),
    ("--keep", int, "keep the newest K checkpoints (default 3)"),
    ("--sample-every", int, "EMA sample grid every K steps (default 500; 0 = the end only)"),
    ("--eval-every", int, "smileys: two-eyes + FD every K steps (default: the end only)"),
    ("--eval-samples", int, "samples of the final evaluation (default 256; 0 = none)"),
    ("--grid-samples", int, "images per sample grid (default 32; 0 = none)"),
    ("--sample-steps", str, "DDPM respacing for grids and evaluation: 50, 100, or ddim50 (ADM's DDIM stride) (default 50)"),
    ("--cfg", float, "guidance scale for grids and evaluation (default 1 = none)"),
    ("--num-workers", int, "DataLoader workers for image folders and latent caches (default 0)"),
    ("--threads", int, "torch CPU threads per process (default: the profile's, split between local ranks)"),
]
_SWITCHES = [
    ("--resume", "continue the run in --out (default: the newest run under runs/) from its last checkpoint"),
    ("--compile", "torch.compile the model"),
    ("--zero", "shard the optimizer state over the processes (ZeroRedundancyOptimizer)"),
    ("--no-ema-warmup", "EMA without warm-up (official)"),
    ("--no-progress", "no tqdm progress bar"),
]
_RENAME = {"cfg": "cfg_scale"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `mdt-teach train` flags (also used by `python -m mdt_teach.train` under torchrun)."""
    for flag, kind, help_text in _FLAGS:
        parser.add_argument(flag, type=kind, default=None, help=help_text)
    for flag, help_text in _SWITCHES:
        parser.add_argument(flag, action="store_true", help=help_text)
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="build_model override, repeatable, e.g. --model-arg depth=2")


def _literal(text: str):
    """'2' → 2, '0.3' → 0.3, 'None' → None, anything else stays a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_model_args(items: list[str]) -> dict:
    """['depth=2', 'hidden_size=32'] → {'depth': 2, 'hidden_size': 32}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-arg {item!r} is not KEY=VALUE; write e.g. --model-arg depth=2")
        out[key.strip().replace("-", "_")] = _literal(value.strip())
    return out


def config_from_args(args: argparse.Namespace):
    """A TrainConfig holding only what was given on the command line (the rest: defaults and recipe)."""
    from .train import TrainConfig

    given = {_RENAME.get(flag[2:].replace("-", "_"), flag[2:].replace("-", "_")):
             getattr(args, flag[2:].replace("-", "_")) for flag, _, _ in _FLAGS}
    given = {k: v for k, v in given.items() if v is not None}
    model_args = parse_model_args(args.model_arg)
    if "mask_ratio" in given:
        model_args["mask_ratio"] = given.pop("mask_ratio")
    flags = dict(resume=args.resume, compile=args.compile, zero=args.zero, progress=not args.no_progress)
    if args.no_ema_warmup:
        flags["ema_warmup"] = False
    return TrainConfig(**given, **flags, model_args=model_args)


def run(args: argparse.Namespace) -> int:
    """Validate everything, then train; a non-finite loss ends with one line and exit code 3."""
    import torch.distributed as torch_dist

    from .train import NonFiniteLossError, Trainer

    try:
        trainer = Trainer(config_from_args(args))
        trainer.fit()
    except NonFiniteLossError as err:
        print(f"mdt-teach train: {err}", file=sys.stderr, flush=True)
        return 3
    finally:
        if torch_dist.is_available() and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
    return 0


# --------------------------------------------------------------------------------------------
# The run folder
# --------------------------------------------------------------------------------------------

def _append_jsonl(path: Path, record: dict) -> None:
    """One JSON line, flushed (a kill -9 loses at most the line being written)."""
    from .train import _finite_or_none

    with open(path, "a") as f:
        f.write(json.dumps({k: _finite_or_none(v) for k, v in record.items()}) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """All records of a .jsonl file."""
    path = Path(path)
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []


def plot_loss_curve(metrics: list[dict], path: Path, window: int = 50) -> None:
    """loss per step (thin) and its moving average (thick), log scale, saved as a PNG.

    Drawn on a pyplot-free Figure: switching the global backend to Agg here would silence every later
    figure of a notebook that trains (the lesson 08 bug the browser check found)."""
    import numpy as np
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
    fig.savefig(path, dpi=100)


class RunLogger:
    """Rank 0's outputs: folder, config, per-step metrics, progress bar, sample grids, evaluations."""

    def __init__(self, trainer):
        self.t = trainer
        self.out = Path(trainer.out)
        self.metrics_path, self.eval_path = self.out / "metrics.jsonl", self.out / "eval.jsonl"
        self.bar = None

    def start(self) -> None:
        """Create the folder (validation is over), drop log lines past the checkpoint, open the bar."""
        from tqdm.auto import tqdm

        from .train import truncate_jsonl

        (self.out / "samples").mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(asdict(self.t.cfg), indent=1))
        truncate_jsonl(self.metrics_path, self.t.step)
        truncate_jsonl(self.eval_path, self.t.step)
        cfg = self.t.cfg
        print(f"mdt-teach train: {cfg.model} on {cfg.data}, global batch {cfg.batch_size} "
              f"({self.t.dist.world_size} process(es)), {cfg.opt} lr {cfg.lr:g}, weighting {cfg.weighting}; "
              f"writing to {self.out}/", flush=True)
        self.bar = tqdm(total=cfg.steps, initial=self.t.step, disable=not cfg.progress, unit="step",
                        dynamic_ncols=True, mininterval=1.0)

    def step(self, logs: dict) -> None:
        """Log one step."""
        _append_jsonl(self.metrics_path, {"step": self.t.step, **logs, "time": round(self.t.elapsed(), 3)})
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
        from .eval_cli import generate

        cfg = self.t.cfg
        return generate(self.t.ema.model, n, diffusion=self.t.diffusion, steps=cfg.sample_steps,
                        cfg_scale=cfg.cfg_scale, seed=cfg.seed)

    def grid(self, path: Path) -> None:
        """Save an EMA sample grid; on smileys log its two-eyes score too."""
        from .viz.images import save_grid

        if not self.t.cfg.grid_samples:
            return
        with self.t.paused():
            images, labels = self._generate(self.t.cfg.grid_samples)
        save_grid(images, path, nrow=8)
        if self.t.cfg.data == "smileys":
            from .metrics import two_eyes

            score = two_eyes(images.clamp(-1, 1), labels).score
            _append_jsonl(self.eval_path, {"step": self.t.step, "kind": "grid", "n": len(images), "two_eyes": score})
            self.bar.write(f"step {self.t.step}: grid {path.name}, two-eyes {score:.0%}")

    def evaluate(self, n: int) -> dict:
        """Two-eyes score and FD-smileys of n EMA samples (smileys only)."""
        from .eval_cli import score_smileys

        if not n or self.t.cfg.data != "smileys":
            return {}
        with self.t.paused():
            images, labels = self._generate(n)
            scores = score_smileys(images, labels)
        _append_jsonl(self.eval_path, {"step": self.t.step, "kind": "eval", "n": n, **scores})
        fd = "n/a" if scores["fd_smileys"] is None else f"{scores['fd_smileys']:.2f}"
        self.bar.write(f"step {self.t.step}: two-eyes {scores['two_eyes']:.1%}, FD-smileys {fd} ({n} samples)")
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
        summary = {"steps": self.t.step, "train_seconds": round(train_seconds, 1),
                   "seconds_per_step": round(train_seconds / max(1, self.t.step), 4),
                   "final_loss": metrics[-1]["loss"] if metrics else None, **scores,
                   "checkpoint": str(self.t.out / "ckpt"), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1))
        print(f"mdt-teach train: {self.t.step} steps in {train_seconds / 60:.1f} min; samples, metrics.jsonl, "
              f"loss_curve.png and checkpoints in {self.out}/", flush=True)
        return summary
