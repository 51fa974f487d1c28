"""Train the three small models lesson 11 compares — DiT, MDTv2 and MDTv2 with mask ratio 0, same width,
depth, data order and seed — and keep each one's EMA weights at equal steps (float16, data/probe/).

    python tools/make_probe_checkpoints.py [--stages 600,3000] [--threads 2] [--out data/probe]

Each model trains once on the default world with the project's Trainer (the tiny recipe: AdamW, lr 1e-3
for DiT and 4e-3 for both MDTv2s, EMA 0.999 with warm-up) at a reduced size (depth 4, width 96: about 0.4 of the tiny presets'
parameters) so that all checkpoints together stay small; a hook saves the EMA at every stage. Runs go to
a temporary folder; only the checkpoints and data/probe/index.json (steps, training seconds, and per entry the
command and commit that made it) are kept. tests/test_tools.py runs a miniature: `--stages 1,2 --batch-size 4
--model-arg depth=2 --model-arg hidden_size=32 --model-arg num_heads=2 --out TMP`.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mdt_teach.checkpoint import write_json
from mdt_teach.cli.train import parse_model_args
from mdt_teach.lessons import save_lesson_checkpoint
from mdt_teach.recipe import TrainConfig
from mdt_teach.train import Trainer
from provenance import provenance

ROOT = Path(__file__).resolve().parent.parent
SIZE = dict(depth=4, hidden_size=96, num_heads=4)
MODELS = {  # name → (preset, model_args on top of SIZE)
    "dit": ("DiT-T/4", {}),
    "mdtv2": ("MDTv2-T/4", {}),
    "mdtv2_mask0": ("MDTv2-T/4", {"mask_ratio": 0.0, "mask_ratio_jitter": 0.0}),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stages", default="600,3000", help="steps at which the EMA is kept (committed: 600, 3000)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", default=str(ROOT / "data" / "probe"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="override the reduced size (SIZE), repeatable, e.g. --model-arg depth=2")
    args = parser.parse_args(argv)
    made = provenance(__file__, argv)           # before the runs: the code they run
    size = {**SIZE, **parse_model_args(args.model_arg)}
    stages = sorted(int(s) for s in args.stages.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    index_path = out / "index.json"
    index = __import__("json").loads(index_path.read_text()) if index_path.exists() else {}
    for name in args.models.split(","):
        preset, extra = MODELS[name]
        started = time.time()

        def keep(trainer, logs, name=name, started=started):
            if trainer.step in stages:
                path = out / f"{name}_{trainer.step:05d}.pt"
                info = {"model": preset, "model_args": {**size, **extra}, "world": trainer.cfg.world,
                        "steps": trainer.step, "seed": 0, **made,
                        "batch_size": trainer.cfg.batch_size, "weights": "EMA",
                        "train_seconds": round(time.time() - started, 1),
                        "recipe": {"opt": trainer.cfg.opt, "lr": trainer.cfg.lr, "weighting": trainer.cfg.weighting}}
                save_lesson_checkpoint(trainer.ema.model, path, info)
                index[path.name] = info
                write_json(index_path, index)
                print(f"{path.name}: {path.stat().st_size / 2**20:.2f} MiB after {info['train_seconds']:.0f} s",
                      flush=True)

        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(model=preset, model_args={**size, **extra}, steps=stages[-1], batch_size=args.batch_size,
                              seed=0, profile="tiny", out=str(Path(tmp) / name), eval_samples=0, grid_samples=0,
                              ckpt_every=10**9, keep=1, progress=False, threads=args.threads)
            Trainer(cfg, log=lambda *a, **k: None).fit(hooks=keep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
