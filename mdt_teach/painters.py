"""Painters of the right eye: the chance line of the checker and of the missing-eye probe.

A score earns trust only by failing what lacks the property it measures. Each painter here redraws the
right eye (eye 1) of a face and leaves everything else as the world drew it, the left eye included:

Relation-blind painters may read everything about the face except the other eye, so whatever they score
is what a model scores without the relation (the chance line):
  * `independent`  — each eye attribute (colour, size, offset from the axis, height) from the world's
    marginal: the attribute of a different donor face of the same world;
  * `canonical`    — the world's typical eye: the most common colour, the mean size, offset and height;
  * `context`      — a guess from all non-eye metadata: the right eye of the donor face whose face centre,
    radius, colours, mouth and label are nearest (it would profit from any leak of the eyes into the rest);
  * `transplant`   — the right eye of another face, in face-relative coordinates.

Painters that read the left eye and copy it mirrored, but get one attribute clearly wrong (2–3× the
checker's tolerance, inside the world's range), show that each agreement test carries its own weight:
`one_wrong(meta, "colour" | "size" | "spacing" | "height")`. `mirror` copies it exactly (the oracle).
"""
from __future__ import annotations

import functools

import numpy as np

from .checker import PAIR_TOL_PX, SIZE_TOL, two_eyes
from .smileys import (EYE_COLORS, EYE_RADIUS, EYE_ROOM, another_eye_colour, between, eye_colour_index, render_meta,
                      sample_params, smileys_batch, uniforms)

BLIND_PAINTERS = ("independent", "canonical", "context", "transplant")
ATTRIBUTES = ("colour", "size", "spacing", "height")
DONOR_SEED = 3_000_017      # the world seed of the donor faces (no training run, probe or reference uses it)
DONORS = 4096


# ----------------------------------------------------------------------------------------------
# An eye in face-relative terms, and back
# ----------------------------------------------------------------------------------------------
def right_eye(meta: dict) -> dict:
    """The right eye's attributes relative to its face: colour (n, 3), radius, dx (offset right of the
    axis) and h (height above the face centre), each (n,)."""
    cx, cy = meta["face_center"].T
    return {"colour": meta["eye_color"][:, 1], "radius": meta["eye_radii"][:, 1],
            "dx": meta["eye_centers"][:, 1, 0] - cx, "h": cy - meta["eye_centers"][:, 1, 1]}


def left_eye_mirrored(meta: dict) -> dict:
    """The left eye's attributes as a right eye would have them (mirrored about the face's axis)."""
    cx, cy = meta["face_center"].T
    return {"colour": meta["eye_color"][:, 0], "radius": meta["eye_radii"][:, 0],
            "dx": cx - meta["eye_centers"][:, 0, 0], "h": cy - meta["eye_centers"][:, 0, 1]}


def with_right_eye(meta: dict, eye: dict) -> dict:
    """A copy of `meta` whose right eye is `eye` (face-relative, as `right_eye` returns); nothing else changes."""
    out = {k: np.copy(v) for k, v in meta.items()}
    cx, cy = meta["face_center"].T
    out["eye_color"][:, 1] = eye["colour"]
    out["eye_radii"][:, 1] = eye["radius"]
    out["eye_centers"][:, 1] = np.stack([cx + eye["dx"], cy - eye["h"]], 1)
    return out


# ----------------------------------------------------------------------------------------------
# Relation-blind painters
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def donors(world: str, n: int = DONORS) -> dict:
    """Metadata of n donor faces of `world` (seed DONOR_SEED), drawn once per world (read, never written)."""
    return sample_params(np.arange(n), DONOR_SEED, world).as_meta()


def _context(meta: dict) -> np.ndarray:
    """(n, F) every non-eye attribute of each face: centre, radius, colours, mouth, label."""
    parts = [meta["face_center"], meta["face_radius"][:, None], meta["face_color"], meta["background"],
             meta["mouth_center"], meta["mouth_half_width"][:, None], meta["mouth_depth"][:, None],
             meta["mouth_ring"], meta["mouth_color"], np.eye(4)[meta["label"]]]
    return np.concatenate(parts, 1).astype(np.float64)


def paint(meta: dict, painter: str, world: str, seed: int = 0) -> dict:
    """`meta` with its right eye redrawn by a relation-blind painter (BLIND_PAINTERS); the left eye is not read."""
    pool = donors(world)
    d = right_eye(pool)
    n = len(meta["label"])
    u = uniforms(seed, np.arange(n), 5, stream=7)
    pick = lambda k: (u[:, k] * len(pool["label"])).astype(np.int64)  # noqa: E731  a donor per face
    if painter == "independent":
        eye = {name: d[name][pick(k)] for k, name in enumerate(("colour", "radius", "dx", "h"))}
    elif painter == "transplant":
        j = pick(4)
        eye = {name: v[j] for name, v in d.items()}
    elif painter == "canonical":
        mode = EYE_COLORS[np.bincount(eye_colour_index(d["colour"]), minlength=len(EYE_COLORS)).argmax()]
        eye = {"colour": np.tile(mode, (n, 1)), **{k: np.full(n, d[k].mean()) for k in ("radius", "dx", "h")}}
    elif painter == "context":
        ref = _context(pool)
        mu, sd = ref.mean(0), ref.std(0) + 1e-9
        a, b = (_context(meta) - mu) / sd, (ref - mu) / sd                          # (n, F), (D, F) standardised
        j = ((a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None] - 2 * a @ b.T).argmin(1)   # nearest: |a − b|² (n, D)
        eye = {name: v[j] for name, v in d.items()}
    else:
        raise ValueError(f"unknown painter {painter!r}; use one of {', '.join(BLIND_PAINTERS)}")
    return with_right_eye(meta, eye)


# ----------------------------------------------------------------------------------------------
# Painters that look at the left eye: the oracle, and one attribute wrong
# ----------------------------------------------------------------------------------------------
def mirror(meta: dict) -> dict:
    """The oracle: the right eye is the left one mirrored (what a real face has)."""
    return with_right_eye(meta, left_eye_mirrored(meta))


def _away(value: np.ndarray, step: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """value ± step, whichever direction stays inside [lo, hi] (up when both do)."""
    return np.where(value + step <= hi, value + step, value - step)


def _room_along(eye: dict, key: str, sign: int) -> np.ndarray:
    """How far (px) the right eye can move along dx or h (sign +1: out / up) and stay a real eye: inside the
    face (EYE_ROOM + 0.75 px, still inside the smallest face), clear of the left eye, its lowest point at
    most 0.75 px below the face centre line (a little past the world's own ranges, so every face has room)."""
    step = np.linspace(0.0, 4.0, 81)[:, None]                                     # (S, 1) candidate moves
    dx, h = (eye["dx"] + sign * step, eye["h"]) if key == "dx" else (eye["dx"], eye["h"] + sign * step)
    r = eye["radius"]
    ok = (np.hypot(dx, h) + r <= EYE_ROOM + 0.75) & (dx >= r + 0.5) & (h >= r - 0.75)  # (S, n)
    return np.where(ok.all(0), 4.0, step[np.argmin(ok, axis=0), 0] - 0.05)


def one_wrong(meta: dict, attribute: str, seed: int = 0) -> dict:
    """The mirrored left eye with one attribute (ATTRIBUTES) clearly wrong: another palette colour, or the
    size, spacing or height moved by 2–3× the checker's tolerance, staying inside the world's range."""
    eye = left_eye_mirrored(meta)
    u = uniforms(seed, np.arange(len(meta["label"])), 2, stream=8)
    if attribute == "colour":
        eye["colour"] = another_eye_colour(eye["colour"], u[:, 0])
    elif attribute == "size":
        eye["radius"] = _away(eye["radius"], between(u[:, 0], 2.0, 3.0) * SIZE_TOL, *EYE_RADIUS)
    elif attribute in ("spacing", "height"):
        key = "dx" if attribute == "spacing" else "h"
        step = between(u[:, 0], 2.0, 3.0) * PAIR_TOL_PX
        outward = _room_along(eye, key, +1)
        inward = _room_along(eye, key, -1)
        eye[key] = eye[key] + np.where(outward >= inward, np.minimum(step, outward), -np.minimum(step, inward))
    else:
        raise ValueError(f"unknown attribute {attribute!r}; use one of {', '.join(ATTRIBUTES)}")
    return with_right_eye(meta, eye)


# ----------------------------------------------------------------------------------------------
# The chance line of free samples
# ----------------------------------------------------------------------------------------------
CHANCE_SEED = 11


def painted_results(world: str, n: int = 1000) -> dict:
    """{painter: TwoEyesResult} of n real faces of `world` (seed CHANCE_SEED) whose right eye each relation-blind
    painter redrew: the checker's verdicts on what a model that never looks at the other eye would draw."""
    _, labels, meta = smileys_batch(n, seed=CHANCE_SEED, world=world, meta=True)
    return {p: two_eyes(render_meta(paint(meta, p, world)), labels) for p in BLIND_PAINTERS}


def blind_rates(world: str, n: int = 1000) -> dict:
    """{painter: pair_agreement} of `painted_results`: the chance line of free samples. Measured once per
    process and world (about 2 s; every smileys run's summary asks for it)."""
    return dict(_blind_rates(world, n))


@functools.lru_cache(maxsize=4)
def _blind_rates(world: str, n: int) -> tuple:
    return tuple((p, round(r.pair_score, 4)) for p, r in painted_results(world, n).items())
