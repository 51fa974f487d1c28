# %% [markdown]
# # 10 · Scale up: MDTv2-XL/2 on ImageNet-256
# *The paper's whole path — latents, a memory plan, torchrun, sample-fid, FID — run in miniature on your CPU.*
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
# Everything so far ran on 32×32 pixels. The paper's run is MDTv2-XL/2 on **ImageNet-256 latents**, 8
# images per GPU on 4 nodes of 8 GPUs (a global batch of 256; the official `run_ddp_master.sh`), judged by
# FID-50K. The code does not change with the scale. This lesson runs the whole path **in miniature on
# your CPU**, each stage with the command the real run uses, and opens what each stage writes:
#
# | stage | command | in miniature here | the real run |
# |---|---|---|---|
# | 1 · latents | `mdt-teach cache-latents` | a few smiley PNGs, a tiny random VAE | ImageNet, the SD-VAE |
# | 2 · memory | `mdt-teach plan` | derived by hand for MDTv2-XL/2 | the same plan |
# | 3 · train | `torchrun … -m mdt_teach train --profile full` | 2 CPU processes, a 2-block model | 8 GPUs per node |
# | 4 · sample | `mdt-teach sample-fid` | a few images, a few steps | 50,000 images, 250 steps |
# | 5 · score | `mdt-teach fid` | FD-smileys against real faces | FID against ADM's reference batch |
#
# Section n is stage n. Along the way: bf16 and `torch.compile` (section 2), resuming after preemption
# (section 4), and at the end (section 6) the exact commands for the real run.
#
# Read along: [MDT](https://arxiv.org/abs/2303.14389) (arXiv 2303.14389); [latent
# diffusion](https://arxiv.org/abs/2112.10752) (arXiv 2112.10752) (the SD-VAE);
# [`run_ddp_master.sh`](https://github.com/sail-sg/MDT/blob/main/run_ddp_master.sh);
# [`scripts/image_train.py`](https://github.com/sail-sg/MDT/blob/main/scripts/image_train.py);
# [`masked_diffusion/image_datasets.py`](https://github.com/sail-sg/MDT/blob/main/masked_diffusion/image_datasets.py)
# `ImageDataset` (the random flip); [`masked_diffusion/train_util.py`](https://github.com/sail-sg/MDT/blob/main/masked_diffusion/train_util.py)
# `TrainLoop`; [`scripts/image_sample.py`](https://github.com/sail-sg/MDT/blob/main/scripts/image_sample.py)
# (the 50,000 samples).

# %% [markdown]
# ## 1 · Stage 1: images → SD-VAE latents, both orientations
# The official runs encode each 256×256 image with `stabilityai/sd-vae-ft-mse` into a 4×32×32 latent,
# scaled by 0.18215, drawing a fresh **posterior sample** every time an image is seen — and before
# encoding, the loader mirrors the image with probability ½. `mdt-teach cache-latents` encodes once
# instead: for every image it stores the posterior **mean and std** of the image *and of its mirror
# image*, in shards written atomically, and it resumes a half-finished cache.
#
# Here a folder of smiley PNGs stands in for ImageNet, and a tiny, randomly initialised AutoencoderKL for
# the SD-VAE (`--vae tiny`: no download). Everything the lesson writes goes into one temporary folder,
# `work`, never into the repository.

# %%
# A handful of smileys as PNG files named the ADM way (ClassID_ImgID), as an ImageNet folder is read.
import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mdt_teach.cli import main as mdt_teach_main
from mdt_teach.data import smileys_batch
from mdt_teach.sampling import to_uint8

work = Path(tempfile.mkdtemp(prefix="mdt-lesson10-"))
images_dir = work / "images"
images_dir.mkdir()
images, labels = smileys_batch(12, seed=3)
for i, (img, y) in enumerate(zip(images, labels)):
    Image.fromarray(to_uint8(img[None])[0].numpy()).save(images_dir / f"c{int(y)}_{i:03d}.png")
pngs = sorted(p.name for p in images_dir.iterdir())
print(f"{len(pngs)} files: {', '.join(pngs[:3])}, …; each {Image.open(images_dir / pngs[0]).size} RGB")


def mdt_teach_cli(*argv):
    """Run `mdt-teach ARGV` in this kernel (the console script's own code), showing the temporary folder as $WORK."""
    argv = [str(a) for a in argv]
    print("$ mdt-teach", " ".join(argv).replace(str(work), "$WORK"))
    with contextlib.redirect_stdout(io.StringIO()) as said:
        exit_code = mdt_teach_main(argv)
    print(said.getvalue().replace(str(work), "$WORK"), end="")
    assert exit_code == 0


# %%
# Stage 1: the command you would run on ImageNet, with the tiny VAE and 32-pixel images.
cache_dir = work / "latents"
mdt_teach_cli("cache-latents", images_dir, cache_dir, "--vae", "tiny", "--image-size", 32, "--batch-size", 4,
              "--shard-size", 5, "--workers", 0, "--device", "cpu", "--no-progress")

# %% [markdown]
# **What stage 1 wrote.** A `manifest.json` (what was cached, with which VAE, in which dtype) and, per
# shard, the moments and the labels. A shard's moments have the shape
# (images, orientation, {mean, std}, C, h, w).

# %%
# Open the cache folder: every file, its shape and dtype, and what the manifest records.
stage1_files = sorted(p.name for p in cache_dir.iterdir())
for name in stage1_files:
    if name.endswith(".npy"):
        array = np.load(cache_dir / name, mmap_mode="r")
        print(f"  {name:24s} {str(array.shape):22s} {array.dtype}")
    else:
        print(f"  {name}")
manifest = json.loads((cache_dir / "manifest.json").read_text())
print({key: manifest[key] for key in ("vae", "image_size", "latent_shape", "dtype", "num_images", "orientations")})
assert manifest["complete"] and manifest["num_images"] == len(pngs)

# %% [markdown]
# **What training reads.** For image i at stream position k, the trainer's data source seeds torch's RNG
# from (seed, k) (`data_order.PositionSeeded`), then the cache draws the orientation o with a coin of
# p = ½, and a fresh posterior sample:
#
# $$z = 0.18215\,(\mu_o + \sigma_o\varepsilon),\quad o \sim \text{Bernoulli}(\tfrac12),\ \varepsilon \sim \mathcal N(0, I).$$
#
# Built by hand from the stored moments, it must equal what `LatentCache` returns under the same seed. Why
# store the mirror image instead of mirroring the latent? Because the VAE is not flip-equivariant: the
# encoding of a mirrored image is not the mirrored encoding.

# %%
# One training read rebuilt by hand: the coin, the stored moments of that orientation, a posterior sample.
from mdt_teach.latent_cache import LatentCache
from mdt_teach.vae import SCALE

cache = LatentCache(cache_dir)
torch.manual_seed(7)
z_library, y_library = cache[5]
torch.manual_seed(7)
mirrored = bool(torch.rand(()) < 0.5)
mean, std = cache.moments(5, mirrored=mirrored)
z_hand = (mean + std * torch.randn(mean.shape)) * SCALE
torch.testing.assert_close(z_hand, z_library, rtol=0, atol=0)
as_is, flipped = cache.moments(0)[0], cache.moments(0, mirrored=True)[0]
gap = ((flipped - as_is.flip(-1)).norm() / as_is.norm()).item()
print(f"read of image 5: mirrored={mirrored}, latent {tuple(z_hand.shape)}, label {y_library}")
print(f"encode(mirror image) vs mirror(encode(image)): relative difference {gap:.2f}")
assert gap > 0.05

# %% [markdown]
# **Storage.** The cache stores float16 by default (`--dtype float32|bfloat16|float16`). Per image that
# is 2 orientations × (mean, std) × 4×32×32 values: 32 KiB in float16 or bfloat16, 64 KiB in float32 —
# about 42 GB or 84 GB for ImageNet's 1.28 M training images. What the rounding costs was measured by
# `tools/latent_storage_error.py` on two real photographs (scikit-learn's bundled samples, both
# orientations). The SD-VAE could not be downloaded where it ran, so these errors are the tiny VAE's;
# run the tool once with the SD-VAE in your Hugging Face cache to measure yours. float16 keeps 11
# significant bits, bfloat16 8, so bfloat16's error is 8× larger.

# %%
from mdt_teach.resources import data_file

measured = json.loads(data_file("latent_storage_error.json").read_text())
print(f"VAE: {measured['vae']}, images: {measured['images']}")
for row in measured["rows"]:
    print(f"  {row['dtype']:9s} {row['bytes_per_image'] // 1024:3d} KiB/image   mean error: RMS "
          f"{row['mean_rms_err_over_rms']:.1e} of the latents' RMS, max {row['mean_max_err_over_median_std']:.1e} "
          f"of the median posterior std")

# %% [markdown]
# With the real VAE: `mdt-teach cache-latents /data/imagenet/train /data/imagenet256-latents` (the
# defaults are the SD-VAE, 256 px and float16), then train with `--data /data/imagenet256-latents`.
# Without the disk for a cache, pass the image folder itself (`--data /data/imagenet/train` in the `full`
# profile): every batch is then mirrored and encoded on the fly (`--vae` picks the VAE), which is what the
# official loop does, at the cost of a VAE forward per image per step.

# %% [markdown]
# ## 2 · Stage 2: memory per GPU, derived by hand
# Before launching on rented GPUs, count what each one must hold. `mdt-teach plan` adds five terms, and
# every one can be rebuilt from numbers you can see. With P parameters (P_train of them trainable), k
# optimizer buffers per parameter, g GPUs and a micro-batch of b images per GPU:
#
# $$M = \underbrace{4P}_{\text{weights}} + \underbrace{4P_\text{train}}_{\text{gradients}}
#   + \underbrace{\frac{4\,k\,P_\text{train}}{g^{[\text{ZeRO}]}}}_{\text{optimizer}}
#   + \underbrace{4P}_{\text{EMA}} + A(b),$$
#
# 4 bytes for every fp32 value (the weights, their gradients and the optimizer state stay fp32 under
# autocast), and ZeRO (`--zero`) dividing only the optimizer term by g. The activations A(b) are the
# plan's `saved_bytes`: the bytes of every tensor autograd keeps for the backward pass after one training
# forward — both MDT passes, since one backward follows them — each storage counted once, the parameters
# left out:
#
# $$A(b) = \sum_{s\ \in\ \text{saved}(b)\ \setminus\ \text{params}} \text{bytes}(s) \;=\; a\,b + c .$$
#
# It runs the model on the **meta device** (shapes, no memory), emulating bf16 autocast (matmuls in bf16,
# norms and softmax in fp32) and a fused attention kernel (it keeps q, k, v, the bias, the output and a
# log-sum-exp, never the N×N probabilities). Every saved tensor either has the batch dimension or not, so
# A is a straight line in b: a per image, plus c that does not grow with the batch.

# %%
# Bytes per value, and the buffers each optimizer keeps per parameter, read off torch and the optimizers.
from mdt_teach.optim import Adan
from mdt_teach.plan import OPT_BUFFERS

fp32, bf16 = (torch.empty((), dtype=d).element_size() for d in (torch.float32, torch.bfloat16))


def buffers_per_parameter(optimizer_class) -> int:
    """Tensors of the parameter's own shape in the optimizer's state after one step."""
    p = torch.nn.Parameter(torch.randn(3, 5))
    p.grad = torch.randn(3, 5)
    opt = optimizer_class([p], lr=1e-3)
    opt.step()
    return sum(torch.is_tensor(v) and v.shape == p.shape for v in opt.state[p].values())


k = {"adan": buffers_per_parameter(Adan), "adamw": buffers_per_parameter(torch.optim.AdamW)}
print(f"bytes per value: fp32 {fp32}, bf16 {bf16}; buffers per parameter: {k}")
assert k == OPT_BUFFERS   # Adan: m, v, n and the previous gradient; AdamW: m and v

# %%
# The parameters of MDTv2-XL/2, counted by the library's count_params on the meta device (no memory).
from mdt_teach.model_size import count_params
from mdt_teach.plan import meta_model, saved_bytes

xl = meta_model("MDTv2-XL/2")
P, P_train = count_params(xl), count_params(xl, trainable=True)
print(f"MDTv2-XL/2: P = {P:,} parameters, P_train = {P_train:,}")

# %% [markdown]
# Now the activation line: measure A at micro-batches 1 and 2, and read off a = A(2) − A(1) and
# c = A(1) − a. Most of c is autocast's **bf16 copies of the weights** of every Linear and Conv layer
# (made once per step, kept for the backward pass): 2 bytes for each of their entries. The rest of c is
# the batch-independent part of attention, such as each block's relative-position bias.

# %%
# The activation line A(b) = a·b + c from two measurements; most of c is the bf16 copies of the matmul weights.
A1, A2 = saved_bytes(xl, 1, "bf16"), saved_bytes(xl, 2, "bf16")
a, c = A2 - A1, A1 - (A2 - A1)
matmul_entries = sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
                     for m in xl.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))
GB = 1e9
print(f"a = {a / GB:.3f} GB per image; c = {c / GB:.3f} GB, of which bf16 weight copies "
      f"{bf16 * matmul_entries / GB:.3f} GB and the rest {(c - bf16 * matmul_entries) / GB:.3f} GB")


def activations(b: int) -> int:
    """A(b) from the line through the two measurements."""
    return a * b + c


# %% [markdown]
# The official global batch of 256 on one node of 8 GPUs: 32 images per GPU. The plan by hand, term by term,
# then the library's:

# %%
# The plan of MDTv2-XL/2 on 8 GPUs (global batch 256, Adan, bf16) by hand, then checked against memory_plan.
from mdt_teach.plan import CONTEXT_BYTES, fit_grad_accum, format_plan, memory_plan, with_optimizer

gpus, global_batch = 8, 256
b = global_batch // gpus
by_hand = {"weights": fp32 * P, "grads": fp32 * P_train, "optimizer": fp32 * k["adan"] * P_train,
           "ema": fp32 * P, "activations": activations(b)}
for term, value in by_hand.items():
    print(f"  {term:12s} {value / GB:7.2f} GB")
print(f"  {'total':12s} {sum(by_hand.values()) / GB:7.2f} GB  (+ {CONTEXT_BYTES / GB:.0f} GB of CUDA context and "
      f"allocator slack on the GPU)\n")

plan8 = memory_plan("MDTv2-XL/2", gpus=gpus, global_batch=global_batch, opt="adan", dtype="bf16")
print(format_plan(plan8, with_optimizer(plan8, "adamw")))
assert plan8.params == P == 742_263_904 and plan8.micro_batch == b
assert {term: getattr(plan8, term) for term in by_hand} == by_hand
assert plan8.total == sum(by_hand.values())

# %% [markdown]
# The activations dominate, and they are the only term that shrinks with the micro-batch. ZeRO divides
# the optimizer term by g, and more GPUs shrink the micro-batch: by hand, with the same line,

# %%
# ZeRO on 8 GPUs, and ZeRO on 64 GPUs (4 images each), predicted from the by-hand terms alone.
from dataclasses import replace


def plan_by_hand(gpus: int, zero: bool):
    """A MemoryPlan (printed by the library's format_plan) whose every term comes from the derivation above."""
    micro = global_batch // gpus
    return replace(plan8, gpus=gpus, zero=zero, per_gpu_batch=micro, micro_batch=micro,
                   optimizer=fp32 * k["adan"] * P_train / (gpus if zero else 1), activations=activations(micro))


zero8, zero64 = plan_by_hand(8, zero=True), plan_by_hand(64, zero=True)
print(format_plan(zero8), format_plan(zero64), sep="\n\n")
assert zero8.optimizer * 8 == plan8.optimizer and zero64.optimizer * 64 == plan8.optimizer

# %% [markdown]
# On 40 GB cards the 8-GPU plan does not fit. Halving the batch would change the training; accumulating
# gradients does not: each GPU runs its 32 images as two micro-batches of 16 and steps once, so the
# global batch stays 256 and only the activations shrink. `plan` proposes the smallest accumulation that
# fits (`mdt-teach plan --gpus 8 --gpu-memory 40`); it measures the micro-batch it proposes, a third point
# for the line:

# %%
fitted = fit_grad_accum(plan8, gpu_memory_gb=40)
accum = fitted.per_gpu_batch // fitted.micro_batch
print(f"8 × 40 GB: {(plan8.total + CONTEXT_BYTES) / GB:.1f} GB needed at micro-batch {plan8.micro_batch} → "
      f"--grad-accum {accum}: micro-batch {fitted.micro_batch}, {(fitted.total + CONTEXT_BYTES) / GB:.1f} GB, "
      f"global batch still {fitted.per_gpu_batch * fitted.gpus}")
assert fitted.activations == activations(fitted.micro_batch)   # measured, and on the line

# %% [markdown]
# ### Precision: bf16 and torch.compile
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
# ## 3 · Stage 3: train in the `full` code path, with torchrun
# The trainer is `torch.distributed` with DDP: every process takes its shard of the **global** batch,
# only rank 0 writes, and the optimizer step is identical on every rank. `--batch-size` is always the
# global batch — over all processes and accumulation steps — and the `full` profile's default is the
# official 256 (with the recipe's lr, 3e-4 for XL/2), so a launch without `--batch-size` trains as the
# paper did. The same command scales from one node to many:

# %%
from mdt_teach.plan import torchrun_command

for n in (8, 64):
    print("\n".join(torchrun_command("MDTv2-XL/2", gpus=n, gpus_per_node=8, global_batch=256, zero=True,
                                     opt=None, dtype="bf16", data="/data/imagenet256-latents")), end="\n\n")

# %% [markdown]
# ### The same code path on your CPU
# Two processes, the gloo backend, two Adan steps of a very small MDTv2 in the `full` profile, with ZeRO, on
# the latent cache of stage 1: the launch, the process group, the sharded global batch, the flips, ZeRO
# and rank-0 checkpointing all run as on a cluster. Only the model (2 blocks of width 32), the batch and
# the step count are small.

# %%
# Stage 3: torchrun with 2 CPU processes (no GPU is used, even where there is one).
run_dir = work / "run"
command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "mdt_teach", "train", "--profile", "full", "--data", str(cache_dir), "--model", "MDTv2-T/4",
           "--model-arg", "depth=2", "--model-arg", "hidden_size=32", "--model-arg", "num_heads=2",
           "--model-arg", "patch_size=2", "--opt", "adan", "--zero", "--steps", "2", "--batch-size", "4",
           "--eval-samples", "0", "--grid-samples", "0", "--threads", "1", "--no-progress", "--out", str(run_dir)]
print("$ torchrun", " ".join(command[3:]).replace(str(work), "$WORK"))
done = subprocess.run(command, capture_output=True, text=True,
                      env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})
assert done.returncode == 0, done.stderr[-2000:]
print(next(line for line in done.stdout.splitlines() if "global batch" in line).replace(str(work), "$WORK"))

# %% [markdown]
# **What stage 3 wrote.** The run folder: the resolved config, one line of losses per step, a loss curve,
# a summary, and the checkpoints. A checkpoint holds everything `--resume` needs — the model, the EMA, the
# optimizer state (ZeRO gathers its shards to rank 0 first), every rank's RNG states, the data position.

# %%
# Open the run folder and the checkpoint.
from mdt_teach.checkpoint import list_checkpoints, read_checkpoint

stage3_files = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())
print("files:", ", ".join(stage3_files))
steps_logged = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
checkpoints = list_checkpoints(run_dir)
ckpt = read_checkpoint(checkpoints[-1])
adan_state = next(iter(ckpt["opt"]["state"].values()))
print("steps logged:", steps_logged, "| checkpoint:", checkpoints[-1].name, "at step", ckpt["step"],
      "| world size", ckpt["world_size"])
print("checkpoint keys:", ", ".join(sorted(ckpt)))
print("Adan state of one parameter:", ", ".join(sorted(adan_state)))
assert ckpt["step"] == 2 and ckpt["world_size"] == 2 and len(adan_state) == k["adan"]

# %% [markdown]
# ### The real launch
# On the cluster, the first cell below writes the launch line to a script — in `work`, a temporary
# folder, so nothing lands in the repository — and checks it with `bash -n`. The second starts it, only on
# a node with 8 GPUs; it does not run in CI. For several nodes, run the multi-node line above on each.

# %%
# The launch script, written and syntax-checked (runs anywhere).
launch = torchrun_command("MDTv2-XL/2", gpus=8, gpus_per_node=8, global_batch=256, zero=True, opt=None,
                          dtype="bf16", data="/data/imagenet256-latents")[0]
launch_script = work / "launch_xl.sh"
launch_script.write_text("#!/usr/bin/env bash\nset -e\n" + launch + ' "$@"\n')
assert subprocess.run(["bash", "-n", str(launch_script)]).returncode == 0
print(launch_script.read_text().replace(str(work), "$WORK"))

# %%
# NBVAL_SKIP
gpus_here = torch.cuda.device_count()
if gpus_here >= 8:
    subprocess.run(["bash", str(launch_script)], check=True)
else:  # "Run All" on a laptop or a 1-GPU Colab stops here instead of failing inside torchrun
    print(f"This machine has {gpus_here} GPU(s), so {launch_script} was not started. Copy it to a node with "
          "8 GPUs and the latent cache at /data/imagenet256-latents, and run `bash launch_xl.sh` there.")

# %% [markdown]
# ## 4 · Stage 4: resume after preemption, then sample-fid
# Checkpoints are written to a temporary name and renamed, so a kill never leaves a half-written file.
# After a preemption, add `--resume` to the same command: the run continues **bit for bit** (the tests
# kill a run with `kill -9` and compare every loss and weight).
#
# **FID-50K**, the paper's number, is computed from 50,000 samples with the official FID settings —
# 250 DDPM steps, cfg 3.8 with pow 4 (`scripts/image_sample.py`), random classes, decoded by the
# `sd-vae-ft-ema` decoder, converted to uint8 by truncation — saved as `samples_50000x256x256x3.npz`
# (`arr_0` images, `arr_1` labels) and compared with ADM's reference batch
# `VIRTUAL_imagenet256_labeled.npz` (`mu`, `sigma` of its Inception features) by ADM's TensorFlow
# evaluator (`evaluations/evaluator.py` in openai/guided-diffusion). `mdt-teach sample-fid` writes that
# `.npz`; image i's class and every noise it sees are drawn from (seed, i), so the file is the same with
# 1 or 64 GPUs, and an interrupted job resumes from its finished shards. Here it samples stage 3's
# checkpoint with the same settings, except 16 images, 4 steps instead of 250 and the tiny decoder:

# %%
# Stage 4: sample-fid from the checkpoint of stage 3, the official FID preset with fewer steps and images.
samples_dir = work / "samples"
mdt_teach_cli("sample-fid", "--ckpt", checkpoints[-1], "--out", samples_dir, "--num-samples", 16, "--steps", 4,
              "--vae-decoder", "tiny", "--shard-size", 8, "--no-progress")

# %%
# What stage 4 wrote: the settings (a restart that asks for others is refused), the shards, the official .npz.
stage4_files = sorted(str(p.relative_to(samples_dir)) for p in samples_dir.rglob("*") if p.is_file())
samples_npz = next(samples_dir.glob("samples_*.npz"))
with np.load(samples_npz) as npz:
    stage4_arrays = {key: (npz[key].shape, str(npz[key].dtype)) for key in npz.files}
settings = json.loads((samples_dir / "settings.json").read_text())
print("files:", ", ".join(stage4_files))
print(samples_npz.name, stage4_arrays)
print("settings:", {key: settings[key] for key in ("n", "steps", "method", "cfg_scale", "scale_pow", "vae_decoder")})

# %% [markdown]
# ## 5 · Stage 5: the score
# `mdt-teach fid` reads two `.npz` files, each holding images (`arr_0`) or
# already their statistics (`mu`, `sigma`, as ADM's reference batch does), and prints the Fréchet distance
# between the two Gaussian fits of their features. FID's features come from Inception-V3, whose weights
# torch-fidelity downloads on first use (`pip install "mdt-teach[fid]"`). Offline there are none, so here
# the **smileys feature network** committed in `data/` stands in (`--features smileys`): the same
# Fréchet distance on other features, so the number is an FD-smileys, not an FID, and not comparable to
# one. The reference is a set of real faces, stored as statistics the way ADM's reference batch is.
# With 16 samples the distance is strongly biased upward, so it is printed beside the distance of 16
# *real* faces to the same reference: about what a perfect model's 16 samples would score.

# %%
# Stage 5: a reference .npz of statistics (like VIRTUAL_imagenet256_labeled.npz), then fid against it.
from mdt_teach.fid import fid_between, npz_stats

np.savez(work / "reference_images.npz", arr_0=to_uint8(smileys_batch(256, seed=9)[0]).numpy())
mu, sigma = npz_stats(work / "reference_images.npz", features="smileys")
reference = work / "reference_stats.npz"
np.savez(reference, mu=mu, sigma=sigma)
mdt_teach_cli("fid", samples_npz, reference, "--features", "smileys")
np.savez(work / "real16.npz", arr_0=to_uint8(smileys_batch(16, seed=11)[0]).numpy())
fd_samples = fid_between(samples_npz, reference, features="smileys")
fd_real16 = fid_between(work / "real16.npz", reference, features="smileys")
with np.load(reference) as npz:
    reference_arrays = {key: npz[key].shape for key in npz.files}
print(f"{reference.name} holds {reference_arrays}; for comparison, 16 real faces score {fd_real16:.1f} "
      f"and the 16 samples {fd_samples:.1f} (two steps of training: far from faces)")
assert fd_samples > fd_real16 > 0

# %%
# NBVAL_CHECK_OUTPUT
print("stage 1 wrote:", ", ".join(stage1_files))
print("  latent shape:", manifest["latent_shape"], "| orientations:", manifest["orientations"])
print("stage 2: MDTv2-XL/2 parameters:", f"{P:,}", "| buffers per parameter:", k,
      "| 8 × 40 GB: --grad-accum", accum)
print("stage 3 wrote:", ", ".join(stage3_files))
print("  steps logged:", steps_logged, "| Adan state:", sorted(adan_state))
print("stage 4 wrote:", ", ".join(stage4_files))
print("  ", samples_npz.name, stage4_arrays)
print("stage 5 reference:", reference_arrays)

# %% [markdown]
# ## 6 · The real run, command by command
# The same five stages with ImageNet, the SD-VAE, 8 GPUs and the paper's sizes. Every line is the command
# run above in miniature, with the real values:

# %%
from mdt_teach.checkpoint import checkpoint_path

real_run = torchrun_command("MDTv2-XL/2", gpus=8, gpus_per_node=8, global_batch=256, zero=True, opt=None,
                            dtype="bf16", data="/data/imagenet256-latents")[0]
last = checkpoint_path(Path("runs/mdtv2-xl2"), 400_000)
print("\n".join([
    "mdt-teach cache-latents /data/imagenet/train /data/imagenet256-latents     # stage 1: SD-VAE, 256 px, float16",
    "mdt-teach plan --model MDTv2-XL/2 --gpus 8 --zero --gpu-memory 80           # stage 2: check it fits",
    real_run + "   # stage 3",
    real_run + " --resume   # after a preemption: the same line + --resume",
    f"torchrun --standalone --nproc_per_node=8 -m mdt_teach sample-fid --ckpt {last} --out samples/xl2   # stage 4",
    "mdt-teach fid samples/xl2/samples_50000x256x256x3.npz VIRTUAL_imagenet256_labeled.npz   # stage 5: FID",
]))

# %% [markdown]
# Stage 4 runs the official FID preset (`--num-samples` 50,000, 250 DDPM steps, cfg 3.8, pow 4, the ema
# decoder), and a killed job continues when the same line is run again. The checkpoint named is the one
# at 400k steps, where the paper compares MDTv2-XL/2 with DiT-XL/2 (arXiv 2303.14389). Stage 5 needs
# `pip install "mdt-teach[fid]"` and ADM's reference batch from the openai/guided-diffusion evaluations
# page; `mdt-teach fid` uses torch-fidelity's Inception, close to ADM's TensorFlow evaluator but not bit
# for bit, and the same `.npz` also feeds ADM's evaluator directly, which is what the paper reports.
#
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
# > **What has run where.** Every stage above has run on CPUs (`tests/test_ddp.py` rehearses it end to end
# > with two processes for training and for sampling). None of it has run on a GPU yet;
# > `benchmarks/bench_gpu.py` is the first check to run on one.
#
# ## Summary
# - Stage 1 caches SD-VAE posterior moments of each image and its mirror once; training picks an
#   orientation with p = ½ and samples the latent, as the official loader does on the fly.
# - Memory per GPU is 4P + 4P_train + 4kP_train (÷ g with ZeRO) + 4P + A(b), with k = 4 for Adan and an
#   activation cost A(b) = a·b + c that is a straight line in the micro-batch; gradient accumulation moves
#   along that line without changing the global batch.
# - The same `python -m mdt_teach train` runs on one CPU, one GPU, or many nodes under `torchrun`;
#   `--batch-size` is the global batch; `--resume` makes preemption harmless.
# - `sample-fid` writes the official `.npz` (shards that resume, the same for any number of GPUs), and
#   `fid` compares it with a reference batch; FD-smileys is only the toy world's stand-in for FID.
#
# ## Exercises
# 1. With 32 GPUs and no ZeRO, does MDTv2-XL/2 with Adan fit on 40 GB cards at the global batch of 256?
#    Predict it with the by-hand terms and the line A(b), then check with `memory_plan`.
# 2. On 8 GPUs of 24 GB, which gradient accumulation does the line say fits? And with ZeRO? Check with
#    `fit_grad_accum(plan8, 24)` and `fit_grad_accum(zero8, 24)`.
# 3. Delete `shards/shard_000001.npz` in the samples folder and run the stage-4 command again. Which
#    shards are sampled, and is the `.npz` the same as before?
# 4. Rerun the training of stage 3 with `--nproc_per_node=1 --grad-accum 2`. Why are the weights the same
#    as with two processes?

# %% [markdown]
# <details><summary>Solutions</summary>
#
# The numbers below are computed by the cell that follows this one.
#
# 1. 32 GPUs give a micro-batch of 8. The weights, gradients and EMA take 2.97 GB each, Adan's state
#    11.88 GB and A(8) 8.03 GB: 28.8 GB, 30.8 GB with the CUDA context, so it fits on 40 GB cards.
#    `memory_plan("MDTv2-XL/2", gpus=32, global_batch=256, opt="adan")` measures the same total
#    (`tests/test_plan.py` checks it).
# 2. Without ZeRO nothing fits: the terms that do not shrink — weights, gradients, EMA, Adan's state and
#    c — already take 22.3 GB, and the context 2 more, before a single image. With ZeRO the Adan state
#    falls to 1.48 GB per GPU and the smallest accumulation that fits is `--grad-accum 4` (micro-batch 8,
#    20.4 GB with the context). `tests/test_plan.py` checks that `fit_grad_accum` proposes the same.
# 3. Only shard 1 is sampled again (the others are kept), and the `.npz` is identical: image i's class and
#    noise depend on (seed, i) only.
# 4. Every shard of the global batch draws its random numbers (t, noise, label dropout, mask) from
#    (seed, step, shard), so 2 processes × 1 shard and 1 process × 2 shards compute the same gradients;
#    `tests/test_ddp.py: test_paper_path_rehearsal_on_cpu` compares the two runs' weights.
#
# </details>

# %%
# The numbers quoted in the solutions (run it after trying the exercises).
static = by_hand["weights"] + by_hand["grads"] + by_hand["optimizer"] + by_hand["ema"]
need32 = static + activations(global_batch // 32)
print(f"1. 32 GPUs: optimizer {by_hand['optimizer'] / GB:.2f} GB, A(8) {activations(8) / GB:.2f} GB, total "
      f"{need32 / GB:.1f} GB, {(need32 + CONTEXT_BYTES) / GB:.1f} GB with the context")


def accumulation_that_fits(plan, gpu_gb: float):
    """The fewest accumulation steps whose by-hand total fits (None: not even one image per micro-batch)."""
    fixed = plan.total - plan.activations
    for micro in sorted((m for m in range(1, plan.per_gpu_batch + 1) if plan.per_gpu_batch % m == 0), reverse=True):
        if fixed + activations(micro) + CONTEXT_BYTES <= gpu_gb * GB:
            return plan.per_gpu_batch // micro, micro, round((fixed + activations(micro) + CONTEXT_BYTES) / GB, 1)
    return None


print(f"2. before a single image: {(static + c) / GB:.1f} GB; 8 × 24 GB: {accumulation_that_fits(plan8, 24)}; "
      f"with ZeRO (optimizer {zero8.optimizer / GB:.2f} GB): {accumulation_that_fits(zero8, 24)}")
assert accumulation_that_fits(plan8, 24) is None and accumulation_that_fits(zero8, 24)[:2] == (4, 8)
with np.load(samples_npz) as npz:
    first = npz["arr_0"], npz["arr_1"]
shards = sorted((samples_dir / "shards").iterdir())
written_at = {shard.name: shard.stat().st_mtime_ns for shard in shards}
(samples_dir / "shards" / "shard_000001.npz").unlink()
mdt_teach_cli("sample-fid", "--ckpt", checkpoints[-1], "--out", samples_dir, "--num-samples", 16, "--steps", 4,
              "--vae-decoder", "tiny", "--shard-size", 8, "--no-progress")
redrawn = [shard.name for shard in shards if shard.stat().st_mtime_ns != written_at[shard.name]]
with np.load(samples_npz) as npz:
    same = np.array_equal(first[0], npz["arr_0"]) and np.array_equal(first[1], npz["arr_1"])
print("3. sampled again:", redrawn, "| the .npz is the same:", same)
assert redrawn == ["shard_000001.npz"] and same
