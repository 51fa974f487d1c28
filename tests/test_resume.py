"""Exact resume: `kill -9` a training process, `--resume` it, and get the uninterrupted run bit for bit."""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from mdt_teach.train import list_checkpoints, load_checkpoint

STEPS, KILL_AT, EVERY = 30, 8, 4
ARGS = ["--model", "MDTv2-T/4", "--model-arg", "depth=4", "--model-arg", "hidden_size=32",
        "--model-arg", "num_heads=2", "--batch-size", "4", "--steps", str(STEPS), "--ckpt-every", str(EVERY),
        "--keep", "2", "--eval-samples", "0", "--grid-samples", "0", "--no-progress", "--threads", "1"]


def command(out, *extra):
    """`python -m mdt_teach.train` (the torchrun entry) on a tiny MDTv2."""
    return [sys.executable, "-u", "-m", "mdt_teach.train", *ARGS, "--out", str(out), *extra]


def losses(out):
    """Per-step losses from metrics.jsonl, keyed by step (each step must appear once)."""
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records]
    assert steps == list(range(1, len(steps) + 1))
    return [r["loss"] for r in records]


def final_state(out):
    """The last checkpoint of a run."""
    return load_checkpoint(list_checkpoints(out)[-1])


@pytest.mark.slow
def test_kill_9_then_resume_is_bit_identical(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    subprocess.run(command(full), check=True, capture_output=True, timeout=120)

    proc = subprocess.Popen(command(cut), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:                                   # wait for the checkpoint of step KILL_AT
        if line.startswith(f"checkpoint step {KILL_AT} "):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL                  # it really died mid-run
    killed_at = load_checkpoint(list_checkpoints(cut)[-1])["step"]
    assert KILL_AT <= killed_at < STEPS

    resumed = subprocess.run(command(cut, "--resume"), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {list_checkpoints(cut)[0].parent}" in resumed.stdout

    assert losses(cut) == losses(full)                         # the same per-step losses, exactly
    a, b = final_state(full), final_state(cut)
    assert a["step"] == b["step"] == STEPS
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    for pa, pb in zip(a["opt"]["state"].values(), b["opt"]["state"].values()):
        assert all(torch.equal(pa[k], pb[k]) for k in pa)
