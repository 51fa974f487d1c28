"""Profiles and the one size switch: `setup()` picks tiny / small / full, seeds, threads, device, dtype.

This is the only module that looks at `torch.cuda` or picks a dtype: one size switch for the whole package
(README, "Profiles, GPUs and Colab"); lessons and the trainer read what it decided from `RunConfig`.
"""
from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass

import numpy as np
import torch

PROFILES = ("tiny", "small", "full")


@dataclass(frozen=True)
class Capabilities:
    """What the machine offers; injected in tests so the decision logic runs without a GPU."""

    cuda: bool = False
    bf16: bool = False
    cpu_count: int = 1
    device_name: str = "cpu"
    colab: bool = False


@dataclass(frozen=True)
class RunConfig:
    """What `setup()` decided: every lesson and the trainer read their sizes from here."""

    profile: str
    device: str            # "cpu" or "cuda"
    dtype: str             # autocast dtype name: "float32", "float16" or "bfloat16"
    grad_scaler: bool      # fp16 needs a GradScaler
    threads: int           # torch CPU threads
    seed: int
    batch_size: int        # default GLOBAL batch of a training run (all processes × accumulation);
                           # the lessons run in one process, where global and per-process agree
    image_size: int        # pixel side of the toy images (tiny/small) or of ImageNet (full)
    use_vae: bool          # full trains on SD-VAE latents
    model: str             # default preset for this profile
    ckpt_every: int        # default checkpoint cadence in steps (see _SIZES)
    banner: str

    @property
    def torch_dtype(self) -> torch.dtype:
        """The autocast dtype as a torch.dtype."""
        return getattr(torch, self.dtype)

    @property
    def torch_device(self) -> torch.device:
        """The device as a torch.device."""
        return torch.device(self.device)


# Per-profile sizes: tiny runs in ~1 min per lesson on 2 cores; small fills a T4; full is the paper.
# Checkpoints: tiny and small save every 500 steps (~40 MB for MDTv2-T/4 with AdamW, 0.9 GB for S/2 with Adan);
# full every 10,000 steps, as the official loop (`train_util.py: TrainLoop`, save_interval 10,000), because an
# MDTv2-XL/2 checkpoint (weights, EMA, Adan's 4 buffers: 6 × 742 M fp32 values) is 17.8 GB, which rank 0
# writes while every rank waits.
_SIZES = {
    "tiny": dict(batch_size=32, image_size=32, use_vae=False, model="MDTv2-T/4", ckpt_every=500),
    "small": dict(batch_size=64, image_size=32, use_vae=False, model="MDTv2-S/2", ckpt_every=500),
    "full": dict(batch_size=256, image_size=256, use_vae=True, model="MDTv2-XL/2",   # official global batch
                 ckpt_every=10_000),
}


def detect_capabilities() -> Capabilities:
    """Read what this machine offers (CUDA, bf16 support, cores, Colab)."""
    cuda = torch.cuda.is_available()
    bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    return Capabilities(cuda=cuda, bf16=bf16, cpu_count=os.cpu_count() or 1,
                        device_name=name, colab="google.colab" in sys.modules)


def choose_profile(profile: str | None, caps: Capabilities, env: dict | None = None) -> str:
    """Argument > MDT_PROFILE > auto (small with CUDA, else tiny); `full` only when asked."""
    env = os.environ if env is None else env
    chosen = profile or env.get("MDT_PROFILE") or ("small" if caps.cuda else "tiny")
    if chosen not in PROFILES:
        raise ValueError(f"unknown profile {chosen!r}; use one of {', '.join(PROFILES)}")
    return chosen


def uses_grad_scaler(dtype: str) -> bool:
    """fp16 autocast needs loss scaling (its gradients underflow); bf16 and fp32 do not. The one decision, read by
    the profile (`decide`) and by the trainer."""
    return dtype == "float16"


def decide(profile: str | None, caps: Capabilities, seed: int = 0, env: dict | None = None) -> RunConfig:
    """Pure decision logic of `setup`: profile, device, dtype, threads (no side effects)."""
    name = choose_profile(profile, caps, env)
    device = "cuda" if caps.cuda and name != "tiny" else "cpu"
    dtype = "float32" if device == "cpu" else "bfloat16" if caps.bf16 else "float16"   # fp16: e.g. a Colab T4
    env = os.environ if env is None else env
    threads = int(env.get("MDT_THREADS") or max(1, min(caps.cpu_count, 8)))  # MDT_THREADS: a busy machine
    sizes = _SIZES[name]
    banner = (f"mdt_teach · profile {name} · device {device}"
              f"{'' if device == 'cpu' else ' (' + caps.device_name + ')'} · dtype {dtype}"
              f" · torch {torch.__version__}")
    return RunConfig(profile=name, device=device, dtype=dtype, grad_scaler=uses_grad_scaler(dtype),
                     threads=threads, seed=seed, banner=banner, **sizes)


def wait_for(device) -> None:
    """Block until every kernel queued on `device` has finished (a GPU runs asynchronously; timing needs this)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) with one number."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup(profile: str | None = None, seed: int = 0, quiet: bool = False,
          caps: Capabilities | None = None) -> RunConfig:
    """Pick the profile, seed everything, set CPU threads and print one banner line."""
    caps = detect_capabilities() if caps is None else caps
    run = decide(profile, caps, seed)
    seed_everything(seed)
    if run.device == "cpu":
        torch.set_num_threads(run.threads)
    if not quiet:
        print(run.banner)
        if caps.colab and not caps.cuda:
            print("No GPU: on Colab choose Runtime → Change runtime type → GPU for the small profile.")
    return run


def use_deterministic_kernels(on: bool) -> None:
    """When `on`, deterministic CUDA kernels only (docs/reproducibility.md); cuBLAS needs a fixed workspace for
    it. The CPU kernels the trainer uses are deterministic either way, so off changes nothing."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def static_mode() -> bool:
    """True when widgets should fall back to static figures (MDT_STATIC=1, e.g. under nbval)."""
    return os.environ.get("MDT_STATIC", "0") not in ("", "0", "false", "False")


def capture_rng() -> dict:
    """This process's python, numpy, torch CPU and CUDA RNG states, as plain data (tensors, lists, numbers),
    so a checkpoint holding them loads with torch.load(weights_only=True)."""
    state = plain_rng({"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()})
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def plain_rng(state: dict) -> dict:
    """numpy's state tuple ('MT19937', uint32 keys, pos, has_gauss, gauss) → a dict of plain values."""
    if not isinstance(state["numpy"], tuple):   # already plain
        return state
    name, keys, pos, has_gauss, gauss = state["numpy"]
    numpy_state = {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                   "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)}
    return {**state, "numpy": numpy_state}


def restore_rng(state: dict) -> None:
    """Put back the states saved by `capture_rng`."""
    n = state["numpy"]
    random.setstate(state["python"])
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
