"""Reproducible by default: at the default thread count, in separate processes, the same seed gives the same
weights bit for bit, and `kill -9` + `--resume` gives the uninterrupted run bit for bit (docs/reproducibility.md).

The processes run `python -m mdt_teach train` with no --threads and no MDT_THREADS, i.e. what a user gets
(2 threads on the 2-core CI machine). One thread, the race's setting, is held by the race's own kill -9 test
(tests/test_race.py).
"""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from mdt_teach.checkpoint import list_checkpoints, read_checkpoint

STEPS, KILL_AT, EVERY = 30, 8, 4
ARGS = ["--model", "MDTv2-T/4", "--model-arg", "depth=4", "--model-arg", "hidden_size=32",
        "--model-arg", "num_heads=2", "--batch-size", "4", "--steps", str(STEPS), "--ckpt-every", str(EVERY),
        "--keep", "2", "--eval-samples", "0", "--grid-samples", "0", "--no-progress"]


def command(out, *extra):
    """`python -m mdt_teach train` (what torchrun launches) on a small MDTv2 with the default threads."""
    return [sys.executable, "-u", "-m", "mdt_teach", "train", *ARGS, "--out", str(out), *extra]


def environment():
    """The user's environment, without a thread override."""
    return {k: v for k, v in os.environ.items() if k != "MDT_THREADS"}


def losses(out):
    """Per-step losses from metrics.jsonl, keyed by step (each step must appear once)."""
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records]
    assert steps == list(range(1, len(steps) + 1))
    return [r["loss"] for r in records]


def assert_same_state(a_out, b_out):
    """The last checkpoints of two runs hold bit-identical weights, EMA and optimizer state."""
    a, b = read_checkpoint(list_checkpoints(a_out)[-1]), read_checkpoint(list_checkpoints(b_out)[-1])
    assert a["step"] == b["step"] == STEPS
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    for pa, pb in zip(a["opt"]["state"].values(), b["opt"]["state"].values()):
        assert all(torch.equal(pa[k], pb[k]) for k in pa)


def kill_and_resume(out):
    """Start a run, kill -9 it right after its checkpoint of step KILL_AT, then --resume it to the end."""
    proc = subprocess.Popen(command(out), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=environment())
    for line in proc.stdout:                                   # wait for the checkpoint of step KILL_AT
        if line.startswith(f"checkpoint step {KILL_AT} "):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL                  # it really died mid-run
    killed_at = read_checkpoint(list_checkpoints(out)[-1])["step"]
    assert KILL_AT <= killed_at < STEPS
    resumed = subprocess.run(command(out, "--resume"), capture_output=True, text=True, timeout=180,
                             env=environment())
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {list_checkpoints(out)[0].parent}" in resumed.stdout


@pytest.mark.slow
def test_same_seed_twice_and_kill_9_resume_are_bit_identical(tmp_path):
    first, second, cut = tmp_path / "first", tmp_path / "second", tmp_path / "cut"
    for out in (first, second):
        subprocess.run(command(out), check=True, capture_output=True, timeout=180, env=environment())
    # the default really is more than one thread here, or the test would prove nothing new
    threads = subprocess.run([sys.executable, "-c", "import mdt_teach; print(mdt_teach.setup(quiet=True).threads)"],
                             capture_output=True, text=True, env=environment()).stdout.strip()
    assert int(threads) == min(os.cpu_count(), 8)
    assert losses(first) == losses(second)                     # two runs, one seed: the same, exactly
    assert_same_state(first, second)

    kill_and_resume(cut)
    assert losses(cut) == losses(first)                        # the same per-step losses, exactly
    assert_same_state(cut, first)
