"""DDP on CPU (gloo): two torchrun processes make the same update as one process with the same global batch.

Every random draw of a step is seeded per shard of the global batch, so one process accumulating two
shards and two processes holding one shard each see the same data, timesteps, noise, label dropout and
masks; only the gradient all-reduce differs. The 2-process run also shards Adan's state with ZeRO and
clips on the true global norm (a small max_grad_norm makes the clip active), which must equal Adan's
own clipping in the single process.
"""
import json
import subprocess
import sys

import pytest
import torch

from mdt_teach.checkpoint import list_checkpoints, read_checkpoint
from mdt_teach.recipe import TrainConfig
from mdt_teach.train import Trainer

STEPS = 3
MODEL = dict(depth=4, hidden_size=32, num_heads=2)


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process(tmp_path):
    two = tmp_path / "two"
    args = ["--model", "MDTv2-T/4", *sum((["--model-arg", f"{k}={v}"] for k, v in MODEL.items()), []),
            "--batch-size", "8", "--steps", str(STEPS), "--ckpt-every", "100", "--max-grad-norm", "0.05", "--opt", "adan",
            "--eval-samples", "0", "--grid-samples", "0", "--no-progress", "--threads", "1", "--zero",
            "--out", str(two)]
    launched = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               "-m", "mdt_teach", "train", *args], capture_output=True, text=True, timeout=150)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert "global batch 8 (2 process(es))" in launched.stdout

    one = Trainer(TrainConfig(model="MDTv2-T/4", model_args=dict(MODEL), batch_size=8, grad_accum=2, steps=STEPS,
                              ckpt_every=100, max_grad_norm=0.05, opt="adan", eval_samples=0, grid_samples=0,
                              progress=False, threads=1, out=str(tmp_path / "one")), log=lambda *a, **k: None)
    one.fit()

    a, b = read_checkpoint(list_checkpoints(two)[-1]), read_checkpoint(list_checkpoints(one.out)[-1])
    assert a["step"] == b["step"] == STEPS and a["world_size"] == 2 and len(a["rng"]) == 2
    worst = max((a["model"][k] - b["model"][k]).abs().max().item() for k in a["model"])
    assert worst <= 1e-6
    assert a["model"]["final_layer.linear.weight"].abs().max() > 1e-4   # zero at init: the updates happened
    la = [json.loads(ln) for ln in (two / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(ln) for ln in (one.out / "metrics.jsonl").read_text().splitlines()]
    assert len(la) == len(lb) == STEPS and max(abs(x["loss"] - y["loss"]) for x, y in zip(la, lb)) <= 1e-6
    assert all(r["clip"] < 1 for r in la)                      # the global-norm clip was active
    # the consolidated ZeRO state holds Adan's 4 buffers for every parameter, like the unsharded one
    assert len(a["opt"]["state"]) == len(b["opt"]["state"])
    for sa, sb in zip(a["opt"]["state"].values(), b["opt"]["state"].values()):
        assert set(sa) == set(sb) == {"exp_avg", "exp_avg_diff", "exp_avg_sq", "neg_pre_grad"}
        torch.testing.assert_close(sa["exp_avg_sq"], sb["exp_avg_sq"], atol=1e-9, rtol=1e-5)
