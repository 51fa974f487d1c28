"""What a model learned about the relation between parts: the missing-eye probe and eye-to-eye attention.

MDT's story (v1 paper, §1) is that DiT draws one eye of a dog early and the second one much later,
because its per-token loss never asks one part to be predicted from another, and that the masked pass
does. The smileys world makes that measurable: every face has two mirror-symmetric eyes at known places.

**The missing-eye probe.** Take faces of a world no model trains on (PROBE_SEED), hide every token that
overlaps the right eye (a token is hidden when any of its pixels has eye coverage > 0), let the model
draw them back by RePaint inpainting (`sampling.inpaint`), and count a face as completed only when the
drawn eye matches the visible one in every shared attribute — the checker's pair stage: same colour class,
same size, mirrored about the face's axis, at the same height — and the rest of the drawn region is clean
skin (`skin_is_clean`). Faces where the hidden tokens would reach the face's rim, the mouth or the left
eye are skipped, so the model only has to draw an eye on skin.

**The chance line.** The relation-blind painters (`painters.py`) paint the same hidden region of the same
faces without looking at the left eye; their rates are what a model scores without the relation. In the
relational world they stay below 10%; in `smileys-classic` they pass the old mirrored-eye test 85–100%.

**The follow test.** Each kept face is drawn a second time with both eyes in another colour and nothing
else changed, so the hidden tokens are the same and only the visible eye differs. A model follows when its
drawn eye agrees in both versions; a painter that never looks at the visible eye draws the same eye twice
and so follows (almost) never.

Two controls keep it honest:
  * **none** hides nothing: the scorer on the original faces (the upper bound, 100% for real faces);
  * **cheek** hides as many tokens of plain cheek (every pixel on the face, none on an eye or the mouth,
    below the right eye): a model that understood faces draws skin there, so an
    "eye drawn in the cheek" (a dark blob of MIN_BLOB pixels in the hidden region) should be rare.

**Eye-to-eye attention.** With the explicit attention of `layers.explicit_attention`, the attention
weight that the tokens of the left eye give to the tokens of the right eye, per layer, averaged over
heads and faces, per key token — beside the weight they give to plain-skin tokens at the same distance.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .checker import DARK_DROP, MIN_BLOB, TOL_PX, two_eyes, unit_images_and_luminance
from .data import DEFAULT_WORLD, part_masks, render_meta, smileys_batch
from .diffusion import GaussianDiffusion
from .layers import Attention, explicit_attention
from .painters import BLIND_PAINTERS, paint
from .sampling import inpaint, keep_from_tokens
from .smileys import another_eye_colour, uniforms

PROBE_SEED = 2_000_003    # the held-out world of the probe's faces (no training run, no FD reference uses it)
PROBE_FACES = 512         # faces drawn; at patch 4 about 47% are usable for the eye region
SKIN_TOL = 0.15           # a drawn skin pixel may differ this much from the face's colour (pixels in [0, 1])
REGIONS = ("eye", "cheek", "none")


# ----------------------------------------------------------------------------------------------
# Which tokens to hide
# ----------------------------------------------------------------------------------------------

def token_cover(mask: np.ndarray, patch_size: int) -> np.ndarray:
    """(n, H, W) bool pixel mask → (n, N) bool: tokens (row-major) with at least one pixel in the mask."""
    n, h, w = mask.shape
    g = h // patch_size
    return mask.reshape(n, g, patch_size, g, patch_size).any(axis=(2, 4)).reshape(n, g * g)


def _token_pixels(tokens: np.ndarray, patch_size: int, size: int) -> np.ndarray:
    """(n, N) bool tokens → (n, H, W) bool pixels they cover."""
    return keep_from_tokens(torch.from_numpy(tokens), patch_size)[:, 0].numpy().astype(bool)[:, :size, :size]


def _interior(meta: dict, size: int, margin: float = 1.0) -> np.ndarray:
    """(n, H, W) pixels at least `margin` px inside the face's rim."""
    yy, xx = np.mgrid[0:size, 0:size]
    cx, cy = meta["face_center"][:, 0, None, None], meta["face_center"][:, 1, None, None]
    return np.hypot(xx - cx, yy - cy) <= meta["face_radius"][:, None, None] - margin


def hidden_tokens(meta: dict, region: str, patch_size: int, size: int = 32, hide_eye: int = 1
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(tokens to hide (n, N) bool, usable (n,) bool) for region "eye", "cheek" or "none".

    eye: every token touching eye `hide_eye` (1 = the right eye); usable when those tokens stay 1 px inside
    the face's rim and touch neither the mouth nor any other eye. cheek: the same number of tokens of plain
    skin (every pixel on the face, none on an eye or the mouth), nearest the point 0.45 R below that eye;
    usable when the eye region is and enough such tokens exist."""
    parts = part_masks(meta, size)
    n, num_eyes = len(meta["label"]), meta["eye_centers"].shape[1]
    if not 0 <= hide_eye < num_eyes:
        raise ValueError(f"hide_eye {hide_eye} is not one of the faces' {num_eyes} eyes; use 0 .. {num_eyes - 1}")
    others = np.logical_or.reduce([parts[f"eye_{e}"] for e in range(num_eyes) if e != hide_eye])
    eye = token_cover(parts[f"eye_{hide_eye}"], patch_size)
    eye_px = _token_pixels(eye, patch_size, size)
    inside = _interior(meta, size)
    usable = ((eye_px & ~inside).sum((1, 2)) == 0) & ((eye_px & (parts["mouth"] | others)).sum((1, 2)) == 0)
    if region == "none":
        return np.zeros_like(eye), usable
    if region == "eye":
        return eye, usable
    if region != "cheek":
        raise ValueError(f"unknown probe region {region!r}; use one of {', '.join(REGIONS)}")
    busy = parts["eyes"] | parts["mouth"]
    g = size // patch_size
    free = token_cover(~parts["face"] | busy, patch_size) == 0              # (n, N) tokens of plain skin
    centres = (np.arange(g) + 0.5) * patch_size - 0.5                        # token centres in pixel units
    ty, tx = np.meshgrid(centres, centres, indexing="ij")
    cheek = np.zeros_like(eye)
    for k in range(n):
        px, py = meta["eye_centers"][k, hide_eye] + np.array([0.0, 0.45 * meta["face_radius"][k]])   # below the eye
        order = np.argsort(np.hypot(tx - px, ty - py).ravel())
        chosen = [j for j in order if free[k, j]][: int(eye[k].sum())]
        if len(chosen) == eye[k].sum():
            cheek[k, chosen] = True
        else:
            usable[k] = False
    return cheek, usable


# ----------------------------------------------------------------------------------------------
# Scoring a completed face
# ----------------------------------------------------------------------------------------------

def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a binomial rate (sensible at 0 and 1, unlike ±1.96·SE)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre, half = (p + z * z / (2 * n)), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, float((centre - half) / (1 + z * z / n))), min(1.0, float((centre + half) / (1 + z * z / n)))


def mirrored_eye_ok(images, meta: dict) -> np.ndarray:
    """(n,) bool: two eyes that pass the checker's symmetry and same-height tests, the right one within
    TOL_PX of the left one mirrored about the face's true vertical axis."""
    r = two_eyes(images)
    cx = meta["face_center"][:, 0]
    left, right = r.eye_centers[:, 0], r.eye_centers[:, 1]
    with np.errstate(invalid="ignore"):
        distance = np.hypot(right[:, 0] - (2 * cx - left[:, 0]), right[:, 1] - left[:, 1])
        return r.face_found & (r.eye_count == 2) & r.symmetric & r.same_height & (distance <= TOL_PX)


def dark_blob_in(images, region: np.ndarray, face: np.ndarray) -> np.ndarray:
    """(n,) bool: at least MIN_BLOB pixels inside `region` (n, H, W) are eye-dark — luminance more than
    DARK_DROP below the median of the face's pixels `face` (n, H, W), the checker's own rule for eyes."""
    _, lum = unit_images_and_luminance(images)
    face_median = np.array([np.median(l[f]) for l, f in zip(lum, face)])
    dark = lum < (face_median - DARK_DROP)[:, None, None]
    return (dark & region).sum((1, 2)) >= MIN_BLOB


def skin_is_clean(images, region: np.ndarray, face: np.ndarray, tol: float = SKIN_TOL) -> np.ndarray:
    """(n,) bool: the drawn region's pixels that are neither eye-dark nor next to such a pixel (an eye's
    anti-aliased rim) nor on the face's own rim are skin — at most 10% of them differ from the face's median
    colour by more than
    `tol` in any channel. (Noise drawn where the eye was can make a
    dark blob at the right place; it cannot make clean skin around it.)"""
    x, lum = unit_images_and_luminance(images)
    out = np.zeros(len(x), bool)
    for k in range(len(x)):
        skin = face[k] & ~region[k]
        median = np.median(lum[k][face[k]])
        colour = np.median(x[k][:, skin & (lum[k] >= median - DARK_DROP)], axis=1)      # (3,)
        dark = lum[k] < median - DARK_DROP
        near = dark | np.roll(dark, 1, 0) | np.roll(dark, -1, 0) | np.roll(dark, 1, 1) | np.roll(dark, -1, 1)
        inner = face[k].copy()                                               # the face eroded by one pixel
        for shift, axis in ((1, 0), (-1, 0), (1, 1), (-1, 1)):
            inner &= np.roll(face[k], shift, axis)
        drawn = region[k] & ~near & inner                                    # skin: not an eye's rim, not the face's
        off = (np.abs(x[k][:, drawn] - colour[:, None]) > tol).any(0)
        out[k] = drawn.any() and off.mean() <= 0.10
    return out


def completed(done, meta: dict, keep: torch.Tensor) -> np.ndarray:
    """(n,) bool: the probe's verdict on completed faces — the two eyes agree in every shared attribute (the
    checker's `pair_agrees`: colour, size, mirrored, level, and the two-eyes verdict) and the skin is clean
    wherever `keep` (n, 1, H, W) let the model draw (nothing to check where nothing was drawn)."""
    drawn = keep[:, 0].numpy() < 0.5
    clean = skin_is_clean(done, drawn, part_masks(meta, done.shape[-1])["face"]) | ~drawn.any((1, 2))
    return two_eyes(done).pair_agrees & clean


def chance_line(images: torch.Tensor, meta: dict, keep: torch.Tensor, world: str, painters: dict | None = None
                ) -> dict:
    """{painter: (n,) bool}: the probe's verdict when a painter draws the hidden region instead of the model —
    its right eye pasted where `keep` is 0, exactly where the model may draw. `painters` maps names to
    functions meta → painted meta; by default the relation-blind ones (painters.BLIND_PAINTERS), whose rates
    are what a model scores without looking at the other eye."""
    painters = painters or {name: (lambda m, name=name: paint(m, name, world)) for name in BLIND_PAINTERS}
    return {name: completed(keep * images + (1 - keep) * render_meta(fn(meta)), meta, keep)
            for name, fn in painters.items()}


def other_colour(meta: dict, seed: int = 0) -> dict:
    """The follow test's second version of each face: both eyes in another palette colour, nothing else changed
    (so the hidden tokens are the same: only the visible eye tells the difference)."""
    out = {k: np.copy(v) for k, v in meta.items()}
    u = uniforms(seed, np.arange(len(meta["label"])), 1, stream=9)[:, 0]
    out["eye_color"][:] = another_eye_colour(meta["eye_color"][:, 0], u)[:, None]
    return out


@dataclass
class ProbeResult:
    """Rates over the usable faces of one probe run, each with its 95% Wilson interval."""

    region: str
    faces: int                 # usable faces scored
    completed: float           # eye, none: the drawn eye agrees with the visible one / cheek: still agrees
    completed_ci: tuple
    eye_in_region: float       # a dark blob in the hidden region (what the cheek control must not show)
    eye_in_region_ci: tuple
    chance: dict               # {painter: rate} of the relation-blind painters on the same faces (the chance line)
    follow: float | None       # eye: agrees in both colour versions of the face (None when not run)
    follow_ci: tuple | None
    follow_chance: dict | None  # {painter: rate} of the painters on the follow test
    images: torch.Tensor       # the completed faces
    keep: torch.Tensor         # (n, 1, H, W) the keep masks used

    def summary(self) -> str:
        lo, hi = self.completed_ci
        chance = f" (chance ≤ {max(self.chance.values()):.1%})" if self.region == "eye" else ""   # controls: none
        text = (f"{self.region:5s} {self.faces:3d} faces: eye pair agrees {self.completed:6.1%} [{lo:.0%}, {hi:.0%}]"
                f"{chance}, dark blob in the hidden region {self.eye_in_region:6.1%}")
        if self.follow is not None:
            lo, hi = self.follow_ci
            text += (f"; follows the visible eye's colour {self.follow:6.1%} [{lo:.0%}, {hi:.0%}] "
                     f"(chance ≤ {max(self.follow_chance.values()):.1%})")
        return text

    def record(self) -> dict:
        """The rates as plain JSON values."""
        keys = ("faces", "completed", "completed_ci", "eye_in_region", "eye_in_region_ci", "chance", "follow",
                "follow_ci", "follow_chance")
        return {k: getattr(self, k) for k in keys}


def _rate(ok: np.ndarray) -> tuple[float, tuple]:
    """Mean and Wilson interval of a (k,) bool array."""
    return (float(ok.mean()) if len(ok) else 0.0), wilson_interval(int(ok.sum()), len(ok))


def _complete(model, images, keep, labels, region, steps, jump_length, resamples, seed, diffusion):
    """The model's completion of the hidden region (the faces themselves when nothing is hidden)."""
    if region == "none":
        return images.clone()
    return inpaint(model, images, keep, labels, diffusion or GaussianDiffusion(), steps=steps, jump_length=jump_length,
                   resamples=resamples, generator=torch.Generator().manual_seed(seed)).cpu()


def missing_eye_probe(model, region: str = "eye", n: int = PROBE_FACES, steps="50", jump_length: int = 5,
                      resamples: int = 3, seed: int = 0, diffusion: GaussianDiffusion | None = None,
                      faces=None, world: str = DEFAULT_WORLD, follow: bool = True) -> ProbeResult:
    """Hide `region` on n probe faces of `world`, let `model` complete the usable ones, score them beside the
    painters' chance line; for the eye, also the follow test (module docstring)."""
    images, labels, meta = faces if faces is not None else smileys_batch(n, seed=PROBE_SEED, world=world, meta=True)
    patch = model.patch_size if hasattr(model, "patch_size") else model.config.patch_size
    hide, usable = hidden_tokens(meta, region, patch, images.shape[-1])
    images, labels = images[usable], labels[usable]
    meta = {k: v[usable] for k, v in meta.items()}
    keep = 1 - keep_from_tokens(torch.from_numpy(hide[usable]), patch)                  # (k, 1, H, W)
    done = _complete(model, images, keep, labels, region, steps, jump_length, resamples, seed, diffusion)
    ok = completed(done, meta, keep)
    blob = dark_blob_in(done, keep[:, 0].numpy() < 0.5, part_masks(meta, images.shape[-1])["face"])
    painted_a = chance_line(images, meta, keep, world)
    chance = {k: _rate(v)[0] for k, v in painted_a.items()}
    follows = (None, None, None)
    if follow and region == "eye" and len(images):
        meta_b = other_colour(meta, seed)
        images_b = render_meta(meta_b)
        done_b = _complete(model, images_b, keep, labels, region, steps, jump_length, resamples, seed, diffusion)
        painted_b = chance_line(images_b, meta_b, keep, world)
        follows = (*_rate(ok & completed(done_b, meta_b, keep)),
                   {k: _rate(v & painted_b[k])[0] for k, v in painted_a.items()})
    return ProbeResult(region, len(done), *_rate(ok), *_rate(blob), chance, *follows, done, keep)


# ----------------------------------------------------------------------------------------------
# Attention between parts
# ----------------------------------------------------------------------------------------------

def attention_maps(model, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(L, B, H, N, N) attention probabilities of every layer that ran in one unmasked forward, in the
    order of `model.modules()` (layers that did not run, e.g. MDT's side block, are left out)."""
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    for m in layers:
        m.weights = None
    with torch.no_grad(), explicit_attention(keep_weights=True):
        model(x_t, t, y)
    return torch.stack([m.weights for m in layers if m.weights is not None])


def part_attention(weights: torch.Tensor, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Per layer (L,): the attention weight a query token of `queries` (B, N) gives to one key token of
    `keys` (B, N), averaged over heads, over the query tokens and over the images."""
    q, k = queries.float(), keys.float()                                        # (B, N) each
    to_keys = (weights * k[None, :, None, None, :]).sum(-1)                     # (L, B, H, N)
    per_query = to_keys.mean(2) / k.sum(1).clamp(min=1)[None, :, None]          # (L, B, N) per key token
    return ((per_query * q[None]).sum(-1) / q.sum(1).clamp(min=1)[None]).mean(1)  # (L,)


def eye_to_eye_attention(model, t_values=(100, 400), n: int = 32, seed: int = 0,
                         diffusion: GaussianDiffusion | None = None) -> dict:
    """{t: {"other_eye": (L,), "skin": (L,)}}: the weight per key token that left-eye tokens give to the
    right eye's tokens, and to plain-skin tokens as far from the left eye as the right eye is (±0.75 token),
    over the faces that have such skin tokens."""
    diffusion = diffusion or GaussianDiffusion()
    images, labels, meta = smileys_batch(n, seed=PROBE_SEED, meta=True)
    patch, size = model.config.patch_size, images.shape[-1]
    parts = part_masks(meta, size)
    left, right = token_cover(parts["eye_0"], patch), token_cover(parts["eye_1"], patch)
    busy = token_cover(parts["eye_0"] | parts["eye_1"] | parts["mouth"] | ~_interior(meta, size), patch)
    g = size // patch
    ty, tx = np.divmod(np.arange(g * g), g)
    skin = np.zeros_like(left)
    for b in range(n):
        lc = np.array([tx[left[b]].mean(), ty[left[b]].mean()])
        rc = np.array([tx[right[b]].mean(), ty[right[b]].mean()])
        d = np.hypot(tx - lc[0], ty - lc[1])
        skin[b] = ~busy[b] & (np.abs(d - np.linalg.norm(rc - lc)) <= 0.75)
    valid = skin.any(1)                                   # faces with plain skin at the eyes' distance
    images, labels = images[valid], labels[valid]
    queries, to_eye, to_skin = (torch.from_numpy(a[valid]) for a in (left, right, skin))
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for t in t_values:
        tt = torch.full((len(images),), int(t), dtype=torch.long)
        x_t = diffusion.q_sample(images, tt, torch.randn(images.shape, generator=gen))
        w = attention_maps(model.eval(), x_t, tt, labels)
        out[int(t)] = {"other_eye": part_attention(w, queries, to_eye), "skin": part_attention(w, queries, to_skin)}
    return out
