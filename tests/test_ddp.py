"""The paper-scale path rehearsed on the CPU, stage by stage, with torchrun (gloo) where the paper uses it:

    smileys as ADM-named JPEGs → cache-latents (tiny VAE, both orientations) → torchrun × 2: train in the
    `full` profile with ZeRO → torchrun × 2: sample-fid → one official .npz → fid against real faces

Each stage's output is checked, not only its exit code. The training stage also proves DDP right: two
processes holding one shard each make the same update as one process accumulating both shards (every
draw of a step is seeded per shard of the global batch), with Adan's state sharded by ZeRO and clipping on
the true global norm (a small max_grad_norm makes the clip active). The sampling stage proves the samples
do not depend on the number of processes: two ranks write the same .npz as one.
"""
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from mdt_teach.checkpoint import list_checkpoints, read_checkpoint
from mdt_teach.cli import main
from mdt_teach.compat import load_model
from mdt_teach.data import smileys_batch
from mdt_teach.fid_samples import FidSampling, sample_for_fid
from mdt_teach.latent_cache import LatentCache
from mdt_teach.recipe import TrainConfig
from mdt_teach.sampling import to_uint8
from mdt_teach.train import Trainer

STEPS = 3
MODEL = dict(depth=4, hidden_size=32, num_heads=2, patch_size=2)   # 4×4 latents of 32×32 images → 4 tokens
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "mdt_teach"]


class Stages:
    """Prints each stage's seconds (visible with pytest -s), so the rehearsal's cost can be read off."""

    def __init__(self):
        self.t = time.monotonic()

    def __call__(self, name: str) -> None:
        now = time.monotonic()
        print(f"rehearsal stage {name}: {now - self.t:.1f} s", file=sys.__stderr__)   # past capsys
        self.t = now


def _torchrun(*args, timeout=180):
    done = subprocess.run([*TORCHRUN, *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_paper_path_rehearsal_on_cpu(tmp_path, capsys):
    stage = Stages()
    # 1. an ImageNet-style folder: ADM file names (class_index.JPEG), JPEG-compressed
    images, labels = smileys_batch(24, seed=5)
    folder = tmp_path / "train"
    folder.mkdir()
    names = ["smile", "frown", "surprised", "neutral"]
    for i, (x, y) in enumerate(zip(images, labels)):
        Image.fromarray(to_uint8(x[None])[0].numpy()).save(folder / f"{names[y]}_{i:05d}.JPEG", quality=95)

    stage("1 ADM-named JPEGs")
    # 2. cache-latents: both orientations of every image, float16
    cache = tmp_path / "latents"
    assert main(["cache-latents", str(folder), str(cache), "--vae", "tiny", "--image-size", "32", "--batch-size", "8",
                 "--shard-size", "10", "--workers", "0", "--no-progress", "--device", "cpu"]) == 0
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["complete"] and manifest["dtype"] == "float16" and manifest["orientations"] == ["as is", "mirrored"]
    assert manifest["num_images"] == 24 and manifest["latent_shape"] == [4, 4, 4] and manifest["num_classes"] == 4
    read = LatentCache(cache, sample=False)
    assert not torch.equal(read.moments(0, True)[0], read.moments(0, False)[0])

    stage("2 cache-latents")
    # 3. torchrun × 2, the full profile's code path (latent cache, global batch, ZeRO) vs one process
    two = tmp_path / "two"
    args = ["--profile", "full", "--data", str(cache), "--model", "MDTv2-T/4",
            *sum((["--model-arg", f"{k}={v}"] for k, v in MODEL.items()), []),
            "--batch-size", "8", "--steps", str(STEPS), "--ckpt-every", "100", "--max-grad-norm", "0.05",
            "--opt", "adan", "--eval-samples", "0", "--grid-samples", "0", "--no-progress", "--threads", "1",
            "--zero", "--out", str(two)]
    out = _torchrun("train", *args)
    assert "global batch 8 (2 process(es))" in out
    stage("3a torchrun x 2 train")
    one = Trainer(TrainConfig(profile="full", data=str(cache), model="MDTv2-T/4", model_args=dict(MODEL), batch_size=8,
                              grad_accum=2, steps=STEPS, ckpt_every=100, max_grad_norm=0.05, opt="adan", eval_samples=0,
                              grid_samples=0, progress=False, threads=1, zero=True, out=str(tmp_path / "one")),
                  log=lambda *a, **k: None)
    one.fit()
    a, b = read_checkpoint(list_checkpoints(two)[-1]), read_checkpoint(list_checkpoints(one.out)[-1])
    assert a["step"] == b["step"] == STEPS and a["world_size"] == 2 and len(a["rng"]) == 2
    assert a["model_config"]["in_channels"] == 4 and a["model_config"]["input_size"] == 4
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

    stage("3b one-process train + comparison")
    # 4. sample-fid with torchrun × 2: one .npz in the official layout, equal to a 1-process run
    ckpt = list_checkpoints(two)[-1]
    samples = tmp_path / "samples"
    out = _torchrun("sample-fid", "--ckpt", str(ckpt), "--out", str(samples), "--num-samples", "10",
                    "--shard-size", "3",
                    "--steps", "4", "--vae-decoder", "tiny", "--no-progress")
    npz = samples / "samples_10x32x32x3.npz"
    assert f"→ {npz}" in out
    with np.load(npz) as got:
        assert got["arr_0"].shape == (10, 32, 32, 3) and got["arr_0"].dtype == np.uint8
        assert got["arr_1"].shape == (10,) and set(got["arr_1"].tolist()) <= {0, 1, 2, 3}
        assert got["arr_0"].std() > 1                              # decoded pictures, not a constant
        stage("4a torchrun x 2 sample-fid")
        model, _ = load_model(ckpt)
        single = sample_for_fid(model, FidSampling(ckpt=str(ckpt), n=10, steps="4", vae_decoder="tiny", shard_size=5),
                                tmp_path / "single", progress=False)
        with np.load(single) as ref:
            assert np.array_equal(ref["arr_1"], got["arr_1"])
            assert np.abs(ref["arr_0"].astype(int) - got["arr_0"].astype(int)).max() <= 1   # float order only

    stage("4b one-process sample-fid + comparison")
    # 5. fid between the samples and real faces (the committed smileys feature net stands in for Inception)
    real = tmp_path / "real.npz"
    np.savez(real, arr_0=to_uint8(smileys_batch(64, seed=9)[0]).numpy())
    capsys.readouterr()
    assert main(["fid", str(npz), str(real), "--features", "smileys"]) == 0
    value = float(capsys.readouterr().out.split()[1])
    assert np.isfinite(value) and value > 0
    assert main(["fid", str(real), str(real), "--features", "smileys"]) == 0
    assert abs(float(capsys.readouterr().out.split()[1])) < 1e-6
    stage("5 fid")
