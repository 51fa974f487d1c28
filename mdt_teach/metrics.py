"""Metrics of the smileys world: the Fréchet distance, FD-smileys, and the scores runs log.

* `checker.two_eyes(images, labels)` (re-exported here) checks the structure every real smiley has and
  whether its two eyes agree (`checker.py`, docs/smileys.md).
* `fd_smileys(a, b)` is the Fréchet distance between two image sets in the feature space of a small
  CNN trained on smileys + digits (`data/feature_net.pt`, made by `tools/train_feature_net.py`).
  It is a toy-world metric: its numbers are NOT comparable to FID.
* `frechet_distance` is the distance itself, shared with the standard Inception FID of `fid.py`.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from .checker import DARK_DROP, MIN_BLOB, TOL_PX, two_eyes, unit_images_and_luminance  # noqa: F401 (re-exported)
from .checkpoint import read_torch_file
from .data import DEFAULT_WORLD, SMILEY_CLASSES, smileys_batch
from .resources import data_file

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
FEATURE_NET_FILES = {"smileys-classic": "feature_net_classic.pt"}   # the classic world keeps its own net
FEATURE_CLASSES = (tuple(SMILEY_CLASSES) + tuple(f"{c}, eyes disagree" for c in SMILEY_CLASSES)
                   + tuple("0123456789"))


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


def load_feature_net(path=None, world: str = DEFAULT_WORLD) -> FeatureNet:
    """The committed feature net of `world` (data/feature_net.pt, from tools/train_feature_net.py; the classic
    world's data/feature_net_classic.pt), or the one at `path`; eval mode, cached."""
    path = str(path or data_file(FEATURE_NET_FILES.get(world, FEATURE_NET_FILE)))
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


def reference_stats(n: int, world: str = DEFAULT_WORLD):
    """(mu, sigma) of n real faces of `world` from a seed the training never sees (cached; FD needs equal counts)."""
    if (n, world) not in _REFERENCE_STATS:
        faces = smileys_batch(n, seed=REFERENCE_SEED, world=world)[0]
        _REFERENCE_STATS[n, world] = gaussian_stats(smiley_features(faces, load_feature_net(world=world)))
    return _REFERENCE_STATS[n, world]


def score_smileys(images, labels=None, world: str = DEFAULT_WORLD) -> dict:
    """pair_agreement (the headline), the two-eyes verdict, the funnel, each pair test's rate among two-eyed
    images, expression accuracy and FD-smileys against as many real faces."""
    images = torch.as_tensor(images).clamp(-1, 1)
    result = two_eyes(images, labels)
    funnel = {f"funnel_{k}": float(v) for k, v in result.funnel.items()}
    extra = {} if result.expression_accuracy is None else {"expression": result.expression_accuracy}
    try:
        fd = float(fd_smileys(images, reference_stats(len(images), world), load_feature_net(world=world)))
    except FileNotFoundError as err:  # the feature net is a committed artefact; say so, keep the score
        warnings.warn(f"FD-smileys skipped: {err}", stacklevel=2)
        fd = None
    return {"pair_agreement": result.pair_score, "two_eyes": float(result.score), **funnel, **extra,
            **{f"pair_{k}": v for k, v in result.pair_tests.items()}, "fd_smileys": fd}
