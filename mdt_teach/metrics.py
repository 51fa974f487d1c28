"""Metrics of the smileys world: the two-eyes checker, the Fréchet distance and FD-smileys.

* `two_eyes(images, labels)` checks the structure every real smiley has (docs/smileys.md, "The two-eyes checker"):
  one face, exactly two eyes, mirror-symmetric and at the same height, a mouth below them. Its
  `.score` is the **two-eyes score**: the fraction of images that pass.
* `fd_smileys(a, b)` is the Fréchet distance between two image sets in the feature space of a small
  CNN trained on smileys + digits (`data/feature_net.pt`, made by `tools/train_feature_net.py`).
  It is a toy-world metric: its numbers are NOT comparable to FID.
* `frechet_distance` is the distance itself, shared with the standard Inception FID of `fid.py`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from .checkpoint import read_torch_file
from .data import SMILEY_CLASSES, smileys_batch
from .resources import data_file

# ----------------------------------------------------------------------------------------------
# The two-eyes checker
# ----------------------------------------------------------------------------------------------
FG_THRESHOLD = 0.12      # face pixels differ from the background by more than this (any channel)
DARK_DROP = 0.30         # eye/mouth pixels are this much darker than the face's median luminance
# The face component must look like a face (docs/smileys.md: skin-coloured discs of radius 10–13 px):
FACE_RADIUS = (8 / 32, 16 / 32)  # √(area/π) as a fraction of the image side: 8–16 px at 32 (noise: 18)
BOX_FILL = (0.60, 0.90)  # area / bounding-box area: π/4 ≈ 0.785 for a disc, 1 for a square or for noise
MIN_DISC_IOU = 0.75      # IoU with the equal-area disc at the centroid: 1 for a disc, 0.64 for a 2:1 ellipse
FACE_COLORS = ((0.85, 1.00), (0.58, 0.90), (0.20, 0.50))  # R, G, B ranges of the face colour (both worlds)
COLOR_TOL = 0.10         # the skin's mean colour may lie this far outside FACE_COLORS (noise: ≈ 0.5 grey)
MIN_BLOB = 3             # dark blobs smaller than this are specks, not eyes
TOL_PX = 1.5             # symmetry / same-height / mouth-gap tolerance in pixels (the shift test is 3 px)
_FOUR = ndimage.generate_binary_structure(2, 1)
_EIGHT = ndimage.generate_binary_structure(2, 2)


def _as_unit_images(images) -> np.ndarray:
    """Accept (N, 3, H, W) or (3, H, W) tensors/arrays in [-1, 1]; return float32 numpy in [0, 1]."""
    x = images.detach().float().cpu().numpy() if torch.is_tensor(images) else np.asarray(images, np.float32)
    x = x[None] if x.ndim == 3 else x
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"two_eyes needs RGB images shaped (N, 3, H, W) in [-1, 1]; got shape {tuple(x.shape)}")
    return np.clip((x + 1.0) / 2.0, 0.0, 1.0)


def unit_images_and_luminance(images) -> tuple[np.ndarray, np.ndarray]:
    """Images in [-1, 1] → ((N, 3, H, W) in [0, 1], luminance (N, H, W)): what the checker looks at."""
    x = _as_unit_images(images)
    return x, np.tensordot(np.array([0.299, 0.587, 0.114], np.float32), x, axes=([0], [1]))


def _label_batch(mask: np.ndarray, structure: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components of every image of a (N, H, W) mask at once (never across images)."""
    stacked = np.zeros((3, 3, 3), bool)
    stacked[1] = structure                       # no connection along the batch axis
    return ndimage.label(mask, structure=stacked)


def _last_per_group(group: np.ndarray, key: np.ndarray, n: int) -> np.ndarray:
    """For each group 0..n-1, the index of the item with the largest key (-1 for an empty group)."""
    order = np.lexsort((key, group))
    best = np.full(n, -1)
    best[group[order]] = order                   # later (larger key) writes win
    return best


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """Per image, the largest 4-connected component of the mask, with its holes filled."""
    labels, count = _label_batch(mask, _FOUR)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    image_of = np.zeros(count + 1, np.int64)
    image_of[labels.ravel()] = np.repeat(np.arange(len(mask)), mask[0].size)
    best = _last_per_group(image_of[1:], sizes[1:], len(mask)) + 1   # label id per image (0 = none)
    face = (labels == best[:, None, None]) & (best[:, None, None] > 0)
    return _fill_holes(face)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the background regions that do not touch the image border."""
    outside, _ = _label_batch(~mask, _FOUR)
    border = np.zeros_like(mask)
    border[:, [0, -1], :] = True
    border[:, :, [0, -1]] = True
    touching = np.unique(outside[border & ~mask])
    return mask | ~np.isin(outside, touching)


@dataclass
class _Blobs:
    """Moments of the dark blobs of a batch: one entry per blob."""

    image: np.ndarray    # which image the blob is in
    area: np.ndarray
    x: np.ndarray        # centroid
    y: np.ndarray
    var_x: np.ndarray
    var_y: np.ndarray
    curvature: np.ndarray  # c in y ≈ a + c (x - x̄)^2 (least squares, the curve is symmetric)


def _blob_moments(mask: np.ndarray) -> _Blobs:
    """8-connected components of a (N, H, W) mask and their moments, blobs of < MIN_BLOB px dropped."""
    labels, count = _label_batch(mask, _EIGHT)
    b, ys, xs = np.nonzero(labels)
    lab = labels[b, ys, xs] - 1
    sums = lambda w: np.bincount(lab, weights=w, minlength=count)  # noqa: E731
    area = sums(None)
    area_safe = np.maximum(area, 1)
    mx, my = sums(xs) / area_safe, sums(ys) / area_safe
    dx, dy = xs - mx[lab], ys - my[lab]                            # (P,) centred pixel coordinates
    var_x, var_y = sums(dx * dx) / area_safe, sums(dy * dy) / area_safe
    q = dx * dx - var_x[lab]                                       # centred x̃², regressor of the curve
    curvature = sums(q * dy) / np.maximum(sums(q * q), 1e-6)
    image = np.zeros(count, np.int64)
    image[lab] = b
    keep = area >= MIN_BLOB
    return _Blobs(image[keep], area[keep], mx[keep], my[keep], var_x[keep], var_y[keep], curvature[keep])


def classify_mouth(var_x, var_y, curvature) -> np.ndarray:
    """Expression from the mouth blob's shape: round → surprised; else the parabola's sagitta sign."""
    sagitta = -curvature * 3.0 * var_x                  # half width² ≈ 3 var_x for a uniform stroke
    round_ = np.sqrt(var_x) < 1.5 * np.sqrt(var_y)
    expression = np.where(sagitta > 0.8, 0, np.where(sagitta < -0.8, 1, 3))
    return np.where(round_, SMILEY_CLASSES.index("surprised"), expression)


@dataclass
class TwoEyesResult:
    """Per-image flags of `two_eyes` plus the summary `.score` and `.funnel`."""

    face_found: np.ndarray     # (N,) bool: a round, face-coloured foreground component of face size
    eye_count: np.ndarray      # (N,) int: dark blobs other than the mouth (lowest blob)
    eyes_upper: np.ndarray     # (N,) bool: both eyes above cy + 0.15 R
    symmetric: np.ndarray      # (N,) bool: eye midpoint on the face axis, eye areas within 2x
    same_height: np.ndarray    # (N,) bool: |Δy| of the eyes <= 1.5 px
    mouth_below: np.ndarray    # (N,) bool: mouth > 1.5 px below the lower eye, under their midpoint
    expression: np.ndarray     # (N,) int: mouth shape read as a SMILEY_CLASSES index (-1: no mouth)
    expression_ok: np.ndarray | None  # (N,) bool: expression == label (None without labels)
    passed: np.ndarray         # (N,) bool: face, exactly two eyes, upper, symmetric, same height, mouth below
    face_center: np.ndarray    # (N, 2) x, y (nan when no face)
    face_radius: np.ndarray    # (N,)
    eye_centers: np.ndarray    # (N, 2, 2) left, right eye x, y (nan unless exactly two eyes)
    mouth_center: np.ndarray   # (N, 2) (nan when no mouth)

    def __len__(self) -> int:
        return len(self.passed)

    @property
    def score(self) -> float:
        """The two-eyes score: the fraction of images that pass (expression not required)."""
        return float(self.passed.mean()) if len(self) else 0.0

    @property
    def funnel(self) -> dict:
        """Fractions at each stage: face found → exactly two eye blobs → pass (moves before the score)."""
        two = self.face_found & (self.eye_count == 2)
        return {"face_found": float(self.face_found.mean()), "two_eyes": float(two.mean()),
                "passed": self.score}

    @property
    def expression_accuracy(self) -> float | None:
        """Fraction of images whose mouth shape matches the label (None when no labels were given)."""
        return None if self.expression_ok is None else float(self.expression_ok.mean())

    def summary(self) -> str:
        """One line: score, funnel and expression accuracy."""
        f = self.funnel
        text = (f"two-eyes {self.score:.1%} (face {f['face_found']:.1%} → two eyes "
                f"{f['two_eyes']:.1%} → pass {f['passed']:.1%})")
        acc = self.expression_accuracy
        return text if acc is None else text + f" · expression {acc:.1%}"


def _per_image_blobs(blobs: _Blobs, n: int) -> np.ndarray:
    """(N, K) table of blob indices per image, sorted top to bottom, -1 where empty."""
    order = np.lexsort((blobs.y, blobs.image))
    counts = np.bincount(blobs.image, minlength=n)
    table = np.full((n, max(int(counts.max(initial=0)), 2)), -1)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(order)) - first[blobs.image[order]]
    table[blobs.image[order], rank] = order
    return table


def _face_geometry(face: np.ndarray):
    """Area, centroid (x, y) and equivalent radius of each face mask."""
    area = face.sum((1, 2)).astype(np.float64)
    ys, xs = np.arange(face.shape[1]), np.arange(face.shape[2])
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (face.sum(1) * xs).sum(1) / area
        cy = (face.sum(2) * ys).sum(1) / area
    return area, cx, cy, np.sqrt(area / np.pi)


def _face_checks(x: np.ndarray, lum: np.ndarray, median: np.ndarray, face: np.ndarray, area: np.ndarray,
                 cx: np.ndarray, cy: np.ndarray, radius: np.ndarray) -> dict:
    """Does each image's face mask look like a face? (N,) bools "size", "round", "color" and the measures behind them.

    On noise the largest foreground component is nearly the whole image: too large, filling its
    bounding box, grey on average. A face-coloured square fills its box; a grey disc has the wrong colour."""
    _, _, h, w = x.shape
    side = np.sqrt(h * w)
    size = (radius >= FACE_RADIUS[0] * side) & (radius <= FACE_RADIUS[1] * side)
    box = face.any(2).sum(1) * face.any(1).sum(1)          # a 4-connected component's rows/columns are contiguous
    dx2 = (np.arange(w) - cx[:, None]) ** 2                 # (N, W) (nan without a face)
    dy2 = (np.arange(h) - cy[:, None]) ** 2                 # (N, H)
    with np.errstate(invalid="ignore", divide="ignore"):
        disc = dy2[:, :, None] + dx2[:, None, :] <= (area / np.pi)[:, None, None]  # (N, H, W) equal-area disc
        disc_iou = (face & disc).sum((1, 2)) / (face | disc).sum((1, 2))
        fill = area / box
        skin = face & (lum >= (median - DARK_DROP)[:, None, None])          # the face minus eyes and mouth
        color = np.einsum("nchw,nhw->nc", x, skin.astype(x.dtype)) / skin.sum((1, 2))[:, None]  # (N, 3)
        round_ = (fill >= BOX_FILL[0]) & (fill <= BOX_FILL[1]) & (disc_iou >= MIN_DISC_IOU)
        lo, hi = np.array(FACE_COLORS).T
        color_ok = ((color >= lo - COLOR_TOL) & (color <= hi + COLOR_TOL)).all(1)
    return {"size": size, "round": round_, "color": color_ok, "fill": fill, "disc_iou": disc_iou, "skin_color": color}


def _with_sentinel(blobs: _Blobs) -> _Blobs:
    """Append one all-nan blob, so index -1 ("no such blob") reads nan and fails every test."""
    nan = np.array([np.nan])
    return _Blobs(np.append(blobs.image, -1), *(np.concatenate([getattr(blobs, f), nan])
                                                for f in ("area", "x", "y", "var_x", "var_y", "curvature")))


def _face_luminance_median(lum: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Median luminance of each image's face pixels (nan when there is no face)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)             # all-nan rows: no face
        return np.nanmedian(np.where(face, lum, np.nan).reshape(len(lum), -1), axis=1)


def two_eyes(images, labels=None) -> TwoEyesResult:
    """Check each image for one face with exactly two symmetric eyes at one height and a mouth below."""
    x, lum = unit_images_and_luminance(images)                       # (N, 3, H, W) in [0, 1], (N, H, W)
    n = len(x)
    border = np.concatenate([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], axis=2)
    background = np.median(border, axis=2)                           # (N, 3)
    fg = np.abs(x - background[:, :, None, None]).max(1) > FG_THRESHOLD  # (N, H, W)
    face = _largest_component(fg)
    area, cx, cy, radius = _face_geometry(face)
    median = _face_luminance_median(lum, face)
    checks = _face_checks(x, lum, median, face, area, cx, cy, radius)
    face_found = checks["size"] & checks["round"] & checks["color"]
    dark = face & face_found[:, None, None] & (lum < (median - DARK_DROP)[:, None, None])
    blobs = _blob_moments(dark)
    table = _per_image_blobs(blobs, n)                               # (N, K) top to bottom, -1 empty
    blobs = _with_sentinel(blobs)
    k = (table >= 0).sum(1)
    rows = np.arange(n)
    mouth = np.where(k > 0, table[rows, np.maximum(k - 1, 0)], -1)  # the lowest blob is the mouth
    eye_count = np.where(face_found, np.maximum(k - 1, 0), 0)
    two = face_found & (eye_count == 2)
    e0, e1 = np.where(two, table[:, 0], -1), np.where(two, table[:, 1], -1)
    swap = blobs.x[e0] > blobs.x[e1]
    left, right = np.where(swap, e1, e0), np.where(swap, e0, e1)
    mid_x = (blobs.x[left] + blobs.x[right]) / 2
    lower_eye_y = np.maximum(blobs.y[left], blobs.y[right])
    area_ratio = np.maximum(blobs.area[left], blobs.area[right]) / np.minimum(blobs.area[left], blobs.area[right])
    with np.errstate(invalid="ignore"):
        eyes_upper = two & (lower_eye_y < cy + 0.15 * radius)
        symmetric = two & (np.abs(mid_x - cx) <= TOL_PX) & (area_ratio <= 2.0)
        same_height = two & (np.abs(blobs.y[left] - blobs.y[right]) <= TOL_PX)
        mouth_below = two & (blobs.y[mouth] - lower_eye_y > TOL_PX) & (
            np.abs(blobs.x[mouth] - mid_x) <= 0.35 * radius)
    has_mouth = face_found & (mouth >= 0)
    expression = np.where(has_mouth, classify_mouth(blobs.var_x[mouth], blobs.var_y[mouth],
                                                    blobs.curvature[mouth]), -1)
    expression_ok = None if labels is None else expression == _as_numpy_labels(labels, n)
    eye_xy = np.stack([np.stack([blobs.x[left], blobs.y[left]], 1),
                       np.stack([blobs.x[right], blobs.y[right]], 1)], 1)   # (N, 2, 2)
    return TwoEyesResult(
        face_found=face_found, eye_count=eye_count, eyes_upper=eyes_upper, symmetric=symmetric,
        same_height=same_height, mouth_below=mouth_below, expression=expression,
        expression_ok=expression_ok, passed=eyes_upper & symmetric & same_height & mouth_below,
        face_center=np.where(face_found[:, None], np.stack([cx, cy], 1), np.nan),
        face_radius=np.where(face_found, radius, np.nan), eye_centers=eye_xy,
        mouth_center=np.where(has_mouth[:, None], np.stack([blobs.x[mouth], blobs.y[mouth]], 1), np.nan))


def _as_numpy_labels(labels, n: int) -> np.ndarray:
    """Labels (N,) as an int numpy array, checked against the number of images."""
    y = labels.detach().cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"two_eyes got {n} images but labels of shape {y.shape}; pass one label per image")
    return y.astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Fréchet distance (FID's formula) with a safe matrix square root
# ----------------------------------------------------------------------------------------------
def _sqrt_psd(sigma: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigen-decomposition."""
    eigval, eigvec = np.linalg.eigh((sigma + sigma.T) / 2)
    return (eigvec * np.sqrt(np.clip(eigval, 0, None))) @ eigvec.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½) between two Gaussians (FID, Heusel et al. 2017).

    tr (Σ1 Σ2)^½ = tr (Σ1^½ Σ2 Σ1^½)^½, and the inner matrix is symmetric PSD: its eigenvalues are
    real and ≥ 0 up to rounding, so no complex parts or near-singular sqrtm ever appear."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"frechet_distance needs means (D,) and covariances (D, D) of one D; got "
                         f"{mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}")
    root1 = _sqrt_psd(sigma1)
    inner = root1 @ sigma2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows = samples) of a feature matrix (N, D), N >= 2."""
    f = features.detach().double().cpu().numpy() if torch.is_tensor(features) else np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need a feature matrix (N >= 2, D); got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


# ----------------------------------------------------------------------------------------------
# The feature net and FD-smileys
# ----------------------------------------------------------------------------------------------
FEATURE_NET_FILE = "feature_net.pt"


class FeatureNet(nn.Module):
    """Small CNN for 32×32 RGB in [-1, 1]: conv trunk → `feature_dim` features → class logits."""

    def __init__(self, num_classes: int = 14, width: int = 16, feature_dim: int = 128):
        super().__init__()
        layers, c_in = [], 3
        for c_out, stride in ((width, 1), (2 * width, 2), (4 * width, 2), (8 * width, 2)):  # 32 → 16 → 8 → 4
            layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
        self.trunk = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (B, 8 width)
        self.embed = nn.Linear(c_in, feature_dim)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(feature_dim, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer (B, feature_dim): the space FD-smileys measures distances in."""
        return self.embed(self.trunk(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


_NETS: dict = {}


def load_feature_net(path=None) -> FeatureNet:
    """The committed feature net (data/feature_net.pt, from tools/train_feature_net.py), eval mode, cached."""
    path = str(path or data_file(FEATURE_NET_FILE))
    if path not in _NETS:
        blob = read_torch_file(path)
        net = FeatureNet(**blob["config"])
        net.load_state_dict(blob["state_dict"])
        _NETS[path] = net.eval().requires_grad_(False)
    return _NETS[path]


@torch.no_grad()
def smiley_features(images, net: FeatureNet | None = None, batch_size: int = 500) -> np.ndarray:
    """Feature-net features (N, D) of images (N, 3, 32, 32) in [-1, 1] (float64 numpy)."""
    net = load_feature_net() if net is None else net
    x = torch.as_tensor(images).float().cpu()
    if x.ndim != 4 or tuple(x.shape[1:]) != (3, 32, 32):
        raise ValueError(f"FD-smileys needs images shaped (N, 3, 32, 32) in [-1, 1]; got {tuple(x.shape)}")
    return torch.cat([net.features(x[s:s + batch_size]) for s in range(0, len(x), batch_size)]).double().numpy()


def fd_smileys(images_a, images_b, net: FeatureNet | None = None) -> float:
    """FD-smileys: Fréchet distance of two image sets in the feature net's space (NOT comparable to FID).

    Either argument may be a precomputed (mu, sigma) pair instead of images. Like FID it is biased
    upwards for small sets: compare numbers computed with the same number of images."""
    def stats(obj):
        return obj if isinstance(obj, tuple) else gaussian_stats(smiley_features(obj, net))
    return frechet_distance(*stats(images_a), *stats(images_b))


# ----------------------------------------------------------------------------------------------
# The reference faces and the scores the trainer, `mdt-teach eval` and the race log
# ----------------------------------------------------------------------------------------------
REFERENCE_SEED = 1_000_003   # the smileys world of the FD reference faces (no training run uses it)
_REFERENCE_STATS: dict = {}


def reference_stats(n: int):
    """(mu, sigma) of n real faces from a world the training never sees (cached; FD needs equal counts)."""
    if n not in _REFERENCE_STATS:
        _REFERENCE_STATS[n] = gaussian_stats(smiley_features(smileys_batch(n, seed=REFERENCE_SEED)[0]))
    return _REFERENCE_STATS[n]


def score_smileys(images, labels=None) -> dict:
    """two_eyes (fraction passing), its funnel, expression accuracy and FD-smileys against as many real faces."""
    images = torch.as_tensor(images).clamp(-1, 1)
    result = two_eyes(images, labels)
    funnel = {f"funnel_{k}": float(v) for k, v in result.funnel.items()}
    extra = {} if result.expression_accuracy is None else {"expression": result.expression_accuracy}
    try:
        fd = float(fd_smileys(images, reference_stats(len(images))))
    except FileNotFoundError as err:  # the feature net is a committed artefact; say so, keep the score
        warnings.warn(f"FD-smileys skipped: {err}", stacklevel=2)
        fd = None
    return {"two_eyes": float(result.score), **funnel, **extra, "fd_smileys": fd}
