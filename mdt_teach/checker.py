"""The smileys checker: is there a face, does it have two eyes, and do the two eyes agree?

`two_eyes(images, labels)` (docs/smileys.md, "The checker") runs one funnel per image:
  face found → exactly two eye blobs → the two-eyes verdict (upper, symmetric, same height, mouth below)
  → the pair agrees: same colour class, same size, mirrored about the face's axis, at one height.
`.score` is the two-eyes verdict's pass rate (what the classic world measured); `.pair_score`, the
fraction passing every stage, is the headline score `pair_agreement`. A painter that never looks at the
other eye passes the two-eyes verdict but not the pair stage (tests/test_checker.py).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from .smileys import EYE_COLORS, SMILEY_CLASSES

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
# The pair stage (the relational world's eyes differ by more than these from face to face; docs/smileys.md):
PAIR_TOL_PX = 1.0        # mirror and level tolerance of the eye pair, px (eye offsets range over ~4 px)
SIZE_TOL = 0.35          # eye radii √(Σ coverage / π) of one pair differ by at most this, px (radii 1.4–2.8)
PAIR_TESTS = ("same_colour", "same_size", "mirrored", "level")
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
    label: np.ndarray    # its component id in the label image (0 = none)
    area: np.ndarray
    x: np.ndarray        # centroid
    y: np.ndarray
    var_x: np.ndarray
    var_y: np.ndarray
    curvature: np.ndarray  # c in y ≈ a + c (x - x̄)^2 (least squares, the curve is symmetric)


def _blob_moments(mask: np.ndarray) -> tuple[_Blobs, np.ndarray]:
    """8-connected components of a (N, H, W) mask, their moments (blobs of < MIN_BLOB px dropped) and the
    label image (N, H, W) of component ids."""
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
    ids = np.arange(1, count + 1)
    blobs = _Blobs(image[keep], ids[keep], area[keep], mx[keep], my[keep], var_x[keep], var_y[keep], curvature[keep])
    return blobs, labels


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
    same_colour: np.ndarray    # (N,) bool: both eyes' colours nearest the same EYE_COLORS entry   } the pair
    same_size: np.ndarray      # (N,) bool: |r_left − r_right| <= SIZE_TOL                        } stage:
    mirrored: np.ndarray       # (N,) bool: |(x_r − cx) − (cx − x_l)| <= PAIR_TOL_PX              } each on
    level: np.ndarray          # (N,) bool: |y_l − y_r| <= PAIR_TOL_PX                            } two eyes
    pair_agrees: np.ndarray    # (N,) bool: passed and all four pair tests
    face_center: np.ndarray    # (N, 2) x, y (nan when no face)
    face_radius: np.ndarray    # (N,)
    eye_centers: np.ndarray    # (N, 2, 2) left, right eye blob centroids x, y (nan unless exactly two eyes)
    eyes: "EyeMeasures"        # the pair stage's coverage-weighted measures of the left and right eye
    mouth_center: np.ndarray   # (N, 2) (nan when no mouth)

    def __len__(self) -> int:
        return len(self.passed)

    @property
    def score(self) -> float:
        """The two-eyes score: the fraction of images that pass (expression not required)."""
        return float(self.passed.mean()) if len(self) else 0.0

    @property
    def pair_score(self) -> float:
        """`pair_agreement`, the headline score: the fraction of images whose two eyes also agree."""
        return float(self.pair_agrees.mean()) if len(self) else 0.0

    @property
    def funnel(self) -> dict:
        """Fractions at each stage: face found → exactly two eye blobs → two-eyes verdict → the pair agrees."""
        two = self.face_found & (self.eye_count == 2)
        return {"face_found": float(self.face_found.mean()), "two_eyes": float(two.mean()),
                "passed": self.score, "pair_agreement": self.pair_score}

    @property
    def pair_tests(self) -> dict:
        """Each pair test's pass rate among the images with exactly two eyes (which test fails most?)."""
        two = self.face_found & (self.eye_count == 2)
        return {name: float(getattr(self, name)[two].mean()) if two.any() else 0.0 for name in PAIR_TESTS}

    @property
    def expression_accuracy(self) -> float | None:
        """Fraction of images whose mouth shape matches the label (None when no labels were given)."""
        return None if self.expression_ok is None else float(self.expression_ok.mean())

    def summary(self) -> str:
        """One line: the headline score, the funnel and the expression accuracy."""
        f = self.funnel
        text = (f"pair agreement {self.pair_score:.1%} (face {f['face_found']:.1%} → two eyes "
                f"{f['two_eyes']:.1%} → two-eyes verdict {f['passed']:.1%} → pair {f['pair_agreement']:.1%})")
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
    return _Blobs(np.append(blobs.image, -1), np.append(blobs.label, 0), *(np.concatenate([getattr(blobs, f), nan])
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
    blobs, blob_ids = _blob_moments(dark)
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
    passed = eyes_upper & symmetric & same_height & mouth_below
    eyes = measure_eyes(x, lum, median, face, blob_ids, np.stack([blobs.label[left], blobs.label[right]], 1))
    pair = agreement_tests(eyes, cx, two)
    return TwoEyesResult(**pair, pair_agrees=passed & np.logical_and.reduce(list(pair.values())), eyes=eyes,
        face_found=face_found, eye_count=eye_count, eyes_upper=eyes_upper, symmetric=symmetric,
        same_height=same_height, mouth_below=mouth_below, expression=expression,
        expression_ok=expression_ok, passed=passed,
        face_center=np.where(face_found[:, None], np.stack([cx, cy], 1), np.nan),
        face_radius=np.where(face_found, radius, np.nan), eye_centers=eye_xy,
        mouth_center=np.where(has_mouth[:, None], np.stack([blobs.x[mouth], blobs.y[mouth]], 1), np.nan))


# ----------------------------------------------------------------------------------------------
# The pair stage: measure each eye by its coverage, then compare the two
# ----------------------------------------------------------------------------------------------
@dataclass
class EyeMeasures:
    """Coverage-weighted measures of the left (0) and right (1) eye of each image (nan without two eyes)."""

    center: np.ndarray         # (N, 2, 2) x, y: Σ α·p / Σ α
    radius: np.ndarray         # (N, 2) √(Σ α / π): the disc of the same covered area
    color: np.ndarray          # (N, 2, 3) the eye's own colour, unmixed from the skin
    colour_class: np.ndarray   # (N, 2) index of the nearest EYE_COLORS entry (-1 without an eye)


def measure_eyes(x: np.ndarray, lum: np.ndarray, median: np.ndarray, face: np.ndarray, blob_ids: np.ndarray,
                 eye_ids: np.ndarray) -> EyeMeasures:
    """Measure eyes by coverage α = (L_skin − L) / (L_skin − L_core) over the eye blob grown by one pixel.

    A rendered pixel is α·eye + (1 − α)·skin, so α read from luminance is the disc's coverage whatever the
    eye's colour: the threshold that finds a blob loses a light eye's rim, coverage does not. L_skin is the
    face's median luminance, L_core the blob's darkest pixel. The colour is unmixed, skin + (pixel − skin)/α,
    over the pixels with α >= 0.5. x: (N, 3, H, W), lum: (N, H, W), eye_ids: (N, 2) component ids (0 = none)."""
    n, _, h, w = x.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)                        # no face: all-nan skin
        skin_rgb = np.nanmedian(np.where((face & (lum >= (median - DARK_DROP)[:, None, None]))[:, None], x, np.nan)
                                .reshape(n, 3, -1), axis=2)                     # (N, 3)
    grow = np.zeros((3, 3, 3), bool)
    grow[1] = _EIGHT                                                           # dilate within each image only
    out = {"center": np.full((n, 2, 2), np.nan), "radius": np.full((n, 2), np.nan),
           "color": np.full((n, 2, 3), np.nan)}
    for e in range(2):
        ids = eye_ids[:, e]
        blob = (blob_ids == ids[:, None, None]) & (ids[:, None, None] > 0)     # (N, H, W)
        has = blob.any((1, 2))
        core = np.where(blob, lum, np.inf).min((1, 2))                         # (N,)
        region = ndimage.binary_dilation(blob, structure=grow) & face
        with np.errstate(invalid="ignore", divide="ignore"):
            drop = (median - core)[:, None, None]
            alpha = np.where(region, np.clip((median[:, None, None] - lum) / drop, 0.0, 1.0), 0.0)  # (N, H, W)
            mass = alpha.sum((1, 2))
            center = np.stack([(alpha * xx).sum((1, 2)) / mass, (alpha * yy).sum((1, 2)) / mass], 1)
            strong = (alpha >= 0.5)[:, None]                                   # (N, 1, H, W)
            unmixed = skin_rgb[:, :, None, None] + (x - skin_rgb[:, :, None, None]) / np.maximum(alpha, 0.5)[:, None]
            color = (unmixed * strong).sum((2, 3)) / strong.sum((2, 3))        # (N, 3)
        out["center"][has, e] = center[has]
        out["radius"][has, e] = np.sqrt(mass[has] / np.pi)
        out["color"][has, e] = np.clip(color[has], 0.0, 1.0)
    distance = ((out["color"][:, :, None, :] - EYE_COLORS) ** 2).sum(-1)         # (N, 2, K)
    colour_class = np.where(np.isnan(distance).any(-1), -1, np.nan_to_num(distance, nan=np.inf).argmin(-1))
    return EyeMeasures(colour_class=colour_class, **out)


def agreement_tests(eyes: EyeMeasures, cx: np.ndarray, two: np.ndarray) -> dict:
    """(N,) bools of the four agreement tests (PAIR_TESTS) of the left and right eye, about the face's axis cx."""
    (xl, yl), (xr, yr) = eyes.center[:, 0].T, eyes.center[:, 1].T
    with np.errstate(invalid="ignore"):
        return {"same_colour": two & (eyes.colour_class[:, 0] == eyes.colour_class[:, 1]) & (eyes.colour_class[:, 0] >= 0),
                "same_size": two & (np.abs(eyes.radius[:, 0] - eyes.radius[:, 1]) <= SIZE_TOL),
                "mirrored": two & (np.abs((xr - cx) - (cx - xl)) <= PAIR_TOL_PX),
                "level": two & (np.abs(yl - yr) <= PAIR_TOL_PX)}


def _as_numpy_labels(labels, n: int) -> np.ndarray:
    """Labels (N,) as an int numpy array, checked against the number of images."""
    y = labels.detach().cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"two_eyes got {n} images but labels of shape {y.shape}; pass one label per image")
    return y.astype(np.int64)
