"""The samples an FID is computed from: N images in the official `.npz` layout (`mdt-teach sample-fid`).

The official `scripts/image_sample.py` samples 50,000 images over all GPUs and writes
`samples_50000x256x256x3.npz` (`arr_0`: uint8 N×H×W×3, `arr_1`: labels), which ADM's evaluator compares with
its reference batch. Here the N images are cut into shards of `shard_size` consecutive indices:

    image i:  class = mix_seed(seed, i, 1) mod K  (random classes)   noise = Generator(mix_seed(seed, i))

so every image — its class, its starting noise and every step's noise — is a function of (seed, i) only,
and the result does not depend on the number of processes. Each finished shard is written atomically to
`<out>/shards/`; a restarted job, with any number of processes, samples only the shards that are missing.
`settings.json` records what was asked for, and a restart that asks for something else is refused.
When all shards exist, rank 0 streams them, one at a time, into `<out>/samples_{N}x{H}x{W}x3.npz`, so
its memory never holds the N images (9.8 GB at N = 50,000 and 256×256), let alone two copies of them.
"""
from __future__ import annotations

import json
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import atomic_write, write_json
from .diffusion import GaussianDiffusion
from .distributed import DistInfo, barrier, broadcast_object
from .same_settings import refuse_other_settings
from .sampling import PRESETS, sample, to_uint8
from .seeds import mix_seed
from .vae import decode_if_latent


@dataclass(frozen=True)
class FidSampling:
    """What `sample-fid` draws; a restart must ask for the same (the checkpoint is named, not hashed)."""

    ckpt: str
    n: int = 50_000
    seed: int = 0
    steps: str = "250"
    method: str = "ddpm"
    cfg_scale: float = PRESETS["fid"]["cfg_scale"]      # MDT's; a DiT checkpoint's own is 1.5 (`sampling.preset`)
    scale_pow: float = PRESETS["fid"]["scale_pow"]
    vae_decoder: str = PRESETS["fid"]["vae_decoder"]
    shard_size: int = 64

    def __post_init__(self):
        for name in ("n", "shard_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"FidSampling.{name} must be at least 1, got {getattr(self, name)}")


def image_labels(seed: int, indices, num_classes: int) -> torch.Tensor:
    """The random class of each image index: a function of (seed, i) only."""
    return torch.tensor([mix_seed(seed, int(i), 1) % num_classes for i in indices], dtype=torch.long)


def image_generators(seed: int, indices, device="cpu") -> list[torch.Generator]:
    """One generator per image index, seeded from (seed, i): its noise does not depend on its batch."""
    return [torch.Generator(device=device).manual_seed(mix_seed(seed, int(i))) for i in indices]


def npz_name(n: int, height: int, width: int) -> str:
    """The official file name, e.g. samples_50000x256x256x3.npz."""
    return f"samples_{n}x{height}x{width}x3.npz"


def shard_file(out: Path, k: int) -> Path:
    return out / "shards" / f"shard_{k:06d}.npz"


def num_shards(s: FidSampling) -> int:
    return (s.n + s.shard_size - 1) // s.shard_size


def check_settings(out: Path, s: FidSampling) -> None:
    """Record the settings on the first start; refuse a restart that asks for different ones."""
    path = out / "settings.json"
    if path.exists():
        refuse_other_settings(out, json.loads(path.read_text()), asdict(s),
                              "use another --out, or the same settings to continue", keys=asdict(s))
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_json(path, asdict(s))


@torch.no_grad()
def sample_shard(model, s: FidSampling, k: int, diffusion: GaussianDiffusion) -> tuple[np.ndarray, np.ndarray]:
    """Shard k: uint8 images (B, H, W, 3) and their labels, decoded to pixels for latent models."""
    device = next(model.parameters()).device
    indices = range(k * s.shard_size, min(s.n, (k + 1) * s.shard_size))
    y = image_labels(s.seed, indices, model.num_classes).to(device)
    gens = image_generators(s.seed, indices, device)
    shape = (len(y), model.in_channels, model.input_size, model.input_size)
    x = sample(model, shape, y, diffusion, steps=s.steps, cfg_scale=s.cfg_scale, scale_pow=s.scale_pow,
               method=s.method, generator=gens)
    pixels = decode_if_latent(model, x, s.vae_decoder)
    return to_uint8(pixels).cpu().numpy(), y.cpu().numpy()


def _write_npz(path: Path, **arrays) -> None:
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _shard_array(out: Path, s: FidSampling, k: int, key: str) -> np.ndarray:
    """Array `key` of shard k, checked to hold exactly the shard's images."""
    with np.load(shard_file(out, k)) as shard:
        part = shard[key]
    want = min(s.n, (k + 1) * s.shard_size) - k * s.shard_size
    if len(part) != want:
        raise ValueError(f"{shard_file(out, k)} holds {len(part)} images where {want} belong; delete it and run the "
                         "same command again to redraw it")
    return part


def _stream_npz(f, out: Path, s: FidSampling) -> None:
    """Write the official .npz (arr_0: images, arr_1: labels) to the binary file f as np.savez lays it out (a zip
    of .npy files, stored), shard after shard: each entry's .npy header first, then the shards' bytes in order."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key in ("arr_0", "arr_1"):
            first = _shard_array(out, s, 0, key)
            header = {"descr": np.lib.format.dtype_to_descr(first.dtype), "fortran_order": False,
                      "shape": (s.n, *first.shape[1:])}
            with zf.open(f"{key}.npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array_header_1_0(entry, header)
                for k in range(num_shards(s)):
                    part = first if k == 0 else _shard_array(out, s, k, key)
                    if part.dtype != first.dtype or part.shape[1:] != first.shape[1:]:
                        raise ValueError(f"{shard_file(out, k)} holds {key} {part.dtype} {part.shape[1:]} unlike "
                                         "shard 0; delete it and run the same command again to redraw it")
                    entry.write(np.ascontiguousarray(part).tobytes())


def assemble(out: Path, s: FidSampling) -> Path:
    """Stream every shard, in index order, into the official .npz (written atomically); one shard in memory."""
    with np.load(shard_file(out, 0)) as shard:
        height, width = shard["arr_0"].shape[1:3]
    path = out / npz_name(s.n, height, width)
    atomic_write(path, lambda f: _stream_npz(f, out, s))
    return path


def sample_for_fid(model, s: FidSampling, out, dist: DistInfo | None = None,
                   diffusion: GaussianDiffusion | None = None, progress: bool = True) -> Path | None:
    """Sample the missing shards (this rank's share of them), then rank 0 assembles the .npz; returns its
    path on rank 0 (None elsewhere)."""
    out, dist = Path(out), dist or DistInfo()
    diffusion = diffusion or GaussianDiffusion()
    if dist.rank == 0:
        check_settings(out, s)
        (out / "shards").mkdir(parents=True, exist_ok=True)
        missing = [k for k in range(num_shards(s)) if not shard_file(out, k).exists()]
    else:
        missing = None
    missing = broadcast_object(missing, dist)
    mine = missing[dist.rank::dist.world_size]
    start = time.monotonic()
    for done, k in enumerate(mine, start=1):
        images, labels = sample_shard(model, s, k, diffusion)
        _write_npz(shard_file(out, k), arr_0=images, arr_1=labels)
        if progress and dist.rank == 0:
            eta = (time.monotonic() - start) / done * (len(mine) - done)
            print(f"\rsample-fid: shard {done}/{len(mine)} of this rank ({len(missing)} missing of "
                  f"{num_shards(s)} in all), ETA {eta / 60:.1f} min", end="", flush=True)
    if progress and dist.rank == 0 and mine:
        print()
    barrier(dist)
    return assemble(out, s) if dist.rank == 0 else None
