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
# **ImageNet-256 latents** with a global batch of 256 on 32 GPUs, and reports FID-50K. The code is the
# same; five things change, and this lesson walks through each with a piece you can run here:
# 1. **latents**: each image, and its mirror image, goes through the SD-VAE once, into a sharded cache
#    (or every batch is encoded on the fly, as the official loop does);
# 2. **memory**: a plan per GPU (weights, gradients, Adan's 4 buffers, EMA, activations), with ZeRO and,
#    when it does not fit, the gradient accumulation that does;
# 3. **precision and speed**: bf16 autocast and `torch.compile`;
# 4. **launch**: `torchrun` on one node or many, `--batch-size` always the global batch, with a CPU dry
#    run of the same code path;
# 5. **resume and evaluate**: preemption-safe checkpoints, 50,000 samples in the official `.npz`, FID.
#
# Read along: [MDT](https://arxiv.org/abs/2303.14389) (arXiv 2303.14389); [latent
# diffusion](https://arxiv.org/abs/2112.10752) (arXiv 2112.10752) (the SD-VAE);
# [`scripts/image_train.py`](https://github.com/sail-sg/MDT/blob/main/scripts/image_train.py);
# [`masked_diffusion/image_datasets.py`](https://github.com/sail-sg/MDT/blob/main/masked_diffusion/image_datasets.py)
# `ImageDataset` (the random flip); [`masked_diffusion/train_util.py`](https://github.com/sail-sg/MDT/blob/main/masked_diffusion/train_util.py)
# `TrainLoop`; [`scripts/image_sample.py`](https://github.com/sail-sg/MDT/blob/main/scripts/image_sample.py)
# (the 50,000 samples).

# %% [markdown]
# ## 1 · SD-VAE latents, both orientations
# The official runs encode each 256×256 image with `stabilityai/sd-vae-ft-mse` into a 4×32×32 latent,
# scaled by 0.18215, drawing a fresh **posterior sample** every time an image is seen — and before
# encoding, the loader mirrors the image with probability ½. `mdt-teach cache-latents` encodes once
# instead: for every image it stores the posterior **mean and std** of the image *and of its mirror
# image*, in shards written atomically, and it resumes a half-finished cache. Training then picks one
# orientation with p = ½ and samples the posterior, both from an RNG seeded by the image's position in
# the data order, so `--resume` repeats the same picks.
#
# Why not mirror the latent instead? Because the VAE is not flip-equivariant: the encoding of a mirrored
# image is not the mirrored encoding. Here a tiny, randomly initialised AutoencoderKL stands in for the
# SD-VAE (no download), on a folder of smiley PNGs.

# %%
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mdt_teach.data import smileys_batch
from mdt_teach.latent_cache import LatentCache, cache_latents
from mdt_teach.sampling import to_uint8
from mdt_teach.vae import SCALE, tiny_vae

work = Path(tempfile.mkdtemp())
images, labels = smileys_batch(12, seed=3)
for i, (img, y) in enumerate(zip(images, labels)):  # ADM naming: ClassID_ImgID.png
    Image.fromarray(to_uint8(img[None])[0].numpy()).save(work / f"c{int(y)}_{i:03d}.png")
report = cache_latents(str(work), str(work / "cache"), vae=tiny_vae(), image_size=32, batch_size=4,
                       shard_size=5, progress=False, dtype="float16")
cache = LatentCache(work / "cache")
as_is, mirrored = cache.moments(0)[0], cache.moments(0, mirrored=True)[0]
gap = ((mirrored - as_is.flip(-1)).norm() / as_is.norm()).item()
print(f"{len(cache)} images in {len(report['written'])} shards, each stored twice: latent {tuple(as_is.shape)}")
print(f"encode(mirror image) vs mirror(encode(image)): relative difference {gap:.2f}")
torch.manual_seed(0)
picks = [bool(torch.rand(()) < 0.5) for _ in range(1000)]   # what LatentCache draws per read
print(f"mirrored in {sum(picks) / len(picks):.1%} of 1000 reads")
assert len(cache) == 12 and as_is.shape[0] == 4 and gap > 0.05

# %% [markdown]
# **Storage.** The cache stores float16 by default (`--dtype float32|bfloat16|float16`). Per image that
# is 2 orientations × (mean, std) × 4×32×32 values: 32 KiB in float16 or bfloat16, 64 KiB in float32 —
# about 42 GB or 84 GB for ImageNet's 1.28 M training images. What the rounding costs was measured by
# `tools/latent_storage_error.py` on two real photographs (scikit-learn's bundled samples, both
# orientations). The SD-VAE could not be downloaded where it ran, so these errors are the tiny VAE's;
# run the tool once with the SD-VAE in your Hugging Face cache to measure yours. float16 keeps 11
# significant bits, bfloat16 8, so bfloat16's error is 8× larger.

# %%
import json

from mdt_teach.resources import data_file

measured = json.loads(data_file("latent_storage_error.json").read_text())
print(f"VAE: {measured['vae']}, images: {measured['images']}")
for row in measured["rows"]:
    print(f"  {row['dtype']:9s} {row['bytes_per_image'] // 1024:3d} KiB/image   mean error: RMS "
          f"{row['mean_rms_err_over_rms']:.1e} of the latents' RMS, max {row['mean_max_err_over_median_std']:.1e} "
          f"of the median posterior std")

# %% [markdown]
# With the real VAE: `mdt-teach cache-latents /data/imagenet/train /data/imagenet256-latents`, then
# train with `--data /data/imagenet256-latents`. Without the disk for a cache, pass the image folder
# itself (`--data /data/imagenet/train` in the `full` profile): every batch is then mirrored and encoded
# on the fly (`--vae` picks the VAE), which is what the official loop does, at the cost of a VAE forward
# per image per step.

# %% [markdown]
# ## 2 · Memory per GPU
# `mdt-teach plan` counts what each GPU holds. Weights, gradients and the EMA copy take 4 bytes per
# parameter each. The optimizer takes 4 × (number of buffers): **Adan keeps 4** (m, v, n, the previous
# gradient) and **AdamW 2**. Activations are estimated by running the model on the meta device (no
# memory) at the per-GPU micro-batch. ZeRO (`--zero`) shards the optimizer state over the GPUs.

# %%
from mdt_teach.plan import CONTEXT_BYTES, fit_grad_accum, format_plan, memory_plan, torchrun_command, with_optimizer

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
# On 40 GB cards the 8-GPU plan does not fit. Halving the batch would change the training; accumulating
# gradients does not: each GPU runs its 32 images as two micro-batches of 16 and steps once, so the
# global batch stays 256 and only the activations shrink. `plan` proposes the smallest accumulation that
# fits (`mdt-teach plan --gpus 8 --gpu-memory 40`):

# %%
fitted = fit_grad_accum(plan8, gpu_memory_gb=40)
accum = fitted.per_gpu_batch // fitted.micro_batch
print(f"8 × 40 GB: {(plan8.total + CONTEXT_BYTES) / GB:.1f} GB needed at micro-batch {plan8.micro_batch} → "
      f"--grad-accum {accum}: micro-batch {fitted.micro_batch}, {(fitted.total + CONTEXT_BYTES) / GB:.1f} GB, "
      f"global batch still {fitted.per_gpu_batch * fitted.gpus}")

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
          f"GradScaler {decided.grad_scaler}  default global batch {decided.batch_size}")

# %% [markdown]
# How much bf16, `torch.compile` and the fused attention kernel save on a real GPU is measured by
# `benchmarks/bench_gpu.py` (MDTv2-S/2 train-step time and peak memory, XL/2 memory at batch 32, a
# 2-GPU DDP step). It has not run on a GPU yet: none was available to this project so far.

# %% [markdown]
# ## 4 · Launch with torchrun
# The trainer is `torch.distributed` with DDP: every process takes its shard of the **global** batch,
# only rank 0 writes, and the optimizer step is identical on every rank. `--batch-size` is always the
# global batch — over all processes and accumulation steps — and the `full` profile's default is the
# official 256 (with the recipe's lr, 3e-4 for XL/2), so a launch without `--batch-size` trains as the
# paper did. The same command scales from one node to many:

# %%
for gpus in (8, 64):
    print("\n".join(torchrun_command("MDTv2-XL/2", gpus=gpus, gpus_per_node=8, global_batch=256, zero=True,
                                     opt=None, dtype="bf16", data="/data/imagenet256-latents")), end="\n\n")

# %% [markdown]
# ### A CPU dry run of the same code path
# Two processes, the gloo backend, two steps of a very small MDTv2 in the `full` profile on the latent
# cache of section 1: the launch, the process group, the sharded global batch, the flips, ZeRO and
# rank-0 checkpointing all run exactly as on a cluster.

# %%
import os

dry = work / "dry-run"
command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "mdt_teach", "train", "--profile", "full", "--data", str(work / "cache"), "--model", "MDTv2-T/4",
           "--steps", "2", "--batch-size", "4", "--zero", "--model-arg", "depth=2", "--model-arg", "hidden_size=32",
           "--model-arg", "num_heads=2", "--model-arg", "patch_size=2",
           "--eval-samples", "0", "--grid-samples", "0", "--threads", "1", "--no-progress", "--out", str(dry)]
done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
assert done.returncode == 0, done.stderr[-2000:]
print(next(line for line in done.stdout.splitlines() if "global batch" in line))
steps_logged = [json.loads(line)["step"] for line in (dry / "metrics.jsonl").read_text().splitlines()]
checkpoints = sorted((dry / "ckpt").glob("*.pt"))
print("steps logged:", steps_logged, "| checkpoints:", [p.name for p in checkpoints])

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
# **FID-50K**, the paper's number, is computed from 50,000 samples with the official FID settings —
# 250 DDPM steps, cfg 3.8 with pow 4 (`scripts/image_sample.py`), random classes, decoded by the
# `sd-vae-ft-ema` decoder, converted to uint8 by truncation — saved as `samples_50000x256x256x3.npz`
# (`arr_0` images, `arr_1` labels) and compared with ADM's reference batch
# `VIRTUAL_imagenet256_labeled.npz` by ADM's TensorFlow evaluator (`evaluations/evaluator.py` in
# openai/guided-diffusion). Here:
#
# ```bash
# torchrun --standalone --nproc_per_node=8 -m mdt_teach sample-fid --ckpt runs/mdtv2-xl2/ckpt/ckpt_1000000.pt \
#     --out samples/xl2          # the --preset fid settings; rerun the same line to continue after a kill
# mdt-teach fid samples/xl2/samples_50000x256x256x3.npz VIRTUAL_imagenet256_labeled.npz
# ```
#
# Image i's class and every noise it sees are drawn from (seed, i), so the `.npz` is the same with 1 or
# 64 GPUs, and an interrupted job resumes from its finished shards. `mdt-teach fid` uses torch-fidelity's
# Inception (`pip install "mdt-teach[fid]"`), close to ADM's evaluator but not bit for bit; the `.npz`
# also feeds ADM's evaluator directly. Below, the dry run's checkpoint is sampled the same way (tiny
# decoder, 4 steps) and compared with real faces by FD-smileys, the toy-world stand-in.

# %%
from mdt_teach.compat import load_model
from mdt_teach.fid import fid_between
from mdt_teach.fid_samples import FidSampling, sample_for_fid

model, info = load_model(checkpoints[-1])
npz = sample_for_fid(model, FidSampling(ckpt=str(checkpoints[-1]), n=16, steps="4", vae_decoder="tiny",
                                        shard_size=8), work / "samples", progress=False)
np.savez(work / "real.npz", arr_0=to_uint8(smileys_batch(64, seed=9)[0]).numpy())
with np.load(npz) as got:
    sample_shapes = got["arr_0"].shape, got["arr_0"].dtype, got["arr_1"].shape
fd = fid_between(npz, work / "real.npz", features="smileys")
print(f"{npz.name}: arr_0 {sample_shapes[0]} {sample_shapes[1]}, arr_1 {sample_shapes[2]}; "
      f"FD-smileys vs real faces {fd:.1f} (two steps of training: far from faces)")
assert np.isfinite(fd) and fd > 0

# %%
# NBVAL_CHECK_OUTPUT
print("MDTv2-XL/2 parameters:", f"{plan8.params:,}")
print("Adan / AdamW optimizer state:", with_optimizer(plan8, "adan").optimizer / with_optimizer(plan8, "adamw").optimizer)
print("8 × 40 GB: --grad-accum", accum)
print("dry run: steps", steps_logged, "| checkpoints", len(checkpoints))
print("samples:", npz.name, sample_shapes)

# %% [markdown]
# > **Where this path still departs from the official code, and why.**
# > - **The cache encodes each image and its mirror once**; the official loader encodes every read, with a
# >   fresh flip. The flip probability and the posterior sampling are the same; what is lost is only that
# >   the fixed encodings are stored in float16 (errors above). `--data IMAGES` does it the official way.
# > - **Clipping**: the official MDTv2 wraps Adan in `ZeroRedundancyOptimizer` with `max_grad_norm=1`, so
# >   each rank's Adan clips **its own shard** by that shard's norm. `mdt_teach` clips on the true global
# >   norm: identical on one GPU, slightly different on many.
# > - **Data sharding**: the official loader shards with MPI, a no-op under torchrun, so every GPU reads
# >   the whole dataset in its own order. `mdt_teach` gives each rank its own shard of every global batch.
# > - **Precision**: fp32 there; bf16 autocast here (faster, half the activation memory).
# > - **Sampling noise**: the official sampler draws from one RNG stream per GPU; `sample-fid` draws image
# >   i's noise from (seed, i), so the samples do not depend on the number of GPUs.
# > - **FID**: torch-fidelity's Inception here; ADM's TensorFlow evaluator for the paper's numbers.
# > - Unchanged: the lr is constant with no warm-up (3e-4 for XL), EMA 0.9999 from step 0, global batch 256.
# >
# > **What has run where.** Every stage above has run on CPUs (the test suite rehearses it end to end with
# > two processes). None of it has run on a GPU yet; `benchmarks/bench_gpu.py` is the first check to run
# > on one.
#
# ## Summary
# - Cache SD-VAE posterior moments of each image and its mirror once; training picks an orientation and
#   samples the latent, as the official loader does on the fly.
# - Plan memory before you launch: Adan doubles the optimizer state, ZeRO divides it by the GPUs, and
#   gradient accumulation trades memory for time without changing the global batch.
# - The same `python -m mdt_teach train` runs on one CPU, one GPU, or many nodes under `torchrun`;
#   `--batch-size` is the global batch; `--resume` makes preemption harmless.
# - FID-50K: `sample-fid` (the official settings, one `.npz`) and the standard evaluator; FD-smileys is
#   only a toy-world metric.
#
# ## Exercises
# 1. With 32 GPUs and no ZeRO, does MDTv2-XL/2 with Adan fit on 40 GB cards at the official global batch?
# 2. On 8 GPUs of 24 GB, what does `fit_grad_accum` propose? And with `zero=True`?
# 3. Rerun the dry run with `--nproc_per_node=1 --grad-accum 2`. Why are the weights the same as with two
#    processes?

# %% [markdown]
# <details><summary>Solutions</summary>
#
# 1. `print(format_plan(memory_plan("MDTv2-XL/2", gpus=32, global_batch=256, opt="adan")))`: weights,
#    gradients and EMA (2.97 GB each), 11.9 GB of Adan state and about 8 GB of bf16 activations at a
#    micro-batch of 8: about 29 GB, so it fits on 40 GB cards.
# 2. `fit_grad_accum(plans[(8, False)], 24)` returns None: weights, gradients, EMA and Adan's state alone
#    take 20.8 GB, and with the CUDA context even one image per micro-batch does not fit. With ZeRO the
#    Adan state falls to 1.5 GB per GPU and `fit_grad_accum(plans[(8, True)], 24)` proposes
#    `--grad-accum 4` (micro-batch 8).
# 3. Every shard of the global batch draws its random numbers from (seed, step, shard), so 2 processes
#    × 1 shard and 1 process × 2 shards compute the same gradients (the rehearsal test checks it to 1e-6).
#
# </details>
