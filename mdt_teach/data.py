"""Data: the smileys toy world, scikit-learn digits, image folders (ADM layout) and one factory.

Every image is a float32 tensor (C, H, W) in [-1, 1]; every dataset carries `num_classes`,
`in_channels`, `image_size` and `classes`, so the trainer can size the model from the data.

The smileys world (docs/smileys.md): 32×32 RGB faces on a light background, class =
expression. Every face has exactly two eyes, mirror-symmetric about the face's vertical axis and at
the same height, and a mouth below them. Image i depends only on (seed, i): each image's random
numbers come from a counter-based hash keyed on (seed, index, field), so a batch can be generated
in any order or size and image i is always the same.
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

SMILEY_CLASSES = ("smile", "frown", "surprised", "neutral")
SMILEY_SIZE = 32
CORRUPTIONS = ("erase_eye", "extra_eye", "shift_eye", "noise")

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


# ----------------------------------------------------------------------------------------------
# Counter-based random numbers: uniform(seed, index, field), vectorised
# ----------------------------------------------------------------------------------------------
def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic): a good 64-bit mixing hash."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _uniforms(seed: int, indices: np.ndarray, num_fields: int, stream: int = 0) -> np.ndarray:
    """U[0, 1) numbers of shape (n, num_fields), a pure function of (seed, stream, index, field)."""
    key = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) ^ np.uint64(stream))
    per_image = _splitmix64(key ^ (indices.astype(np.uint64) * np.uint64(0xD1B54A32D192ED03)))
    fields = np.arange(num_fields, dtype=np.uint64) * _GOLDEN
    bits = _splitmix64(per_image[:, None] + fields[None, :])          # (n, F)
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def _between(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map U[0, 1) numbers to U[lo, hi)."""
    return lo + (hi - lo) * u


# ----------------------------------------------------------------------------------------------
# Scene parameters: one row per image
# ----------------------------------------------------------------------------------------------
@dataclass
class SmileyParams:
    """Geometry and colours of a batch of faces (pixel units, x = column, y = row, centre 15.5)."""

    label: np.ndarray          # (n,) int64 expression index into SMILEY_CLASSES
    background: np.ndarray     # (n, 3)
    face_color: np.ndarray     # (n, 3)
    face_center: np.ndarray    # (n, 2) x, y
    face_radius: np.ndarray    # (n,)
    eye_centers: np.ndarray    # (n, E, 2) x, y; E = 2 for real faces (left, right), 3 with an extra eye
    eye_radii: np.ndarray      # (n, E); 0 = no eye drawn
    eye_color: np.ndarray      # (n, 3)
    mouth_center: np.ndarray   # (n, 2) x, y of the mouth's middle
    mouth_half_width: np.ndarray  # (n,) half width of the curve (smile, frown, neutral)
    mouth_depth: np.ndarray    # (n,) signed sagitta: > 0 smile (middle lower), < 0 frown, 0 neutral
    mouth_ring: np.ndarray     # (n, 2) ring radii (rx, ry) of the surprised "o"; 0 for other mouths
    mouth_color: np.ndarray    # (n, 3)

    def as_meta(self) -> dict:
        """Per-image metadata as a dict of numpy arrays (what `smileys_batch(meta=True)` returns)."""
        return {name: np.copy(value) for name, value in self.__dict__.items()}


def _sample_params(indices: np.ndarray, seed: int, varied: bool) -> SmileyParams:
    """Draw every face's parameters from the ranges in docs/smileys.md (default world or `varied`)."""
    u = _uniforms(seed, indices, 24)
    n = len(indices)
    label = np.minimum((u[:, 0] * len(SMILEY_CLASSES)).astype(np.int64), len(SMILEY_CLASSES) - 1)
    if varied:
        grey = _between(u[:, 1], 0.80, 0.95)[:, None]
        background = np.clip(grey + _between(u[:, 2:5], -0.05, 0.05), 0, 1)
        face_color = np.stack([_between(u[:, 5], 0.85, 1.0), _between(u[:, 6], 0.58, 0.90),
                               _between(u[:, 7], 0.20, 0.50)], axis=1)
        radius = _between(u[:, 8], 10.0, 13.0)
        center = 15.5 + _between(u[:, 9:11], -2.0, 2.0)
        mouth_jitter = 0.08
    else:
        background = np.full((n, 3), 0.88)
        face_color = np.array([0.93, 0.68, 0.40]) + _between(u[:, 5:8], -0.03, 0.03)
        radius = _between(u[:, 8], 11.0, 12.0)
        center = 15.5 + _between(u[:, 9:11], -1.0, 1.0)
        mouth_jitter = 0.03
    cx, cy = center[:, 0], center[:, 1]
    eye_r = _between(u[:, 11], 1.5, 2.5)
    eye_dx = radius * _between(u[:, 12], 0.33, 0.45)    # >= .33 R so the two eyes never touch
    eye_y = cy - radius * _between(u[:, 13], 0.25, 0.40)
    eye_centers = np.stack([np.stack([cx - eye_dx, eye_y], 1), np.stack([cx + eye_dx, eye_y], 1)], 1)
    eye_color = np.repeat(_between(u[:, 14], 0.0, 0.15)[:, None], 3, axis=1)
    mouth_color = np.array([0.50, 0.08, 0.10]) + _between(u[:, 15:18], -mouth_jitter, mouth_jitter)
    surprised = label == SMILEY_CLASSES.index("surprised")
    sign = np.select([label == 0, label == 1], [1.0, -1.0], 0.0)
    line_y = cy + radius * _between(u[:, 18], 0.38, 0.50)
    ring_y = cy + radius * _between(u[:, 18], 0.45, 0.52)
    ring_ry = radius * _between(u[:, 19], 0.15, 0.20)
    ring = np.stack([ring_ry * _between(u[:, 20], 0.8, 1.0), ring_ry], 1) * surprised[:, None]
    return SmileyParams(
        label=label, background=background, face_color=face_color, face_center=center,
        face_radius=radius, eye_centers=eye_centers, eye_radii=np.stack([eye_r, eye_r], 1),
        eye_color=eye_color, mouth_center=np.stack([cx, np.where(surprised, ring_y, line_y)], 1),
        mouth_half_width=np.where(surprised, 0.0, radius * _between(u[:, 21], 0.35, 0.48)),
        mouth_depth=sign * radius * _between(u[:, 22], 0.18, 0.28), mouth_ring=ring,
        mouth_color=np.clip(mouth_color, 0, 1))


# ----------------------------------------------------------------------------------------------
# Anti-aliased rendering (pixel coverage ≈ clip(0.5 - signed distance, 0, 1))
# ----------------------------------------------------------------------------------------------
_STROKE = 0.75   # half thickness of the mouth stroke, in pixels


def _coverage(signed_distance: np.ndarray) -> np.ndarray:
    """Approximate pixel coverage of a shape from the signed distance of the pixel centre."""
    return np.clip(0.5 - signed_distance, 0.0, 1.0)


def _col(v: np.ndarray) -> np.ndarray:
    """Per-image scalars (n,) as (n, 1, 1) to broadcast against the pixel grid."""
    return v.astype(np.float32)[:, None, None]


def _disc_alpha(X, Y, cx, cy, r) -> np.ndarray:
    """Coverage of discs of radius r centred at (cx, cy); X is (1, 1, W), Y is (1, H, 1); r <= 0 draws nothing."""
    r = np.where(r > 0, r, -8.0)
    dist = np.sqrt((X - _col(cx)) ** 2 + (Y - _col(cy)) ** 2)      # (n, H, W)
    return _coverage(dist - _col(r))


def _curve_alpha(X, Y, p: SmileyParams) -> np.ndarray:
    """Coverage of the parabola stroke y = m_y + d (1/2 - u^2), u = (x - m_x) / w in [-1, 1]."""
    mx, my = _col(p.mouth_center[:, 0]), _col(p.mouth_center[:, 1])
    w = _col(np.maximum(p.mouth_half_width, 1e-3))
    depth = _col(p.mouth_depth)
    u = np.clip((X - mx) / w, -1.0, 1.0)                              # (n, 1, W)
    y_c = my + depth * (0.5 - u * u)                                  # (n, 1, W) nearest curve height
    slope = -2.0 * depth * u / w
    inside = np.abs(X - mx) <= w
    norm = np.where(inside, 1.0 / np.sqrt(1.0 + slope * slope), 1.0).astype(np.float32)
    dx2 = (X - (mx + w * u)) ** 2                                     # 0 over the curve, > 0 past its ends
    d = np.sqrt(dx2 + ((Y - y_c) * norm) ** 2)                        # (n, H, W)
    return _coverage(d - _STROKE)


def _ring_alpha(X, Y, p: SmileyParams) -> np.ndarray:
    """Coverage of the surprised "o": an elliptic ring with radii (rx, ry) around the mouth centre."""
    mx, my = _col(p.mouth_center[:, 0]), _col(p.mouth_center[:, 1])
    rx, ry = _col(p.mouth_ring[:, 0]), _col(p.mouth_ring[:, 1])
    f = np.sqrt(((X - mx) / rx) ** 2 + ((Y - my) / ry) ** 2)         # (n, H, W)
    return _coverage(np.abs(f - 1.0) * 0.5 * (rx + ry) - _STROKE)


def _mouth_alpha(X, Y, p: SmileyParams) -> np.ndarray:
    """Coverage of the mouth: the ring for surprised faces, the parabola stroke for the others."""
    ring = p.mouth_ring[:, 1] > 0
    alpha = np.empty((len(ring), Y.shape[1], X.shape[2]), np.float32)
    if (~ring).any():
        alpha[~ring] = _curve_alpha(X, Y, _subset(p, ~ring))
    if ring.any():
        alpha[ring] = _ring_alpha(X, Y, _subset(p, ring))
    return alpha


def _subset(p: SmileyParams, keep: np.ndarray) -> SmileyParams:
    """The parameters of the images selected by a boolean mask."""
    return SmileyParams(**{k: v[keep] for k, v in p.__dict__.items()})


def _blend(img: np.ndarray, color: np.ndarray, alpha: np.ndarray) -> None:
    """Paint `color` (n, 3) over img (n, 3, H, W) with coverage alpha (n, H, W), in place."""
    img += alpha[:, None] * (color.astype(np.float32)[:, :, None, None] - img)


def render(p: SmileyParams, size: int = SMILEY_SIZE) -> np.ndarray:
    """Draw faces from parameters: background, face disc, eyes, mouth; returns (n, 3, H, W) in [0, 1]."""
    n = len(p.label)
    X = np.arange(size, dtype=np.float32)[None, None, :]            # (1, 1, W) pixel centres
    Y = np.arange(size, dtype=np.float32)[None, :, None]            # (1, H, 1)
    img = np.empty((n, 3, size, size), np.float32)
    img[:] = p.background.astype(np.float32)[:, :, None, None]
    _blend(img, p.face_color, _disc_alpha(X, Y, p.face_center[:, 0], p.face_center[:, 1], p.face_radius))
    eyes = [_disc_alpha(X, Y, p.eye_centers[:, e, 0], p.eye_centers[:, e, 1], p.eye_radii[:, e])
            for e in range(p.eye_centers.shape[1])]
    _blend(img, p.eye_color, np.maximum.reduce(eyes))                # eyes never overlap: one layer
    _blend(img, p.mouth_color, _mouth_alpha(X, Y, p))
    return img


def part_masks(meta: dict, size: int = SMILEY_SIZE) -> dict[str, np.ndarray]:
    """Where each part of each face is drawn, from `smileys_batch(meta=True)`: (n, H, W) bool masks "face",
    "eye_left", "eye_right" and "mouth" of the pixels each part covers at all (coverage > 0)."""
    p = SmileyParams(**meta)
    X = np.arange(size, dtype=np.float32)[None, None, :]
    Y = np.arange(size, dtype=np.float32)[None, :, None]
    eyes = [_disc_alpha(X, Y, p.eye_centers[:, e, 0], p.eye_centers[:, e, 1], p.eye_radii[:, e]) > 0 for e in (0, 1)]
    return {"face": _disc_alpha(X, Y, p.face_center[:, 0], p.face_center[:, 1], p.face_radius) > 0,
            "eye_left": eyes[0], "eye_right": eyes[1], "mouth": _mouth_alpha(X, Y, p) > 0}


def _to_signed(img01: np.ndarray) -> np.ndarray:
    """[0, 1] -> [-1, 1] (the diffusion models' pixel range)."""
    return img01 * 2.0 - 1.0


def _render_chunked(indices: np.ndarray, seed: int, varied: bool, edit=None, chunk: int = 1024):
    """Sample parameters and render in chunks (bounded memory); `edit(params, indices)` may corrupt them."""
    images, metas = [], []
    for s in range(0, len(indices), chunk):
        idx = indices[s:s + chunk]
        p = _sample_params(idx, seed, varied)
        if edit is not None:
            p = edit(p, idx)
        images.append(_to_signed(render(p)))
        metas.append(p)
    return np.concatenate(images) if images else np.zeros((0, 3, SMILEY_SIZE, SMILEY_SIZE), np.float32), metas


def _merge_meta(parts: list[SmileyParams]) -> dict:
    """Concatenate the per-chunk parameters into one metadata dict."""
    metas = [p.as_meta() for p in parts]
    if not metas:
        return {}
    return {k: np.concatenate([m[k] for m in metas]) for k in metas[0]}


def smileys_at(indices, seed: int = 0, varied: bool = False, meta: bool = False):
    """Faces number `indices` of the world `seed`: (images (n,3,32,32) float32 in [-1,1], labels[, meta])."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size and indices.min() < 0:
        raise ValueError("smiley indices must be >= 0; pass start >= 0")
    images, parts = _render_chunked(indices, seed, varied)
    labels = np.concatenate([p.label for p in parts]) if parts else np.zeros(0, np.int64)
    out = (torch.from_numpy(images), torch.from_numpy(labels))
    return out + (_merge_meta(parts),) if meta else out


def smileys_batch(n: int, seed: int = 0, start: int = 0, varied: bool = False, meta: bool = False):
    """Faces start..start+n-1: (images (n,3,32,32) float32 in [-1,1], labels (n,) int64[, meta dict])."""
    if n < 0:
        raise ValueError(f"n = {n} images requested; pass n >= 0")
    return smileys_at(np.arange(start, start + n), seed=seed, varied=varied, meta=meta)


# ----------------------------------------------------------------------------------------------
# Corruptions: what a model gets wrong (used by the checker's tests, the metric tests, lessons)
# ----------------------------------------------------------------------------------------------
def _corrupt(kind: str, p: SmileyParams, idx: np.ndarray, seed: int) -> SmileyParams:
    """Edit face parameters: erase one eye, add a forehead eye, or move one eye 3–4 px up or down."""
    u = _uniforms(seed, idx, 3, stream=1)
    which = (u[:, 0] < 0.5).astype(np.int64)                         # the left or the right eye
    rows = np.arange(len(idx))
    if kind == "erase_eye":
        p.eye_radii[rows, which] = 0.0                                   # = painted over with the face colour
    elif kind == "shift_eye":
        shift = _between(u[:, 1], 3.0, 4.0) * np.where(u[:, 2] < 0.5, -1.0, 1.0)
        p.eye_centers[rows, which, 1] += shift
    elif kind == "extra_eye":
        r = p.eye_radii[:, :1]
        third = np.stack([p.face_center[:, 0], p.eye_centers[:, 0, 1] - (2 * r[:, 0] + 1.5)], 1)
        p.eye_centers = np.concatenate([p.eye_centers, third[:, None]], 1)   # (n, 3, 2)
        p.eye_radii = np.concatenate([p.eye_radii, r], 1)                    # (n, 3)
    return p


def _noise_images(indices: np.ndarray, seed: int) -> np.ndarray:
    """Pure noise N(0, 1) clipped to [-1, 1], per image a function of (seed, index) (Box–Muller)."""
    half = 3 * SMILEY_SIZE * SMILEY_SIZE // 2
    u = _uniforms(seed, indices, 2 * half, stream=2)                   # (n, 2 * half)
    radius = np.sqrt(-2.0 * np.log1p(-u[:, :half]))
    angle = 2.0 * np.pi * u[:, half:]
    eps = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)], 1)
    return np.clip(eps, -1, 1).astype(np.float32).reshape(-1, 3, SMILEY_SIZE, SMILEY_SIZE)  # (n, 3, H, W)


def corrupted_smileys(kind: str, n: int, seed: int = 0, start: int = 0, varied: bool = False):
    """The same faces as `smileys_batch` with one defect: erase_eye, extra_eye, shift_eye or noise."""
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {kind!r}; use one of {', '.join(CORRUPTIONS)}")
    indices = np.arange(start, start + n)
    if kind == "noise":
        _, labels = smileys_at(indices, seed=seed, varied=varied)
        return torch.from_numpy(_noise_images(indices, seed)), labels
    images, parts = _render_chunked(indices, seed, varied, edit=lambda p, i: _corrupt(kind, p, i, seed))
    labels = np.concatenate([p.label for p in parts])
    return torch.from_numpy(images), torch.from_numpy(labels)


# ----------------------------------------------------------------------------------------------
# Datasets: smileys, digits, image folders, and the factory the trainer uses
# ----------------------------------------------------------------------------------------------
def _check_index(i: int, n: int) -> int:
    """Python-style index into a dataset of length n (negative counts from the end)."""
    if not -n <= i < n:
        raise IndexError(f"index {i} is out of range for a dataset of {n} items")
    return i % n


class Smileys(Dataset):
    """n faces of the world `seed` as (image (3, 32, 32) in [-1, 1], label); generated on demand."""

    classes = SMILEY_CLASSES
    num_classes = len(SMILEY_CLASSES)
    in_channels = 3
    image_size = SMILEY_SIZE

    def __init__(self, n: int, seed: int = 0, varied: bool = False):
        if n <= 0:
            raise ValueError(f"Smileys needs n >= 1 images; got {n}")
        self.n, self.seed, self.varied = int(n), int(seed), bool(varied)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.__getitems__([i])[0]

    def __getitems__(self, indices):
        """A whole batch in one vectorised call (torch's DataLoader uses this when it exists)."""
        idx = [_check_index(int(i), self.n) for i in indices]
        images, labels = smileys_at(idx, seed=self.seed, varied=self.varied)
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
                 varied: bool = False, flip: bool = True) -> Dataset:
    """"smileys", "digits" or an image folder → a Dataset with `num_classes`, `in_channels`, `image_size` and
    `classes`. (`--data` also takes a latent cache: `data_order.make_source` opens it as a `LatentCache`.)"""
    name = str(name_or_path)
    if name in ("smileys", "smileys-varied"):
        if image_size not in (None, SMILEY_SIZE):
            raise ValueError(f"smileys are {SMILEY_SIZE}×{SMILEY_SIZE}; use image size {SMILEY_SIZE}, not {image_size}")
        return Smileys(n or DEFAULT_SMILEYS, seed=seed, varied=varied or name == "smileys-varied")
    if name == "digits":
        return Digits(image_size or 32)
    path = Path(name).expanduser()
    if is_latent_cache(path):
        raise ValueError(f"{path} is a latent cache, not an image folder; open it with latent_cache.LatentCache")
    if not path.exists():
        raise FileNotFoundError(f"data {name!r} is neither smileys, digits nor an existing folder; "
                                f"pass one of those ({_FOLDER_HINT})")
    return ImageFolder(path, image_size=image_size or 256, flip=flip)
