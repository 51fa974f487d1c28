"""The smileys toy world (docs/smileys.md): 32×32 RGB faces on a light background, class = expression.

Every face has exactly two eyes and a mouth below them. In the default world, `smileys`, the two eyes of a
face share a colour (one of five), a size, a spacing and a height, drawn afresh for every face from ranges
far wider than the checker's tolerance and independently of everything else about the face: the only
thing that tells where and how the second eye goes is the first eye. That is the relation MDT's masked
pass is meant to teach (arXiv 2303.14389, §1: the dog's second eye).

Worlds, by name (the name is what `--data` takes and what runs record):
  * `smileys` — the relational world (version 2), plain nuisance: fixed background, one skin tone;
  * `smileys-varied` — the same eyes with wide nuisance (background tint, skin tone, face size, position);
  * `smileys-classic` — the world before version 2: black eyes at nearly fixed places. Kept so that the
    committed classic-world results (the three-seed race) and the reason the world changed can be
    reproduced; a painter that never looks at the other eye passes its checker 85–100% of the time.

Image i depends only on (world, seed, i): each image's random numbers come from a counter-based hash
keyed on (seed, stream, index, field), so a batch can be generated in any order or size.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .seeds import GOLDEN, splitmix64

SMILEY_CLASSES = ("smile", "frown", "surprised", "neutral")
SMILEY_SIZE = 32
WORLD_VERSIONS = {"smileys": 2, "smileys-varied": 2, "smileys-classic": 1}
WORLDS = tuple(WORLD_VERSIONS)
DEFAULT_WORLD = "smileys"
CORRUPTIONS = ("erase_eye", "extra_eye", "shift_eye", "recolour_eye", "resize_eye", "noise")

# The relational world's eyes (pixels, relative to the face centre; docs/smileys.md, "The eyes").
EYE_COLORS = np.array([[0.05, 0.05, 0.05],    # black
                       [0.05, 0.12, 0.62],    # blue
                       [0.02, 0.36, 0.04],    # green
                       [0.42, 0.02, 0.48],    # purple
                       [0.40, 0.18, 0.00]])   # brown: luminance 0.05–0.23 (skin ≥ 0.62), ≥ 0.31 apart in RGB
EYE_RADIUS = (1.4, 2.8)
EYE_GAP_X = (1.0, 3.5)      # eye centre x = ± (radius + gap): half the gap between the two eyes' rims
EYE_GAP_Y = (0.3, 3.0)      # eye centre y = − (radius + gap): the eye's lowest point is this far above cy
EYE_ROOM = 9.5              # eye centre distance + radius ≤ this: 1.5 px of skin inside the smallest face

_EYE_STREAM = 3             # the eyes' own random numbers: independent of every other field by construction
_EYE_TRIES = 8              # candidate eye draws per face; the first that fits in the face is kept


def world_version(world: str) -> str:
    """'smileys@2': what runs, checkpoints and race records store, so a resume can refuse another world."""
    return f"{check_world(world)}@{WORLD_VERSIONS[world]}"


def check_world(world: str) -> str:
    """The world's name, or one sentence naming the valid ones."""
    if world not in WORLD_VERSIONS:
        raise ValueError(f"unknown smileys world {world!r}; use one of {', '.join(WORLDS)}")
    return world


# ----------------------------------------------------------------------------------------------
# Counter-based random numbers: uniform(seed, index, field), vectorised
# ----------------------------------------------------------------------------------------------
def uniforms(seed: int, indices: np.ndarray, num_fields: int, stream: int = 0) -> np.ndarray:
    """U[0, 1) numbers of shape (n, num_fields), a pure function of (seed, stream, index, field)."""
    key = splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) ^ np.uint64(stream))
    per_image = splitmix64(key ^ (np.asarray(indices).astype(np.uint64) * np.uint64(0xD1B54A32D192ED03)))
    fields = np.arange(num_fields, dtype=np.uint64) * GOLDEN
    bits = splitmix64(per_image[:, None] + fields[None, :])          # (n, F)
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def between(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map U[0, 1) numbers to U[lo, hi)."""
    return lo + (hi - lo) * u


# ----------------------------------------------------------------------------------------------
# Scene parameters: one row per image, every eye attribute per eye
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
    eye_color: np.ndarray      # (n, E, 3)
    mouth_center: np.ndarray   # (n, 2) x, y of the mouth's middle
    mouth_half_width: np.ndarray  # (n,) half width of the curve (smile, frown, neutral)
    mouth_depth: np.ndarray    # (n,) signed sagitta: > 0 smile (middle lower), < 0 frown, 0 neutral
    mouth_ring: np.ndarray     # (n, 2) ring radii (rx, ry) of the surprised "o"; 0 for other mouths
    mouth_color: np.ndarray    # (n, 3)

    def as_meta(self) -> dict:
        """Per-image metadata as a dict of numpy arrays (what `smileys_batch(meta=True)` returns)."""
        return {name: np.copy(value) for name, value in self.__dict__.items()}


def _face_and_mouth(u: np.ndarray, varied: bool) -> dict:
    """Everything but the eyes, from the stream-0 fields (the classic world's draws, unchanged)."""
    n = len(u)
    label = np.minimum((u[:, 0] * len(SMILEY_CLASSES)).astype(np.int64), len(SMILEY_CLASSES) - 1)
    if varied:
        grey = between(u[:, 1], 0.80, 0.95)[:, None]
        background = np.clip(grey + between(u[:, 2:5], -0.05, 0.05), 0, 1)
        face_color = np.stack([between(u[:, 5], 0.85, 1.0), between(u[:, 6], 0.58, 0.90),
                               between(u[:, 7], 0.20, 0.50)], axis=1)
        radius = between(u[:, 8], 10.0, 13.0)
        center = 15.5 + between(u[:, 9:11], -2.0, 2.0)
        mouth_jitter = 0.08
    else:
        background = np.full((n, 3), 0.88)
        face_color = np.array([0.93, 0.68, 0.40]) + between(u[:, 5:8], -0.03, 0.03)
        radius = between(u[:, 8], 11.0, 12.0)
        center = 15.5 + between(u[:, 9:11], -1.0, 1.0)
        mouth_jitter = 0.03
    cx, cy = center[:, 0], center[:, 1]
    mouth_color = np.array([0.50, 0.08, 0.10]) + between(u[:, 15:18], -mouth_jitter, mouth_jitter)
    surprised = label == SMILEY_CLASSES.index("surprised")
    sign = np.select([label == 0, label == 1], [1.0, -1.0], 0.0)
    line_y = cy + radius * between(u[:, 18], 0.38, 0.50)
    ring_y = cy + radius * between(u[:, 18], 0.45, 0.52)
    ring_ry = radius * between(u[:, 19], 0.15, 0.20)
    ring = np.stack([ring_ry * between(u[:, 20], 0.8, 1.0), ring_ry], 1) * surprised[:, None]
    return dict(
        label=label, background=background, face_color=face_color, face_center=center, face_radius=radius,
        mouth_center=np.stack([cx, np.where(surprised, ring_y, line_y)], 1),
        mouth_half_width=np.where(surprised, 0.0, radius * between(u[:, 21], 0.35, 0.48)),
        mouth_depth=sign * radius * between(u[:, 22], 0.18, 0.28), mouth_ring=ring,
        mouth_color=np.clip(mouth_color, 0, 1))


def classic_eyes(u: np.ndarray, center: np.ndarray, radius: np.ndarray) -> dict:
    """The classic world's eyes: black-ish, radius U[1.5, 2.5], x = cx ± R·U[.33, .45], y = cy − R·U[.25, .40]."""
    cx, cy = center[:, 0], center[:, 1]
    eye_r = between(u[:, 11], 1.5, 2.5)
    eye_dx = radius * between(u[:, 12], 0.33, 0.45)    # >= .33 R so the two eyes never touch
    eye_y = cy - radius * between(u[:, 13], 0.25, 0.40)
    grey = np.repeat(between(u[:, 14], 0.0, 0.15)[:, None, None], 3, axis=2)      # (n, 1, 3)
    return dict(eye_centers=np.stack([np.stack([cx - eye_dx, eye_y], 1), np.stack([cx + eye_dx, eye_y], 1)], 1),
                eye_radii=np.stack([eye_r, eye_r], 1), eye_color=np.repeat(grey, 2, axis=1))


def relational_eye_pair(indices: np.ndarray, seed: int) -> dict:
    """The shared attributes of each face's eye pair, from the eyes' own stream (independent of the face):
    colour index (n,), radius (n,), offset dx (n,) of each eye from the face's axis, height h (n,) above cy.

    Uniform over the ranges at the top of this module, restricted to eyes that fit inside the smallest
    face: the first of `_EYE_TRIES` candidate draws with √(dx² + h²) + radius ≤ EYE_ROOM is kept."""
    u = uniforms(seed, indices, 4 * _EYE_TRIES + 1, stream=_EYE_STREAM)        # (n, 4 tries + 1)
    tries = u[:, :4 * _EYE_TRIES].reshape(len(indices), _EYE_TRIES, 4)         # (n, T, 4)
    radius = between(tries[..., 0], *EYE_RADIUS)
    dx = radius + between(tries[..., 1], *EYE_GAP_X)
    h = radius + between(tries[..., 2], *EYE_GAP_Y)
    fits = np.hypot(dx, h) + radius <= EYE_ROOM                                 # (n, T)
    pick = np.where(fits.any(1), fits.argmax(1), 0)
    rows = np.arange(len(indices))
    colour = np.minimum((u[:, -1] * len(EYE_COLORS)).astype(np.int64), len(EYE_COLORS) - 1)
    radius, dx, h = radius[rows, pick], dx[rows, pick], h[rows, pick]
    scale = np.minimum(1.0, (EYE_ROOM - radius) / np.hypot(dx, h))              # 1 unless no try fitted
    return dict(colour=colour, radius=radius, dx=dx * scale, h=h * scale)


def place_eyes(center: np.ndarray, pair: dict) -> dict:
    """Per-eye metadata of mirror-image eyes from shared pair attributes: left at cx − dx, right at cx + dx."""
    cx, y = center[:, 0], center[:, 1] - pair["h"]
    color = EYE_COLORS[pair["colour"]]                                          # (n, 3)
    return dict(eye_centers=np.stack([np.stack([cx - pair["dx"], y], 1), np.stack([cx + pair["dx"], y], 1)], 1),
                eye_radii=np.stack([pair["radius"], pair["radius"]], 1), eye_color=np.stack([color, color], 1))


def sample_params(indices: np.ndarray, seed: int, world: str = DEFAULT_WORLD) -> SmileyParams:
    """Draw every face's parameters in `world` (docs/smileys.md)."""
    u = uniforms(seed, indices, 24)
    rest = _face_and_mouth(u, varied=check_world(world) == "smileys-varied")
    if world == "smileys-classic":
        eyes = classic_eyes(u, rest["face_center"], rest["face_radius"])
    else:
        eyes = place_eyes(rest["face_center"], relational_eye_pair(indices, seed))
    return SmileyParams(**rest, **eyes)


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


def _grid(size: int):
    """Pixel-centre coordinates X (1, 1, W) and Y (1, H, 1)."""
    return np.arange(size, dtype=np.float32)[None, None, :], np.arange(size, dtype=np.float32)[None, :, None]


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


def _eye_alphas(X, Y, p: SmileyParams) -> list[np.ndarray]:
    """Coverage (n, H, W) of each eye e = 0 .. E-1."""
    return [_disc_alpha(X, Y, p.eye_centers[:, e, 0], p.eye_centers[:, e, 1], p.eye_radii[:, e])
            for e in range(p.eye_centers.shape[1])]


def render(p: SmileyParams, size: int = SMILEY_SIZE) -> np.ndarray:
    """Draw faces from parameters: background, face disc, each eye in its own colour, mouth; (n, 3, H, W) in [0, 1]."""
    X, Y = _grid(size)
    img = np.empty((len(p.label), 3, size, size), np.float32)
    img[:] = p.background.astype(np.float32)[:, :, None, None]
    _blend(img, p.face_color, _disc_alpha(X, Y, p.face_center[:, 0], p.face_center[:, 1], p.face_radius))
    for e, alpha in enumerate(_eye_alphas(X, Y, p)):
        _blend(img, p.eye_color[:, e], alpha)
    _blend(img, p.mouth_color, _mouth_alpha(X, Y, p))
    return img


def render_meta(meta: dict) -> torch.Tensor:
    """Images (n, 3, 32, 32) in [-1, 1] of (possibly edited) metadata: `render` of `smileys_batch(meta=True)`'s dict."""
    return torch.from_numpy(to_signed(render(SmileyParams(**meta))))


def part_masks(meta: dict, size: int = SMILEY_SIZE) -> dict[str, np.ndarray]:
    """Where each part of each face is drawn: (n, H, W) bool masks of the pixels each part covers at all
    (coverage > 0): "face", "eye_0" … "eye_{E-1}" (every eye in the metadata, 0 = left, 1 = right on real
    faces), "eyes" (all of them) and "mouth"."""
    p = SmileyParams(**meta)
    X, Y = _grid(size)
    eyes = [alpha > 0 for alpha in _eye_alphas(X, Y, p)]
    masks = {f"eye_{e}": m for e, m in enumerate(eyes)}
    return {"face": _disc_alpha(X, Y, p.face_center[:, 0], p.face_center[:, 1], p.face_radius) > 0,
            **masks, "eyes": np.logical_or.reduce(eyes), "mouth": _mouth_alpha(X, Y, p) > 0}


def to_signed(img01: np.ndarray) -> np.ndarray:
    """[0, 1] -> [-1, 1] (the diffusion models' pixel range)."""
    return img01 * 2.0 - 1.0


def _render_chunked(indices: np.ndarray, seed: int, world: str, edit=None, chunk: int = 1024):
    """Sample parameters and render in chunks (bounded memory); `edit(params, indices)` may corrupt them."""
    images, metas = [], []
    for s in range(0, len(indices), chunk):
        idx = indices[s:s + chunk]
        p = sample_params(idx, seed, world)
        if edit is not None:
            p = edit(p, idx)
        images.append(to_signed(render(p)))
        metas.append(p)
    return np.concatenate(images) if images else np.zeros((0, 3, SMILEY_SIZE, SMILEY_SIZE), np.float32), metas


def _merge_meta(parts: list[SmileyParams]) -> dict:
    """Concatenate the per-chunk parameters into one metadata dict."""
    metas = [p.as_meta() for p in parts]
    if not metas:
        return {}
    return {k: np.concatenate([m[k] for m in metas]) for k in metas[0]}


def smileys_at(indices, seed: int = 0, world: str = DEFAULT_WORLD, meta: bool = False):
    """Faces number `indices` of world `world`, seed `seed`: (images (n,3,32,32) float32 in [-1,1], labels[, meta])."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size and indices.min() < 0:
        raise ValueError("smiley indices must be >= 0; pass start >= 0")
    images, parts = _render_chunked(indices, seed, check_world(world))
    labels = np.concatenate([p.label for p in parts]) if parts else np.zeros(0, np.int64)
    out = (torch.from_numpy(images), torch.from_numpy(labels))
    return out + (_merge_meta(parts),) if meta else out


def smileys_batch(n: int, seed: int = 0, start: int = 0, world: str = DEFAULT_WORLD, meta: bool = False):
    """Faces start..start+n-1: (images (n,3,32,32) float32 in [-1,1], labels (n,) int64[, meta dict])."""
    if n < 0:
        raise ValueError(f"n = {n} images requested; pass n >= 0")
    return smileys_at(np.arange(start, start + n), seed=seed, world=world, meta=meta)


# ----------------------------------------------------------------------------------------------
# Corruptions: what a model gets wrong (used by the checker's tests, the metric tests, lessons)
# ----------------------------------------------------------------------------------------------
def _corrupt(kind: str, p: SmileyParams, idx: np.ndarray, seed: int) -> SmileyParams:
    """Edit one eye: erase it, add a forehead eye, move it 3–4 px up or down, give it another colour
    (the next palette colour; classic eyes turn blue), or resize it by 0.8–1.2 px (away from the range's end)."""
    u = uniforms(seed, idx, 3, stream=1)
    which = (u[:, 0] < 0.5).astype(np.int64)                         # the left or the right eye
    rows = np.arange(len(idx))
    if kind == "erase_eye":
        p.eye_radii[rows, which] = 0.0                                   # = painted over with the face colour
    elif kind == "shift_eye":
        shift = between(u[:, 1], 3.0, 4.0) * np.where(u[:, 2] < 0.5, -1.0, 1.0)
        p.eye_centers[rows, which, 1] += shift
    elif kind == "recolour_eye":
        p.eye_color[rows, which] = another_eye_colour(p.eye_color[rows, which])
    elif kind == "resize_eye":
        r = p.eye_radii[rows, which]
        step = between(u[:, 1], 0.8, 1.2)
        p.eye_radii[rows, which] = np.where(r + step <= EYE_RADIUS[1] + 0.4, r + step, r - step)
    elif kind == "extra_eye":
        r = p.eye_radii[:, :1]
        third = np.stack([p.face_center[:, 0], p.eye_centers[:, 0, 1] - (2 * r[:, 0] + 1.5)], 1)
        p.eye_centers = np.concatenate([p.eye_centers, third[:, None]], 1)   # (n, 3, 2)
        p.eye_radii = np.concatenate([p.eye_radii, r], 1)                    # (n, 3)
        p.eye_color = np.concatenate([p.eye_color, p.eye_color[:, :1]], 1)   # (n, 3, 3)
    return p


def another_eye_colour(colors: np.ndarray, u: np.ndarray | float = 0.0) -> np.ndarray:
    """A palette colour other than each colour's own (..., 3): k + 1 + ⌊u·(K − 1)⌋ steps along EYE_COLORS, mod K,
    for u in [0, 1) (u = 0: the next colour)."""
    step = 1 + (np.asarray(u) * (len(EYE_COLORS) - 1)).astype(np.int64)
    return EYE_COLORS[(eye_colour_index(colors) + step) % len(EYE_COLORS)]


def eye_colour_index(colors: np.ndarray) -> np.ndarray:
    """The nearest EYE_COLORS entry of each colour (..., 3) → (...,) int."""
    return np.argmin(((colors[..., None, :] - EYE_COLORS) ** 2).sum(-1), axis=-1)


def _noise_images(indices: np.ndarray, seed: int) -> np.ndarray:
    """Pure noise N(0, 1) clipped to [-1, 1], per image a function of (seed, index) (Box–Muller)."""
    half = 3 * SMILEY_SIZE * SMILEY_SIZE // 2
    u = uniforms(seed, indices, 2 * half, stream=2)                   # (n, 2 * half)
    radius = np.sqrt(-2.0 * np.log1p(-u[:, :half]))
    angle = 2.0 * np.pi * u[:, half:]
    eps = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)], 1)
    return np.clip(eps, -1, 1).astype(np.float32).reshape(-1, 3, SMILEY_SIZE, SMILEY_SIZE)  # (n, 3, H, W)


def corrupted_smileys(kind: str, n: int, seed: int = 0, start: int = 0, world: str = DEFAULT_WORLD):
    """The same faces as `smileys_batch` with one defect (CORRUPTIONS); labels unchanged."""
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {kind!r}; use one of {', '.join(CORRUPTIONS)}")
    indices = np.arange(start, start + n)
    if kind == "noise":
        _, labels = smileys_at(indices, seed=seed, world=world)
        return torch.from_numpy(_noise_images(indices, seed)), labels
    images, parts = _render_chunked(indices, seed, check_world(world), edit=lambda p, i: _corrupt(kind, p, i, seed))
    labels = np.concatenate([p.label for p in parts])
    return torch.from_numpy(images), torch.from_numpy(labels)
