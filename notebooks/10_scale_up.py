# %% [markdown]
# # 10 · Scale up: MDTv2-XL/2 on ImageNet-256
# *From smileys on a laptop to the paper's run: latents, memory plans, torchrun, resume and FID.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mdt-teach/mdt-teach/blob/main/notebooks/10_scale_up.ipynb)

# %%
# Colab only: fetch the course at this notebook's git ref and install it (does nothing elsewhere).
import subprocess
import sys

if "google.colab" in sys.modules:
    REPO, REF = "https://github.com/mdt-teach/mdt-teach", "main"
    subprocess.run(["git", "clone", "--depth", "1", "--branch", REF, REPO, "/content/mdt-teach"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/mdt-teach"], check=True)
    sys.path.insert(0, "/content/mdt-teach")

# %%
import mdt_teach

run = mdt_teach.setup()

# %% [markdown]
# ## What you'll learn
# Everything so far ran on 32×32 pixels. The paper trains MDTv2-XL/2 (742 M parameters) on
# **ImageNet-256 latents** with a global batch of 256 on 32 GPUs. The code is the same; five things
# change, and this lesson walks through each with a piece you can run here:
# 1. **latents**: images go through the SD-VAE once, into a sharded cache;
# 2. **memory**: a plan per GPU (weights, gradients, Adan's 4 buffers, EMA, activations), with ZeRO;
# 3. **precision and speed**: bf16 autocast and `torch.compile`;
# 4. **launch**: `torchrun` on one node or many, with a CPU dry run of the same code path;
# 5. **resume and evaluate**: preemption-safe checkpoints, then FID-50K with the standard evaluator.
#
# Read along: [MDT](https://arxiv.org/abs/2303.14389) (arXiv 2303.14389); [latent
# diffusion](https://arxiv.org/abs/2112.10752) (arXiv 2112.10752) (the SD-VAE);
# [`scripts/image_train.py`](https://github.com/sail-sg/MDT/blob/main/scripts/image_train.py);
# [`masked_diffusion/train_util.py`](https://github.com/sail-sg/MDT/blob/main/masked_diffusion/train_util.py)
# `TrainLoop`.

# %% [markdown]
# ## 1 · SD-VAE latents and the latent cache
# The official runs encode each 256×256 image with `stabilityai/sd-vae-ft-mse` into a 4×32×32 latent,
# scaled by 0.18215, drawing a fresh **posterior sample** every time an image is seen. Encoding on the
# fly costs a VAE forward per image per epoch. `mdt-teach cache-latents` encodes once instead. It
# stores the posterior **mean and std** (so training can still draw samples) in shards written
# atomically, and it resumes a half-finished cache.
#
# Here a tiny, randomly initialised AutoencoderKL stands in for the SD-VAE (no download), on a folder of
# smiley PNGs.

# %%
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mdt_teach.data import smileys_batch
from mdt_teach.latent_cache import LatentCache, cache_latents
from mdt_teach.vae import SCALE, tiny_vae

work = Path(tempfile.mkdtemp())
images, labels = smileys_batch(12, seed=3)
for i, (img, y) in enumerate(zip(images, labels)):  # ADM naming: ClassID_ImgID.png
    pixels = ((img.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    Image.fromarray(pixels).save(work / f"c{int(y)}_{i:03d}.png")
report = cache_latents(str(work), str(work / "cache"), vae=tiny_vae(), image_size=32, batch_size=4,
                       shard_size=5, progress=False)
cache = LatentCache(work / "cache")
z, y0 = cache[0]
print(f"{len(cache)} latents in {len(report['written'])} shards; one latent {tuple(z.shape)}, scale {SCALE}")
assert len(cache) == 12 and z.shape[0] == 4

# %% [markdown]
# With the real VAE: `mdt-teach cache-latents /data/imagenet/train /data/imagenet256-latents` (about
# 1.28 M images → 1.28 M × 2 × 4×32×32 float16 ≈ 21 GB), then train with `--data /data/imagenet256-latents`.

# %% [markdown]
# ## 2 · Memory per GPU
# `mdt-teach plan` counts what each GPU holds. Weights, gradients and the EMA copy take 4 bytes per
# parameter each. The optimizer takes 4 × (number of buffers): **Adan keeps 4** (m, v, n, the previous
# gradient) and **AdamW 2**. Activations are estimated by running the model on the meta device (no
# memory) at the per-GPU micro-batch. ZeRO (`--zero`) shards the optimizer state over the GPUs.

# %%
from mdt_teach.plan import format_plan, memory_plan, torchrun_command, with_optimizer

GB = 1e9
plans = {}
for gpus, zero in [(8, False), (8, True), (64, True)]:
    adan = memory_plan("MDTv2-XL/2", gpus=gpus, global_batch=256, opt="adan", zero=zero, dtype="bf16")
    plans[(gpus, zero)] = adan
    print(format_plan(adan, with_optimizer(adan, "adamw")), end="\n\n")

# %%
# Check: the parameter count is the official one, and Adan's state is exactly twice AdamW's.
plan8 = plans[(8, False)]
assert plan8.params == 742_263_904
assert with_optimizer(plan8, "adan").optimizer == 2 * with_optimizer(plan8, "adamw").optimizer
assert plans[(8, True)].optimizer * 8 == plan8.optimizer  # ZeRO: one eighth per GPU

# %% [markdown]
# ## 3 · bf16 and torch.compile
# The official MDTv2 training runs in fp32: `masked_diffusion/train_util.py: TrainLoop` defaults to
# `use_fp16=False`, and its fp16 path (ADM's `MixedPrecisionTrainer`) needs a `convert_to_fp16` method
# that the MDT models in `masked_diffusion/models.py` do not define. `mdt_teach` autocasts by
# profile: **bf16** where the GPU supports it (A100, H100), **fp16 + GradScaler** on a T4, fp32 on a
# CPU. `--compile` wraps the model in `torch.compile`. The decision logic is plain code you can query
# without a GPU:

# %%
from mdt_teach.config import Capabilities, decide

for name, caps in {"laptop": Capabilities(cpu_count=4), "Colab T4": Capabilities(cuda=True, cpu_count=2),
                   "A100 node": Capabilities(cuda=True, bf16=True, cpu_count=32)}.items():
    decided = decide("full" if "A100" in name else None, caps, env={})
    print(f"{name:10s} → profile {decided.profile:5s} device {decided.device:4s} dtype {decided.dtype:8s} "
          f"GradScaler {decided.grad_scaler}")

# %% [markdown]
# ## 4 · Launch with torchrun
# The trainer is `torch.distributed` with DDP: every process takes its shard of the **global** batch,
# only rank 0 writes, and the optimizer step is identical on every rank. The same command scales from
# one node to many:

# %%
for gpus in (8, 64):
    print("\n".join(torchrun_command("MDTv2-XL/2", gpus=gpus, gpus_per_node=8, global_batch=256, zero=True,
                                     opt=None, dtype="bf16", data="/data/imagenet256-latents")), end="\n\n")

# %% [markdown]
# ### A CPU dry run of the same code path
# Two processes, the gloo backend, two steps of a very small MDTv2: the launch, the process group,
# the sharded batch, the all-reduce and rank-0 checkpointing all run exactly as on a cluster.

# %%
import json
import os

dry = work / "dry-run"
command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "mdt_teach", "train", "--model", "MDTv2-T/4", "--steps", "2", "--batch-size", "4",
           "--model-arg", "depth=2", "--model-arg", "hidden_size=32", "--model-arg", "num_heads=2",
           "--eval-samples", "0", "--grid-samples", "0", "--threads", "1", "--no-progress", "--out", str(dry)]
done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
assert done.returncode == 0, done.stderr[-2000:]
steps_logged = [json.loads(line)["step"] for line in (dry / "metrics.jsonl").read_text().splitlines()]
checkpoints = sorted(p.name for p in (dry / "ckpt").glob("*.pt"))
print("steps logged:", steps_logged, "| checkpoints:", checkpoints)

# %% [markdown]
# ### The real launch
# On the cluster, the cell below writes the launch line to a script and starts it (one node here; for
# several, run the multi-node line on each). It does not run in CI.

# %%
# NBVAL_SKIP
launch = torchrun_command("MDTv2-XL/2", gpus=8, gpus_per_node=8, global_batch=256, zero=True, opt=None,
                          dtype="bf16", data="/data/imagenet256-latents")[0]
Path("launch_xl.sh").write_text("#!/usr/bin/env bash\nset -e\n" + launch + " \"$@\"\n")
gpus_here = torch.cuda.device_count()
if gpus_here >= 8:
    subprocess.run(["bash", "launch_xl.sh"], check=True)
else:  # "Run All" on a laptop or a 1-GPU Colab stops here instead of failing inside torchrun
    print(f"Wrote launch_xl.sh; this machine has {gpus_here} GPU(s), so it was not started. "
          "Run `bash launch_xl.sh` on a node with 8 GPUs and the latent cache at /data/imagenet256-latents.")

# %% [markdown]
# ## 5 · Resume after preemption, then evaluate
# Checkpoints hold the model, EMA, optimizer, scaler, step, every RNG state (per rank) and the data
# position. They are written to a temporary name and renamed, so a kill never leaves a half-written
# file. After a preemption, add `--resume` to the same command: the run continues **bit for bit**
# (the tests kill a run with `kill -9` and compare every loss and weight).
#
# FID-50K, the paper's metric, uses 50,000 samples (250 DDPM steps, cfg 1.5 for DiT or 3.8 with pow 4
# for MDT), decoded with the SD-VAE. They are compared against ADM's reference batch
# `VIRTUAL_imagenet256_labeled.npz` with ADM's TensorFlow evaluator (`evaluations/evaluator.py` in
# openai/guided-diffusion), which is the standard. `mdt_teach.metrics.fid_against_reference` computes an
# Inception FID through torch-fidelity (`pip install "mdt-teach[fid]"`) as a cross-check. That is the
# standard FID, **not comparable** with the FD-smileys numbers of the toy lessons.

# %%
# NBVAL_CHECK_OUTPUT
print("MDTv2-XL/2 parameters:", f"{plan8.params:,}")
print("Adan / AdamW optimizer state:", with_optimizer(plan8, "adan").optimizer / with_optimizer(plan8, "adamw").optimizer)
print("dry run: steps", steps_logged, "| checkpoints", len(checkpoints))

# %% [markdown]
# > **What the official code actually does.**
# > - The official MDTv2 training wraps Adan in `ZeroRedundancyOptimizer` with `max_grad_norm=1`. Each
# >   rank's Adan clips **its own shard** by that shard's norm. `mdt_teach` clips on the true global norm,
# >   which is identical on one GPU and slightly different on many.
# > - The official data loader shards with MPI, which is a no-op under torchrun, so every GPU reads the
# >   whole dataset. `mdt_teach` gives each rank its own shard of every global batch.
# > - Training is fp32 there; bf16 here is a documented deviation.
# > - The lr is constant with no warm-up (3e-4 for XL), EMA 0.9999 from step 0, global batch 256.
#
# ## Summary
# - Cache SD-VAE posterior moments once; training samples latents from them.
# - Plan memory before you launch: Adan doubles the optimizer state, and ZeRO divides it by the GPUs.
# - The same `python -m mdt_teach train` runs on one CPU, one GPU, or many nodes under `torchrun`;
#   `--resume` makes preemption harmless.
# - Report FID-50K with the standard evaluator; FD-smileys is only a toy-world metric.
#
# ## Exercises
# 1. With 32 GPUs and no ZeRO, does MDTv2-XL/2 with Adan fit on 40 GB cards at the official global batch?
# 2. What per-GPU micro-batch does `--grad-accum 2` give on 8 GPUs, and how do the activations change?
# 3. Rerun the dry run with `--nproc_per_node=1 --grad-accum 2`. Why are the weights the same as with two
#    processes?

# %% [markdown]
# <details><summary>Solutions</summary>
#
# 1. `print(format_plan(memory_plan("MDTv2-XL/2", gpus=32, global_batch=256, opt="adan")))`: weights,
#    gradients and EMA (2.97 GB each), 11.9 GB of Adan state and about 8 GB of bf16 activations at a
#    micro-batch of 8: about 29 GB, so it fits on 40 GB cards.
# 2. 256 / (8 × 2) = 16 images per micro-batch: the activation estimate falls from about 27 GB to about
#    14.5 GB; everything else stays.
# 3. Every shard of the global batch draws its random numbers from (seed, step, shard), so 2 processes
#    × 1 shard and 1 process × 2 shards compute the same gradients (the DDP test checks it to 1e-6).
#
# </details>
