"""Run the main job (`mdt-teach train`, no arguments but the seed) for several seeds; record what it reaches.

    .venv/bin/python tools/main_job.py [--seeds 0,1,2] [--out data/main_job.json] [--smoke]

Each seed runs as its own process, as a user's `make run` does, with its wall-clock time measured from the
outside (start-up, training, the final grid and the 256-sample evaluation). The record holds, per seed,
the steps, the wall time, `pair_agreement` with its funnel and pair tests, the two-eyes verdict, FD-smileys
and the chance line, plus the commit and the machine; the README's main-job sentence is `sentence(record)`
(tests/test_train_cli.py holds the two together). Run it on an otherwise idle machine: the wall time is the
claim. `--smoke` runs the same path on a miniature of the job (`SMOKE`: 2 steps of a depth-2 model, 8
evaluation samples, 1 thread) in a few seconds, for tests/test_tools.py; its record's `command` says so.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import provenance

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("steps", "train_seconds", "pair_agreement", "two_eyes", "funnel_face_found", "funnel_two_eyes",
        "funnel_passed", "pair_same_colour", "pair_same_size", "pair_mirrored", "pair_level", "expression",
        "fd_smileys", "chance_line")
SMOKE = ("--steps", "2", "--batch-size", "4", "--model-arg", "depth=2", "--model-arg", "hidden_size=32",
         "--model-arg", "num_heads=2", "--eval-samples", "8", "--grid-samples", "0", "--sample-steps", "4",
         "--threads", "1")


def run_seed(seed: int, work: Path, extra=()) -> dict:
    """One `mdt-teach train --seed S [extra]` in a fresh process; its summary and the wall time around it."""
    out = work / f"seed{seed}"
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mdt_teach", "train", "--seed", str(seed), "--out", str(out),
                    "--no-progress", *extra], cwd=ROOT, check=True)
    wall = time.perf_counter() - began
    summary = json.loads((out / "summary.json").read_text())
    return {"seed": seed, "wall_seconds": round(wall, 1), **{k: summary.get(k) for k in KEYS},
            "run": str(out)}


def sentence(record: dict) -> str:
    """The README's account of the main job, from the record."""
    runs = record["runs"]
    seeds = ", ".join(str(r["seed"]) for r in runs)
    pair = ", ".join(f"{r['pair_agreement']:.1%}" for r in runs)
    walls = ", ".join(f"{r['wall_seconds'] / 60:.1f}" for r in runs)
    chance = max(max(r["chance_line"].values()) for r in runs)
    return (f"Measured by `tools/main_job.py` at commit {record['commit']} ({record['machine']}): seeds {seeds} "
            f"reach pair agreement {pair} on 256 samples after {runs[0]['steps']} steps, in {walls} min of "
            f"wall-clock each; a painter that never looks at the other eye scores at most {chance:.1%}.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "main_job.json")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run folders here (default: a temp dir)")
    parser.add_argument("--smoke", action="store_true", help="a miniature of the job (SMOKE), for the tests")
    args = parser.parse_args(argv)
    made = provenance(__file__, argv)           # before the runs: the code they run
    extra = SMOKE if args.smoke else ()
    machine = f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, 2 torch threads"
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        runs = [run_seed(int(s), work, extra) for s in args.seeds.split(",")]
    record = {**made, "machine": machine, "command": " ".join(["mdt-teach train", *extra]), "runs": runs}
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(sentence(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
