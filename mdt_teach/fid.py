"""FID as the papers report it: the Fréchet distance between Inception-V3 pool3 features (2048-d) of two
image sets, read from `.npz` files the way ADM's evaluator reads them (`mdt-teach fid A.npz B.npz`).

An `.npz` holds either images — `arr_0`, uint8 N×H×W×3, as written by `mdt-teach sample-fid` and the
official `scripts/image_sample.py` — or precomputed statistics `mu`, `sigma`, as in ADM's reference batch
`VIRTUAL_imagenet256_labeled.npz` (the paper's FID-50K: 50,000 class-conditional samples against it).
Inception features come from torch-fidelity's port of the TF Inception (`pip install "mdt-teach[fid]"`;
its weights are downloaded once by torch-fidelity), which matches ADM's TF evaluator closely but not bit
for bit: report which one you used. For smileys, `features="smileys"` measures FD-smileys instead (the
committed feature net of `metrics`; not comparable to FID).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .metrics import frechet_distance, gaussian_stats, smiley_features
from .sampling import to_uint8

ADM_REFERENCE_BATCH = "VIRTUAL_imagenet256_labeled.npz"
FEATURES = ("inception", "smileys")
_FID_INSTALL = ("Inception FID needs torch-fidelity and a torchvision built for your torch: "
                "pip install \"mdt-teach[fid]\" (FD-smileys works without it)")


def _inception():
    """torch-fidelity's TF-compatible Inception-V3 (2048-d pool3), imported only when FID is asked for."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as err:
        raise ModuleNotFoundError(_FID_INSTALL) from err
    try:
        return FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).eval()
    except Exception as err:   # its weights download on first use; offline that fails deep inside
        raise FileNotFoundError("torch-fidelity could not load its Inception weights (downloaded once on first "
                                f"use; {err.__class__.__name__}): run once with internet, or copy its cache "
                                "(~/.cache/torch/hub/checkpoints) from a machine that has it") from err


@torch.no_grad()
def inception_features(uint8_nhwc: np.ndarray, batch_size: int = 100, device: str = "cpu") -> np.ndarray:
    """Inception pool3 features (N, 2048) of uint8 images (N, H, W, 3), resized inside the net as ADM does."""
    net = _inception().to(device)
    feats = []
    for s in range(0, len(uint8_nhwc), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(uint8_nhwc[s:s + batch_size])).permute(0, 3, 1, 2)
        feats.append(net(x.to(device))[0].double().cpu())
    return torch.cat(feats).numpy()


def inception_fid_stats(images, batch_size: int = 100, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of Inception features of images (N, 3, H, W) in [-1, 1], converted to uint8 as the
    official sampler does (truncation)."""
    return gaussian_stats(inception_features(to_uint8(torch.as_tensor(images)).numpy(), batch_size, device))


def _smiley_features(uint8_nhwc: np.ndarray, batch_size: int = 500, device: str = "cpu") -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(uint8_nhwc)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return smiley_features(x, batch_size=batch_size)


FEATURE_FNS: dict[str, Callable] = {"inception": inception_features, "smileys": _smiley_features}


def npz_stats(path, features: str | Callable = "inception", batch_size: int = 100,
              device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of an .npz: its stored `mu`/`sigma`, or the statistics of the features of its `arr_0`.

    `features` names a feature space (FEATURES) or is a function uint8 (N, H, W, 3) → (N, D)."""
    path = Path(path)
    if not path.is_file():
        hint = (f"; ADM's reference batches ({ADM_REFERENCE_BATCH}) are on the openai/guided-diffusion "
                "evaluations page") if "VIRTUAL" in path.name or "ref" in path.name.lower() else ""
        raise FileNotFoundError(f"{path} not found{hint}")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable .npz file ({err.__class__.__name__})") from None
    with data:
        if "mu" in data and "sigma" in data:
            return data["mu"], data["sigma"]
        if "arr_0" not in data:
            raise ValueError(f"{path} holds neither images (arr_0) nor statistics (mu, sigma): it has "
                             f"{', '.join(data.files) or 'nothing'}")
        images = data["arr_0"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or len(images) < 2:
        raise ValueError(f"{path}: arr_0 must be at least 2 uint8 images shaped (N, H, W, 3), got "
                         f"{images.dtype} {images.shape}")
    fn = features if callable(features) else FEATURE_FNS.get(features)
    if fn is None:
        raise ValueError(f"unknown features {features!r}; use one of {', '.join(FEATURES)}")
    return gaussian_stats(fn(images, batch_size=batch_size, device=device))


def fid_between(path_a, path_b, features: str | Callable = "inception", batch_size: int = 100,
                device: str = "cpu") -> float:
    """The Fréchet distance between the statistics of two .npz files (`npz_stats`)."""
    return frechet_distance(*npz_stats(path_a, features, batch_size, device),
                            *npz_stats(path_b, features, batch_size, device))


def load_reference_stats(npz_path) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) stored in an ADM reference batch, e.g. VIRTUAL_imagenet256_labeled.npz."""
    path = Path(npz_path)
    if not path.is_file():
        raise FileNotFoundError(f"reference batch {path} not found; download {ADM_REFERENCE_BATCH} from "
                                "the openai/guided-diffusion evaluations page")
    with np.load(path) as ref:
        if "mu" not in ref or "sigma" not in ref:
            raise ValueError(f"{path} has no 'mu'/'sigma' arrays; pass an ADM reference batch such as "
                             f"{ADM_REFERENCE_BATCH}")
        return ref["mu"], ref["sigma"]


def fid_against_reference(images, npz_path, batch_size: int = 100, device: str = "cpu") -> float:
    """The standard FID of samples (N, 3, H, W) in [-1, 1] against an ADM reference batch (its mu, sigma)."""
    mu_ref, sigma_ref = load_reference_stats(npz_path)
    return frechet_distance(*inception_fid_stats(images, batch_size, device), mu_ref, sigma_ref)
