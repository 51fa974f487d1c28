"""The Stable-Diffusion VAE as DiT/MDT use it: a thin wrapper over diffusers' `AutoencoderKL`.

Training images (B, 3, 256, 256) in [-1, 1] become latents (B, 4, 32, 32) = posterior sample × 0.18215
(DiT's `vae.encode(x).latent_dist.sample().mul_(0.18215)`); sampling decodes z / 0.18215. The
official MDT code loads `stabilityai/sd-vae-ft-mse` (or `-ema`) from the Hugging Face hub.
"""
from __future__ import annotations

import functools

import os
from pathlib import Path

import torch

SCALE = 0.18215                       # SD-VAE latent scale factor used by LDM, DiT and MDT
DEFAULT_VAE = "stabilityai/sd-vae-ft-mse"
VAE_DECODERS = {"mse": DEFAULT_VAE, "ema": "stabilityai/sd-vae-ft-ema"}   # `--vae-decoder` names


class LatentVAE:
    """Encode images to scaled latents and decode them back; `model` is the diffusers AutoencoderKL."""

    def __init__(self, model, name: str = "custom"):
        self.model = model.eval().requires_grad_(False)
        self.name = name
        self.scale = SCALE
        self.latent_channels = model.config.latent_channels
        self.downsample = 2 ** (len(model.config.block_out_channels) - 1)

    def to(self, device=None, dtype=None) -> "LatentVAE":
        """Move the autoencoder (like nn.Module.to); returns self."""
        # Pass only what was given: diffusers' ModelMixin.to warns "modules ... should be kept in float32: []"
        # whenever a `dtype` keyword is present, even dtype=None (no cast) and even for AutoencoderKL, which
        # keeps no module in float32 (diffusers 0.42); every moved VAE printed that warning before.
        given = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        if given:
            self.model.to(**given)
        return self

    def _dtype_device(self):
        p = next(self.model.parameters())
        return p.dtype, p.device

    @torch.no_grad()
    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and std (unscaled), each (B, 4, H/8, W/8), of images (B, 3, H, W) in [-1, 1]."""
        dtype, device = self._dtype_device()
        posterior = self.model.encode(x.to(device=device, dtype=dtype)).latent_dist
        return posterior.mean, posterior.std

    @torch.no_grad()
    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images → posterior sample × 0.18215 (DiT/MDT training latents)."""
        mean, std = self.moments(x)
        return sample_latents(mean, std, generator)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents → images (B, 3, H, W), roughly in [-1, 1] (clamp before saving)."""
        dtype, device = self._dtype_device()
        return self.model.decode(z.to(device=device, dtype=dtype) / self.scale).sample


def sample_latents(mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(mean + std · ε) × 0.18215: a posterior sample on the training scale (also used by the latent cache)."""
    eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
    return (mean + std * eps) * SCALE


def tiny_vae(seed: int = 0):
    """A tiny randomly initialised AutoencoderKL (4 levels: 8× down, 4 latent channels) for tests; no download."""
    from diffusers import AutoencoderKL
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=4,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 8, 16, 16), sample_size=32)


def _looks_like_path(name: str) -> bool:
    """A local folder rather than a hub id ("owner/name")."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def _offline_error(name: str, err: Exception) -> FileNotFoundError:
    """One sentence: what is missing and the three ways to get it."""
    home = os.environ.get("HF_HOME", "~/.cache/huggingface")
    return FileNotFoundError(
        f"the VAE {name!r} is not in the Hugging Face cache ({home}) and could not be downloaded "
        f"({err.__class__.__name__}); run once with internet, set HF_HOME to a cache that holds it, "
        "or pass a local folder with the AutoencoderKL files (config.json + weights)")


def load_vae(name: str = DEFAULT_VAE, device=None, dtype=None, local_files_only: bool = False,
             cache_dir=None) -> LatentVAE:
    """`AutoencoderKL.from_pretrained(name)` (hub id or folder) wrapped as a LatentVAE; "tiny" = tiny_vae().

    Tries the local cache first, so an offline machine that has the files never touches the network."""
    if name == "tiny":
        return LatentVAE(tiny_vae(), name="tiny").to(device, dtype)
    from diffusers import AutoencoderKL
    if _looks_like_path(name) and not Path(name).expanduser().is_dir():
        raise FileNotFoundError(f"VAE folder {name} does not exist; pass a folder with config.json + weights "
                                f"or a hub id such as {DEFAULT_VAE}")
    folder = Path(name).expanduser()
    if folder.is_dir():
        try:
            model = AutoencoderKL.from_pretrained(str(folder), low_cpu_mem_usage=False)
        except (OSError, ValueError) as err:
            raise FileNotFoundError(f"VAE folder {folder} holds no loadable AutoencoderKL ({err.__class__.__name__}); "
                                    "it needs config.json + diffusion_pytorch_model.safetensors") from err
        return LatentVAE(model, name=name).to(device, dtype)
    for offline in (True,) if local_files_only else (True, False):    # the local cache first
        try:
            model = AutoencoderKL.from_pretrained(name, local_files_only=offline, cache_dir=cache_dir,
                                                  low_cpu_mem_usage=False)
            return LatentVAE(model, name=name).to(device, dtype)
        except (OSError, ValueError) as err:
            last = err
    raise _offline_error(name, last) from last


def decode_if_latent(model, x: torch.Tensor, decoder: str = "mse") -> torch.Tensor:
    """Latent samples (4 channels) → pixels in [-1, 1] through an SD-VAE decoder; pixel samples pass through.

    decoder: "mse" (sd-vae-ft-mse, as the official `infer_mdt.py`), "ema" (sd-vae-ft-ema, the official
    FID script's default), a hub id or local folder, or "tiny" (tests). Both SD decoders share the encoder
    that made the training latents; only the decoder was fine-tuned differently."""
    if model.in_channels != 4:
        return x
    return _decoder(VAE_DECODERS.get(decoder, decoder), str(x.device)).decode(x).float().clamp(-1, 1)


@functools.lru_cache(maxsize=2)
def _decoder(name: str, device: str) -> LatentVAE:
    """One loaded VAE per (decoder, device) for the process: `sample-fid` decodes shard after shard (782 at
    50,000 images), and reading the SD-VAE from disk for each was wasted time."""
    return load_vae(name, device=device)
