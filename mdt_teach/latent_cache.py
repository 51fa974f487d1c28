"""Encode a dataset once into a sharded SD-VAE latent cache (`mdt-teach cache-latents DATA OUT`), and read it.

Layout of OUT:
    manifest.json                what was cached (VAE, image size, latent shape, dtype, classes, shards)
    shard_00000.npy              (k, 2, 2, C, h, w): per image, per orientation (as is, mirrored),
                                 the posterior mean and std, in the cache's dtype
    shard_00000_labels.npy       (k,) int64 class labels
The official loader (`masked_diffusion/image_datasets.py`) mirrors every image with p = 0.5 *before*
encoding it, every time it is read; the VAE is not flip-equivariant, so mirroring a latent is not the
same thing. The cache therefore encodes both orientations of each image, and `LatentCache` picks one
with p = 0.5 from the per-position seeded RNG (`data_order.PositionSeeded`), so a resumed run makes the
same picks. It keeps the posterior's mean and std, not one sample, so training still draws a fresh
posterior sample each time (as the official code does when it encodes on the fly).

Storage dtype (`--dtype`): float16 by default (half of float32; its rounding error is stated in the
README), bfloat16 (same size, 8× coarser), or float32 (the official precision). bfloat16 is stored as
its raw 16 bits (numpy has no bfloat16). Every file is written under a temporary name and renamed, so a
killed run leaves only complete shards; running the command again skips them and finishes the rest.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from .checkpoint import atomic_write, write_json
from .data import LATENT_MANIFEST, is_latent_cache, make_dataset
from .same_settings import refuse_other_settings
from .vae import DEFAULT_VAE, SCALE, LatentVAE, load_vae, sample_latents

MANIFEST = LATENT_MANIFEST
FORMAT = "mdt-teach-latents-v2"
DTYPES = ("float16", "bfloat16", "float32")
_PLAN_KEYS = ("format", "data", "vae", "image_size", "num_images", "shard_size", "latent_shape", "dtype")


def shard_paths(root: Path, k: int) -> tuple[Path, Path]:
    """(moments file, labels file) of shard k."""
    return root / f"shard_{k:05d}.npy", root / f"shard_{k:05d}_labels.npy"


def _shard_counts(num_images: int, shard_size: int) -> list[int]:
    """Images per shard: full shards, then the remainder."""
    return [min(shard_size, num_images - s) for s in range(0, num_images, shard_size)]


def _check_shard(root: Path, k: int, count: int, latent_shape) -> str | None:
    """None when shard k is complete with the expected shapes, else what is wrong with it."""
    moments_path, labels_path = shard_paths(root, k)
    if not moments_path.is_file() or not labels_path.is_file():
        return "missing"
    want = (count, 2, 2, *latent_shape)
    shape = np.load(moments_path, mmap_mode="r").shape
    labels = np.load(labels_path, mmap_mode="r").shape
    if tuple(shape) != want or tuple(labels) != (count,):
        return f"shape {tuple(shape)} / labels {tuple(labels)} but the manifest says {want} / ({count},)"
    return None


def _as_vae(vae) -> LatentVAE:
    """A name or folder (load_vae), a LatentVAE, or a bare diffusers AutoencoderKL."""
    if isinstance(vae, LatentVAE):
        return vae
    if isinstance(vae, (str, Path)):
        return load_vae(str(vae))
    return LatentVAE(vae)


def to_storage(x: torch.Tensor, dtype: str) -> np.ndarray:
    """float32 tensor → the numpy array stored for `dtype` (bfloat16 as its raw 16 bits in an int16 array)."""
    if dtype == "bfloat16":
        return x.to(torch.bfloat16).view(torch.int16).numpy()
    return x.to(getattr(torch, dtype)).numpy()


def from_storage(a: np.ndarray, dtype: str) -> torch.Tensor:
    """A stored array (or a slice of a memory map) → float32 tensor."""
    t = torch.from_numpy(np.array(a))
    return (t.view(torch.bfloat16) if dtype == "bfloat16" else t).float()


def _plan(data, dataset: Dataset, vae: LatentVAE, image_size: int, shard_size: int, dtype: str) -> dict:
    """Everything that must match for a resumed cache to be the same cache."""
    side = image_size // vae.downsample
    return {"format": FORMAT, "data": str(data), "vae": vae.name, "image_size": image_size,
            "num_images": len(dataset), "shard_size": shard_size, "orientations": ["as is", "mirrored"],
            "latent_shape": [vae.latent_channels, side, side], "dtype": dtype, "scale": SCALE,
            "classes": list(getattr(dataset, "classes", [])),
            "num_classes": int(getattr(dataset, "num_classes", 0))}


def _start_manifest(root: Path, plan: dict) -> dict:
    """Create the manifest, or check that an existing one describes the same cache (resume)."""
    path = root / MANIFEST
    if path.is_file():
        refuse_other_settings(root, json.loads(path.read_text()), plan,
                              "pass another OUT folder, or delete this one", keys=_PLAN_KEYS)
    manifest = dict(plan, shards=[], complete=False)
    write_json(path, manifest)
    return manifest


def _encode_shard(dataset: Dataset, start: int, count: int, vae: LatentVAE, batch_size: int,
                  workers: int, bar, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Posterior (mean, std) of both orientations, (count, 2, 2, C, h, w) in `dtype`, and the labels (count,)."""
    loader = DataLoader(Subset(dataset, range(start, start + count)), batch_size=batch_size,
                        num_workers=workers, shuffle=False)
    moments, labels = [], []
    for x, y in loader:
        both = []
        for image in (x, x.flip(-1)):                                 # as is, mirrored (before encoding)
            mean, std = vae.moments(image)                            # (B, C, h, w) each
            both.append(torch.stack([mean, std], 1).float().cpu())    # (B, 2, C, h, w)
        moments.append(torch.stack(both, 1))                          # (B, 2, 2, C, h, w)
        labels.append(torch.as_tensor(y).long())
        bar.update(len(x))
    return to_storage(torch.cat(moments), dtype), torch.cat(labels).numpy()


def cache_latents(data, out, vae=DEFAULT_VAE, image_size: int = 256, batch_size: int = 32,
                  shard_size: int = 10_000, workers: int = 0, device: str | None = None,
                  progress: bool = True, dtype: str = "float16") -> dict:
    """Encode both orientations of every image of `data` (image folder, "digits", ...) into OUT; skips
    shards already complete. Returns {"written": [...], "skipped": [...]} shard numbers."""
    if shard_size < 1 or batch_size < 1:
        raise ValueError(f"shard size {shard_size} and batch size {batch_size} must be >= 1")
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype!r} is not a storage dtype; use one of {', '.join(DTYPES)}")
    if is_latent_cache(data):
        raise ValueError(f"{data} is already a latent cache; pass the image folder it was made from")
    dataset = make_dataset(data, image_size=image_size, flip=False)
    vae = _as_vae(vae).to(device)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob("*.tmp"):
        stale.unlink()
    manifest = _start_manifest(root, _plan(data, dataset, vae, image_size, shard_size, dtype))
    counts = _shard_counts(len(dataset), shard_size)
    done = [k for k, c in enumerate(counts) if _check_shard(root, k, c, manifest["latent_shape"]) is None]
    report = {"written": [], "skipped": done}
    with tqdm(total=len(dataset), initial=sum(counts[k] for k in done), unit="img",
              disable=not progress, desc="cache-latents") as bar:
        for k, count in enumerate(counts):
            if k in done:
                continue
            moments, labels = _encode_shard(dataset, k * shard_size, count, vae, batch_size, workers, bar, dtype)
            moments_path, labels_path = shard_paths(root, k)
            atomic_write(labels_path, lambda f: np.save(f, labels))
            atomic_write(moments_path, lambda f: np.save(f, moments))    # renamed last: marks the shard done
            report["written"].append(k)
    manifest.update(shards=[{"file": shard_paths(root, k)[0].name, "count": c} for k, c in enumerate(counts)],
                    complete=True)
    write_json(root / MANIFEST, manifest)
    return report


class LatentCache(Dataset):
    """A finished latent cache as (latent (C, h, w), label): one of the two stored orientations, picked with
    p = 0.5 from torch's RNG (`flip=True`, the official augmentation; `flip=False` always the image as is),
    then a fresh posterior sample × 0.18215 (`sample=True`, what training wants) or the posterior mean
    × 0.18215 (`sample=False`)."""

    def __init__(self, root, sample: bool = True, flip: bool = True):
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{self.root} has no {MANIFEST}; create the cache with "
                                    "`mdt-teach cache-latents DATA OUT`")
        m = json.loads(path.read_text())
        if m.get("format") == "mdt-teach-latents-v1":
            raise ValueError(f"latent cache {self.root} was made without the mirrored images the official "
                             "augmentation needs; run `mdt-teach cache-latents` again into a new folder")
        if m.get("format") != FORMAT or not m.get("complete"):
            raise ValueError(f"latent cache {self.root} is incomplete or not a {FORMAT} cache; "
                             "run `mdt-teach cache-latents` again with the same arguments to finish it")
        self.manifest, self.sample, self.flip, self.dtype = m, bool(sample), bool(flip), m["dtype"]
        self.latent_shape = tuple(m["latent_shape"])
        self.classes = tuple(m["classes"])
        self.num_classes = int(m["num_classes"])
        self.in_channels, self.image_size = self.latent_shape[0], self.latent_shape[1]
        self.pixel_image_size = m["image_size"]
        counts = [s["count"] for s in m["shards"]]
        for k, count in enumerate(counts):
            problem = _check_shard(self.root, k, count, self.latent_shape)
            if problem is not None:
                raise ValueError(f"latent cache {self.root}: shard {k} is {problem}; "
                                 "delete that shard file and run `mdt-teach cache-latents` again")
        self._starts = np.cumsum([0] + counts)
        self._moments = [np.load(shard_paths(self.root, k)[0], mmap_mode="r") for k in range(len(counts))]
        self._labels = np.concatenate([np.load(shard_paths(self.root, k)[1]) for k in range(len(counts))])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def moments(self, i: int, mirrored: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Stored posterior (mean, std) of item i as is or mirrored, unscaled, float32 (C, h, w) each."""
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} is out of range for a latent cache of {len(self)} items")
        k = int(np.searchsorted(self._starts, i, side="right") - 1)
        pair = from_storage(self._moments[k][i - self._starts[k], int(mirrored)], self.dtype)   # (2, C, h, w)
        return pair[0], pair[1]

    def __getitem__(self, i: int):
        mirrored = self.flip and bool(torch.rand(()) < 0.5)     # reseeded per stream position by PositionSeeded
        mean, std = self.moments(i, mirrored)
        z = sample_latents(mean, std) if self.sample else mean * SCALE
        return z, int(self._labels[i])
