"""The data in a deterministic order, and the seeds of every random draw: what makes `--resume` exact.

The global batch of step k holds stream positions k·B … k·B + B − 1. It is cut into `world_size ×
grad_accum` equal shards; rank r takes shards r·A … r·A + A − 1. What a position holds is a pure function
of (seed, position): face i of the smileys world `seed`, or, for a finite dataset of N items, item
perm_e[p mod N] of the permutation of epoch e = p // N seeded by (seed, e). The random draws of one shard
(timesteps, noise, label dropout, mask) are seeded from (seed, step, shard) by `seed_shard`.

So a resumed run sees the same batches and draws as an uninterrupted one, and 2 ranks × 1 shard make the
same update as 1 rank × 2 accumulated shards. The official loader shuffles with a running RNG and, under
torchrun, does not shard at all (`masked_diffusion/image_datasets.py: load_data`).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .data import DEFAULT_WORLD, WORLDS, ImageFolder, is_latent_cache, make_dataset, smileys_at
from .distributed import DistInfo
from .latent_cache import LatentCache
from .seeds import mix_seed


def seed_shard(seed: int, step: int, shard: int) -> None:
    """Reseed torch (CPU and CUDA) for one shard of one step: all of its draws follow from (seed, step, shard)."""
    torch.manual_seed(mix_seed(seed, step, shard))


def shard_positions(step: int, batch_size: int, info: DistInfo, grad_accum: int) -> np.ndarray:
    """Stream positions of this rank's `grad_accum` consecutive shards of step `step`'s global batch."""
    per = batch_size // (info.world_size * grad_accum)
    start = step * batch_size + info.rank * grad_accum * per
    return np.arange(start, start + grad_accum * per)


class SmileyStream:
    """A smileys world as an endless stream: position i is face i of `world`, seed `seed` (`data.smileys_at`)."""

    num_classes, in_channels, image_size = 4, 3, 32

    def __init__(self, seed: int, world: str = DEFAULT_WORLD):
        self.seed, self.world = seed, world

    def local_batch(self, step: int, batch_size: int, info: DistInfo, grad_accum: int):
        """(x (n, 3, 32, 32) in [-1, 1], y (n,)) of this rank's shards of step `step`."""
        return smileys_at(shard_positions(step, batch_size, info, grad_accum), seed=self.seed, world=self.world)


class EpochPermutation:
    """Position p of a finite dataset → index perm_e[p mod N] with e = p // N, perm_e seeded by (seed, e)."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self._cache = size, seed, {}

    def __call__(self, positions: np.ndarray) -> list[tuple[int, int]]:
        """(position, dataset index) pairs of the stream positions."""
        out = []
        for p in positions:
            epoch, j = divmod(int(p), self.size)
            if epoch not in self._cache:
                g = torch.Generator().manual_seed(mix_seed(self.seed, epoch, 0xDA7A))
                self._cache = {epoch: torch.randperm(self.size, generator=g).tolist()}
            out.append((int(p), self._cache[epoch][j]))
        return out


class PositionSeeded(Dataset):
    """Item (position, index) = dataset[index] with torch reseeded from (seed, position) first, so random
    augmentations (flips) and latent posterior draws are the same in any worker and after a resume."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        position, index = item
        torch.manual_seed(mix_seed(self.seed, position, 0xF11B))
        return self.dataset[index]


class LoaderSource:
    """A finite dataset (digits, image folder, latent cache) read through a DataLoader in the stream order."""

    def __init__(self, dataset, seed: int, num_workers: int):
        self.dataset, self.seed, self.num_workers = dataset, seed, num_workers
        self.num_classes, self.in_channels, self.image_size = dataset.num_classes, dataset.in_channels, dataset.image_size
        self._batches, self._next = None, None

    def _order(self, step: int, batch_size: int, info: DistInfo, grad_accum: int):
        """(position, index) lists of this rank's shards, step after step from `step` (the batch sampler)."""
        order = EpochPermutation(len(self.dataset), self.seed)
        while True:
            yield order(shard_positions(step, batch_size, info, grad_accum))
            step += 1

    def local_batch(self, step: int, batch_size: int, info: DistInfo, grad_accum: int):
        """(x, y) of this rank's shards of step `step`; the DataLoader (re)starts when the steps jump."""
        key = (step, batch_size, info, grad_accum)
        if self._batches is None or key != self._next:
            loader = DataLoader(PositionSeeded(self.dataset, self.seed), num_workers=self.num_workers,
                                batch_sampler=self._order(step, batch_size, info, grad_accum),
                                persistent_workers=self.num_workers > 0)
            self._batches = iter(loader)
        self._next = (step + 1, batch_size, info, grad_accum)
        x, y = next(self._batches)[:2]
        return x, torch.as_tensor(y).long()


def make_source(data: str, seed: int, num_workers: int = 0, image_size: int = 32):
    """The batch source for --data: the smileys stream, or a dataset (digits, image folder, latent cache); an image
    folder's files are all checked first."""
    if data in WORLDS:
        return SmileyStream(seed, data)
    if is_latent_cache(data):
        return LoaderSource(LatentCache(data), seed, num_workers)
    dataset = make_dataset(data, image_size=None if data == "digits" else image_size)
    if isinstance(dataset, ImageFolder):
        dataset.check()
    return LoaderSource(dataset, seed, num_workers)
