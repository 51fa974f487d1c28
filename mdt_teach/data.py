"""Data: the smileys worlds (`smileys.py`), scikit-learn digits, image folders (ADM layout) and one factory.

Every image is a float32 tensor (C, H, W) in [-1, 1]; every dataset carries `num_classes`,
`in_channels`, `image_size` and `classes`, so the trainer can size the model from the data.
The smileys generator itself lives in `smileys.py`; its public names are importable from here too.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .smileys import (CORRUPTIONS, DEFAULT_WORLD, SMILEY_CLASSES, SMILEY_SIZE, WORLDS,  # noqa: F401 (re-exported)
                      SmileyParams, check_world, corrupted_smileys, part_masks, render, render_meta, smileys_at,
                      smileys_batch, world_version)


# ----------------------------------------------------------------------------------------------
# Datasets: smileys, digits, image folders, and the factory the trainer uses
# ----------------------------------------------------------------------------------------------
def _check_index(i: int, n: int) -> int:
    """Python-style index into a dataset of length n (negative counts from the end)."""
    if not -n <= i < n:
        raise IndexError(f"index {i} is out of range for a dataset of {n} items")
    return i % n


class Smileys(Dataset):
    """n faces of `world` (seed `seed`) as (image (3, 32, 32) in [-1, 1], label); generated on demand."""

    classes = SMILEY_CLASSES
    num_classes = len(SMILEY_CLASSES)
    in_channels = 3
    image_size = SMILEY_SIZE

    def __init__(self, n: int, seed: int = 0, world: str = DEFAULT_WORLD):
        if n <= 0:
            raise ValueError(f"Smileys needs n >= 1 images; got {n}")
        self.n, self.seed, self.world = int(n), int(seed), check_world(world)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.__getitems__([i])[0]

    def __getitems__(self, indices):
        """A whole batch in one vectorised call (torch's DataLoader uses this when it exists)."""
        idx = [_check_index(int(i), self.n) for i in indices]
        images, labels = smileys_at(idx, seed=self.seed, world=self.world)
        return [(images[k], int(labels[k])) for k in range(len(idx))]


@functools.lru_cache(maxsize=1)
def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (images (1797, 8, 8) with values 0..16, targets), read once.

    Reads sklearn's own data file directly (importing sklearn takes seconds); falls back to load_digits."""
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits
        bunch = load_digits()
        return bunch.images, bunch.target
    table = np.loadtxt(path, delimiter=",")                             # (1797, 65): 64 pixels + target
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)  # (N, 8, 8)


class Digits(Dataset):
    """scikit-learn's 1,797 handwritten digits (8×8, 16 grey levels), dark ink on white, bilinearly
    upsampled to image_size, replicated to 3 channels (so RGB models and the feature net take them), in [-1, 1]."""

    classes = tuple("0123456789")
    num_classes = 10
    in_channels = 3

    def __init__(self, image_size: int = 32):
        images, target = _sklearn_digits()
        ink = torch.from_numpy(images).float()[:, None] / 16.0            # (N, 1, 8, 8) in [0, 1]
        paper = torch.nn.functional.interpolate(1.0 - ink, size=(image_size, image_size),
                                                mode="bilinear", align_corners=False)  # (N, 1, S, S)
        self.images = (paper * 2.0 - 1.0).expand(-1, 3, -1, -1).contiguous()         # (N, 3, S, S)
        self.labels = torch.from_numpy(target).long()
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")
_FOLDER_HINT = "ADM naming ClassID_ImgID.jpg or one subfolder per class"


def list_image_folder(root) -> tuple[list[Path], list[int], tuple[str, ...]]:
    """Files, labels and class names of an image folder: class subfolders, else ADM's
    `ClassID_ImgID.ext` names (class = text before the first "_"), else one class."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist; pass a folder of images ({_FOLDER_HINT})")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}; "
                                f"add images ({_FOLDER_HINT})")
    relative = [p.relative_to(root) for p in files]
    if all(len(r.parts) > 1 for r in relative):
        names = [r.parts[0] for r in relative]
    elif all("_" in p.name for p in files):
        names = [p.name.split("_")[0] for p in files]
    else:
        names = ["all"] * len(files)
    classes = tuple(sorted(set(names)))
    index = {c: k for k, c in enumerate(classes)}
    return files, [index[c] for c in names], classes


def center_crop_arr(image, image_size: int) -> np.ndarray:
    """ADM's centre crop: halve with BOX while the short side >= 2×size, BICUBIC-resize the short
    side to size, crop the centre; returns uint8 (size, size, 3)."""
    from PIL import Image
    while min(image.size) >= 2 * image_size:
        image = image.resize(tuple(s // 2 for s in image.size), resample=Image.BOX)
    scale = image_size / min(image.size)
    image = image.resize(tuple(round(s * scale) for s in image.size), resample=Image.BICUBIC)
    arr = np.asarray(image.convert("RGB"))
    top, left = (arr.shape[0] - image_size) // 2, (arr.shape[1] - image_size) // 2
    return arr[top:top + image_size, left:left + image_size]


def unreadable_image(path, err: Exception) -> ValueError:
    """The one sentence for an image file Pillow cannot read."""
    return ValueError(f"cannot read image {path} ({err.__class__.__name__}); remove or replace the file")


def load_image(path, image_size: int) -> np.ndarray:
    """Read one image and ADM-centre-crop it; an unreadable file raises one clear ValueError."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            return center_crop_arr(image.convert("RGB"), image_size)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise unreadable_image(path, err) from err


class ImageFolder(Dataset):
    """An image folder as (image (3, S, S) in [-1, 1], label): ADM centre crop, random horizontal flip."""

    in_channels = 3

    def __init__(self, root, image_size: int = 256, flip: bool = True):
        self.files, self.labels, self.classes = list_image_folder(root)
        self.num_classes = len(self.classes)
        self.image_size, self.flip = int(image_size), bool(flip)

    def check(self) -> None:
        """Open every file's header (no decoding): a file Pillow cannot identify fails now, with its name, rather
        than hours into a run."""
        from PIL import Image, UnidentifiedImageError
        for path in self.files:
            try:
                with Image.open(path):
                    pass
            except (OSError, UnidentifiedImageError, ValueError) as err:
                raise unreadable_image(path, err) from None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        arr = load_image(self.files[i], self.image_size)                 # (S, S, 3) uint8
        if self.flip and torch.rand(()) < 0.5:
            arr = arr[:, ::-1]
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float()          # (3, S, S)
        return x / 127.5 - 1.0, self.labels[i]


LATENT_MANIFEST = "manifest.json"   # what makes a folder a latent cache (latent_cache.py writes it)


def is_latent_cache(path) -> bool:
    """True for a folder written by `mdt-teach cache-latents` (it holds the manifest)."""
    return (Path(path) / LATENT_MANIFEST).is_file()


DEFAULT_SMILEYS = 1_000_000   # generated on demand, so a long epoch costs nothing


def make_dataset(name_or_path, image_size: int | None = None, n: int | None = None, seed: int = 0,
                 flip: bool = True) -> Dataset:
    """A smileys world (WORLDS), "digits" or an image folder → a Dataset with `num_classes`, `in_channels`,
    `image_size` and `classes`. (`--data` also takes a latent cache: `data_order.make_source` opens it.)"""
    name = str(name_or_path)
    if name in WORLDS:
        if image_size not in (None, SMILEY_SIZE):
            raise ValueError(f"smileys are {SMILEY_SIZE}×{SMILEY_SIZE}; use image size {SMILEY_SIZE}, not {image_size}")
        return Smileys(n or DEFAULT_SMILEYS, seed=seed, world=name)
    if name == "digits":
        return Digits(image_size or 32)
    path = Path(name).expanduser()
    if is_latent_cache(path):
        raise ValueError(f"{path} is a latent cache, not an image folder; open it with latent_cache.LatentCache")
    if not path.exists():
        raise FileNotFoundError(f"data {name!r} is neither a smileys world ({', '.join(WORLDS)}), digits nor an "
                                f"existing folder; "
                                f"pass one of those ({_FOLDER_HINT})")
    return ImageFolder(path, image_size=image_size or 256, flip=flip)
