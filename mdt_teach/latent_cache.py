"""Encode a dataset once into a sharded SD-VAE latent cache (`mdt-teach cache-latents DATA OUT`), and read it.

Layout of OUT:
    manifest.json                what was cached (VAE, image size, latent shape, classes, shards)
    shard_00000.npy              (k, 2, C, h, w) float16: posterior mean and std per image
    shard_00000_labels.npy       (k,) int64 class labels
The cache keeps the posterior's mean and std, not one sample, so training still draws a fresh
posterior sample each time (as DiT/MDT do when they encode on the fly). Every file is written under
a temporary name and renamed, so a killed run leaves only complete shards; running the command again
skips them and finishes the rest. Images are cached unflipped (ADM centre crop, no random flip).
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
from .vae import DEFAULT_VAE, SCALE, LatentVAE, load_vae, sample_latents

MANIFEST = LATENT_MANIFEST
FORMAT = "mdt-teach-latents-v1"
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
    want = (count, 2, *latent_shape)
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


def _plan(data, dataset: Dataset, vae: LatentVAE, image_size: int, shard_size: int) -> dict:
    """Everything that must match for a resumed cache to be the same cache."""
    side = image_size // vae.downsample
    return {"format": FORMAT, "data": str(data), "vae": vae.name, "image_size": image_size,
            "num_images": len(dataset), "shard_size": shard_size,
            "latent_shape": [vae.latent_channels, side, side], "dtype": "float16", "scale": SCALE,
            "classes": list(getattr(dataset, "classes", [])),
            "num_classes": int(getattr(dataset, "num_classes", 0))}


def _start_manifest(root: Path, plan: dict) -> dict:
    """Create the manifest, or check that an existing one describes the same cache (resume)."""
    path = root / MANIFEST
    if path.is_file():
        old = json.loads(path.read_text())
        changed = [k for k in _PLAN_KEYS if old.get(k) != plan.get(k)]
        if changed:
            raise ValueError(f"{root} already holds a latent cache with different {', '.join(changed)}; "
                             "pass another OUT folder or delete this one")
    manifest = dict(plan, shards=[], complete=False)
    write_json(path, manifest)
    return manifest


def _encode_shard(dataset: Dataset, start: int, count: int, vae: LatentVAE, batch_size: int,
                  workers: int, bar) -> tuple[np.ndarray, np.ndarray]:
    """Posterior (mean, std) stacked as (count, 2, C, h, w) float16, and the labels (count,)."""
    loader = DataLoader(Subset(dataset, range(start, start + count)), batch_size=batch_size,
                        num_workers=workers, shuffle=False)
    moments, labels = [], []
    for x, y in loader:
        mean, std = vae.moments(x)                                    # (B, C, h, w) each
        moments.append(torch.stack([mean, std], 1).float().cpu())     # (B, 2, C, h, w)
        labels.append(torch.as_tensor(y).long())
        bar.update(len(x))
    return torch.cat(moments).numpy().astype(np.float16), torch.cat(labels).numpy()


def cache_latents(data, out, vae=DEFAULT_VAE, image_size: int = 256, batch_size: int = 32,
                  shard_size: int = 10_000, workers: int = 0, device: str | None = None,
                  progress: bool = True) -> dict:
    """Encode `data` (image folder, "digits", ...) into OUT; skips shards already complete.

    Returns {"written": [...], "skipped": [...]} shard numbers."""
    if shard_size < 1 or batch_size < 1:
        raise ValueError(f"shard size {shard_size} and batch size {batch_size} must be >= 1")
    if is_latent_cache(data):
        raise ValueError(f"{data} is already a latent cache; pass the image folder it was made from")
    dataset = make_dataset(data, image_size=image_size, flip=False)
    vae = _as_vae(vae).to(device)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob("*.tmp"):
        stale.unlink()
    manifest = _start_manifest(root, _plan(data, dataset, vae, image_size, shard_size))
    counts = _shard_counts(len(dataset), shard_size)
    done = [k for k, c in enumerate(counts) if _check_shard(root, k, c, manifest["latent_shape"]) is None]
    report = {"written": [], "skipped": done}
    with tqdm(total=len(dataset), initial=sum(counts[k] for k in done), unit="img",
              disable=not progress, desc="cache-latents") as bar:
        for k, count in enumerate(counts):
            if k in done:
                continue
            moments, labels = _encode_shard(dataset, k * shard_size, count, vae, batch_size, workers, bar)
            moments_path, labels_path = shard_paths(root, k)
            atomic_write(labels_path, lambda f: np.save(f, labels))
            atomic_write(moments_path, lambda f: np.save(f, moments))    # renamed last: marks the shard done
            report["written"].append(k)
    manifest.update(shards=[{"file": shard_paths(root, k)[0].name, "count": c} for k, c in enumerate(counts)],
                    complete=True)
    write_json(root / MANIFEST, manifest)
    return report


class LatentCache(Dataset):
    """A finished latent cache as (latent (C, h, w), label): a fresh posterior sample × 0.18215 per
    read (`sample=True`, what training wants) or the posterior mean × 0.18215 (`sample=False`).
    `flip=True` mirrors latents horizontally, which only approximates encoding a flipped image."""

    def __init__(self, root, sample: bool = True, flip: bool = False):
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{self.root} has no {MANIFEST}; create the cache with "
                                    "`mdt-teach cache-latents DATA OUT`")
        m = json.loads(path.read_text())
        if m.get("format") != FORMAT or not m.get("complete"):
            raise ValueError(f"latent cache {self.root} is incomplete or not a {FORMAT} cache; "
                             "run `mdt-teach cache-latents` again with the same arguments to finish it")
        self.manifest, self.sample, self.flip = m, bool(sample), bool(flip)
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

    def moments(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Stored posterior (mean, std) of item i, unscaled, float32 (C, h, w) each."""
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} is out of range for a latent cache of {len(self)} items")
        k = int(np.searchsorted(self._starts, i, side="right") - 1)
        pair = torch.from_numpy(np.asarray(self._moments[k][i - self._starts[k]], dtype=np.float32))  # (2, C, h, w)
        return pair[0], pair[1]

    def __getitem__(self, i: int):
        mean, std = self.moments(i)
        z = sample_latents(mean, std) if self.sample else mean * SCALE
        return (z.flip(-1) if self.flip and torch.rand(()) < 0.5 else z), int(self._labels[i])
