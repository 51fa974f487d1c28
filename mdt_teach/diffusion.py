"""Gaussian diffusion as in ADM / DiT / MDT: schedule, q-sample, posterior, learned-range variance, VLB,
timestep loss weights and the training objective (one pass for DiT, unmasked + masked pass for MDT).

Everything follows the official `masked_diffusion/gaussian_diffusion.py` (`GaussianDiffusion`, its
`training_losses` and `p_mean_variance`): ε-prediction, LEARNED_RANGE variance, loss = w_t·mse + vb with the
mean inside vb built from a detached ε̂. Schedules are float64 numpy arrays; per-timestep coefficients are
picked with `extract` and cast to float32, as the official code does.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

LN2 = math.log(2.0)
DECODER_BIN_HALF_WIDTH = 1.0 / 255.0  # pixels in [-1, 1] have 256 levels: bins of width 2/255


# ---------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------

def linear_betas(num_timesteps: int = 1000) -> np.ndarray:
    """Linear β schedule of Ho et al. 2020, endpoints scaled by 1000/T (ADM `get_named_beta_schedule('linear')`)."""
    scale = 1000.0 / num_timesteps
    return np.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=np.float64)


def extract(arr: np.ndarray, t: torch.Tensor, shape: tuple) -> torch.Tensor:
    """arr[t] per sample as float32, shaped (B, 1, ..., 1) to broadcast against `shape` (ADM `_extract_into_tensor`)."""
    values = torch.as_tensor(arr, device=t.device)[t].float()  # (B,)
    return values.view(-1, *([1] * (len(shape) - 1)))  # (B, 1, 1, 1)


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension but the batch."""
    return x.mean(dim=tuple(range(1, x.ndim)))  # (B,)


def randn(shape, generator: torch.Generator | None = None, device=None,
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """N(0, I) noise drawn through `generator` on the generator's own device, then moved to `device`.

    `generator` may also be a list of B generators, one per image: row i of the noise is then drawn from
    generator i alone, so it does not depend on which other images share the batch (`mdt-teach
    sample-fid`). A batch of k·B rows (CFG's doubled batch [z; z]) repeats the B rows k times."""
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    if isinstance(generator, (list, tuple)):
        if shape[0] % len(generator):
            raise ValueError(f"{len(generator)} per-image generators cannot fill a batch of {shape[0]}")
        rows = torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=g.device, dtype=dtype)
                            for g in generator]).to(device)
        return rows.repeat((shape[0] // len(generator),) + (1,) * (len(shape) - 1))
    return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(device)


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) elementwise, in nats (IDDPM `normal_kl`)."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Φ(x) ≈ ½(1 + tanh(√(2/π)(x + 0.044715x³))), the tanh approximation the official code uses."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor,
                                        half_width: float = DECODER_BIN_HALF_WIDTH) -> torch.Tensor:
    """log P(x) of a Gaussian integrated over x's bin of half-width 1/255; the edge bins extend to ±∞ (DDPM eq. 13)."""
    inv_std = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_std * (x - means + half_width))
    cdf_min = approx_standard_normal_cdf(inv_std * (x - means - half_width))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


# ---------------------------------------------------------------------------------------------------
# The diffusion process
# ---------------------------------------------------------------------------------------------------

class GaussianDiffusion:
    """The DDPM forward process and its Gaussian posterior, with float64 numpy coefficient arrays (ADM)."""

    def __init__(self, betas: np.ndarray | None = None, num_timesteps: int = 1000):
        if betas is None:
            betas = linear_betas(num_timesteps)
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or not ((betas > 0).all() and (betas <= 1).all()):
            raise ValueError("betas must be a 1-D array of values in (0, 1]; use linear_betas(T) or leave it None")
        self.betas = betas
        self.num_timesteps = int(betas.shape[0])
        self.timestep_map = np.arange(self.num_timesteps)  # index fed to the model; respacing remaps it
        self.original_num_steps = self.num_timesteps
        self._derive(betas)

    def _derive(self, betas: np.ndarray) -> None:
        """Every coefficient of q(x_t|x_0) and q(x_{t-1}|x_t,x_0) from β (DDPM eqs. 4, 6, 7)."""
        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas)  # ᾱ_t
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])  # ᾱ_{t-1}, ᾱ_{-1} = 1
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1.0)
        self.snr = self.alphas_cumprod / (1.0 - self.alphas_cumprod)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)  # β̃_t
        # β̃_0 = 0, so the log is clipped by repeating β̃_1 at t = 0 (official)
        clipped = np.append(self.posterior_variance[1], self.posterior_variance[1:]) \
            if self.num_timesteps > 1 else self.posterior_variance
        with np.errstate(divide="ignore"):
            self.posterior_log_variance_clipped = np.log(clipped)
        self.log_betas = np.log(betas)
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)

    # -- timesteps ------------------------------------------------------------------------------------

    def timesteps(self, t, batch: int | None = None, device=None) -> torch.Tensor:
        """Check and convert t (int, list or tensor) to an int64 tensor of shape (B,) with 0 ≤ t < T.

        Every method below starts here. Values are checked wherever that is free: numbers, lists and CPU
        tensors; a tensor already on a GPU is checked for dtype and shape only (reading its values back would
        stall the device at every call), so the trainer and the samplers build them in range.
        """
        on_device = isinstance(t, torch.Tensor) and t.device.type != "cpu"
        t = torch.as_tensor(t)
        if t.is_floating_point() or t.is_complex():
            raise ValueError(f"timesteps must be integers in [0, {self.num_timesteps - 1}], got dtype {t.dtype}")
        t = t.long()
        if t.ndim == 0:
            t = t.expand(batch or 1)
        if batch is not None and t.shape != (batch,):
            raise ValueError(f"expected one timestep per sample, shape ({batch},); got {tuple(t.shape)}")
        if not on_device and t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_timesteps):
            raise ValueError(f"timestep out of range: got values in [{int(t.min())}, {int(t.max())}], "
                             f"allowed 0..{self.num_timesteps - 1}")
        return t if device is None else t.to(device)

    # -- forward process and posterior ----------------------------------------------------------------

    def q_sample(self, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε (DDPM eq. 4)."""
        t = self.timesteps(t, x0.shape[0], x0.device)
        return (extract(self.sqrt_alphas_cumprod, t, x0.shape) * x0
                + extract(self.sqrt_one_minus_alphas_cumprod, t, x0.shape) * noise)

    def q_posterior_mean_variance(self, x0: torch.Tensor, x_t: torch.Tensor, t):
        """Mean c1·x_0 + c2·x_t, variance β̃_t and clipped log β̃_t of q(x_{t-1}|x_t, x_0) (DDPM eqs. 6–7)."""
        t = self.timesteps(t, x0.shape[0], x0.device)
        mean = (extract(self.posterior_mean_coef1, t, x_t.shape) * x0
                + extract(self.posterior_mean_coef2, t, x_t.shape) * x_t)
        return (mean, extract(self.posterior_variance, t, x_t.shape),
                extract(self.posterior_log_variance_clipped, t, x_t.shape))

    def predict_x0_from_eps(self, x_t: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """x̂_0 = √(1/ᾱ_t)·x_t − √(1/ᾱ_t − 1)·ε̂ (DDPM eq. 15), no clipping."""
        t = self.timesteps(t, x_t.shape[0], x_t.device)
        return (extract(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t
                - extract(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape) * eps)

    def predict_eps_from_x0(self, x_t: torch.Tensor, t, x0: torch.Tensor) -> torch.Tensor:
        """ε = (√(1/ᾱ_t)·x_t − x̂_0) / √(1/ᾱ_t − 1), the inverse of `predict_x0_from_eps` (used by DDIM)."""
        t = self.timesteps(t, x_t.shape[0], x_t.device)
        return ((extract(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t - x0)
                / extract(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape))

    # -- the model's reverse step ---------------------------------------------------------------------

    def split_output(self, model_output: torch.Tensor, channels: int):
        """Split (B, 2C, H, W) into ε̂ and v (learn_sigma), or return (ε̂, None) for a (B, C, H, W) output."""
        if model_output.shape[1] == 2 * channels:
            eps, v = model_output.split(channels, dim=1)  # (B, C, H, W) each
            return eps, v
        if model_output.shape[1] == channels:
            return model_output, None
        raise ValueError(f"model output has {model_output.shape[1]} channels; expected {channels} "
                         f"(fixed variance) or {2 * channels} (learn_sigma)")

    def model_log_variance(self, v: torch.Tensor | None, t, shape: tuple) -> torch.Tensor:
        """LEARNED_RANGE: log σ² = frac·log β_t + (1−frac)·log β̃_t (clipped), frac = (v+1)/2 (IDDPM eq. 15).

        β and β̃ are those of *this* process (the respaced one when sampling). With no v (learn_sigma=False)
        the official FIXED_LARGE variance is used: β_t, with β̃_1 at t = 0.
        """
        t = self.timesteps(t, shape[0], None if v is None else v.device)
        if v is None:
            fixed_large = np.log(np.append(self.posterior_variance[1], self.betas[1:]))
            return extract(fixed_large, t, shape).expand(shape)
        frac = (v + 1) / 2
        return (frac * extract(self.log_betas, t, shape)
                + (1 - frac) * extract(self.posterior_log_variance_clipped, t, shape))

    def p_mean_variance(self, model_output: torch.Tensor, x_t: torch.Tensor, t,
                        clip_denoised: bool = False) -> dict[str, torch.Tensor]:
        """p(x_{t-1}|x_t) from the model's raw output: mean, log_variance, pred_x0, eps (ADM `p_mean_variance`).

        The official sampler never clips x̂_0 (`clip_denoised=False` in `scripts/image_sample.py` and `infer_mdt.py`).
        """
        t = self.timesteps(t, x_t.shape[0], x_t.device)
        eps, v = self.split_output(model_output, x_t.shape[1])
        log_variance = self.model_log_variance(v, t, x_t.shape)
        pred_x0 = self.predict_x0_from_eps(x_t, t, eps)
        if clip_denoised:
            pred_x0 = pred_x0.clamp(-1, 1)
        mean, _, _ = self.q_posterior_mean_variance(pred_x0, x_t, t)
        return {"mean": mean, "log_variance": log_variance, "pred_x0": pred_x0, "eps": eps}

    def vb_bits_per_dim(self, model_output: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        """One VLB term per sample in bits/dim: KL(q(x_{t-1}|x_t,x_0) ‖ p(x_{t-1}|x_t)) for t > 0,
        the discretised-Gaussian decoder NLL −log p(x_0|x_1) at t = 0 (IDDPM `_vb_terms_bpd`)."""
        t = self.timesteps(t, x0.shape[0], x0.device)
        true_mean, _, true_log_variance = self.q_posterior_mean_variance(x0, x_t, t)
        p = self.p_mean_variance(model_output, x_t, t)
        kl = mean_flat(normal_kl(true_mean, true_log_variance, p["mean"], p["log_variance"])) / LN2  # (B,)
        nll = -mean_flat(discretized_gaussian_log_likelihood(x0, p["mean"], 0.5 * p["log_variance"])) / LN2  # (B,)
        return torch.where(t == 0, nll, kl)


# ---------------------------------------------------------------------------------------------------
# Timestep loss weighting (multiplies the ε-MSE only; vb is never weighted)
# ---------------------------------------------------------------------------------------------------

def weight_none(snr: torch.Tensor) -> torch.Tensor:
    """w_t = 1: DiT and MDT v1 (plain L_simple + vb)."""
    return torch.ones_like(snr)


def weight_min_snr(snr: torch.Tensor, k: float = 5.0) -> torch.Tensor:
    """Min-SNR-γ for ε-prediction, w_t = min(SNR_t, k)/SNR_t, k = 5 (Hang et al. 2023, ICCV; MDTv2's loss)."""
    return torch.clamp(snr, max=k) / snr


def weight_soft_min_snr(snr: torch.Tensor, k: float = 5.0) -> torch.Tensor:
    """Soft-Min-SNR for ε-prediction, w_t = k/(SNR_t + k).

    Crowson et al. 2024 (Hourglass Diffusion Transformers, arXiv:2401.11605; k-diffusion 'soft-min-snr')
    replace min(SNR, k) on the x_0 loss by the smooth harmonic minimum (1/SNR + 1/k)^-1; the ε-MSE equals
    SNR times the x_0-MSE, so its weight is that divided by SNR. There k = 1/σ_data²; here k = 5 to compare.
    """
    return k / (snr + k)


def weight_p2(snr: torch.Tensor, k: float = 1.0, gamma: float = 1.0) -> torch.Tensor:
    """P2 weighting, w_t = 1/(k + SNR_t)^γ on L_simple (Choi et al. 2022, CVPR, "Perception Prioritized Training")."""
    return (k + snr) ** -gamma


LOSS_WEIGHTINGS: dict[str, Callable[..., torch.Tensor]] = {
    "none": weight_none,
    "min_snr": weight_min_snr,
    "soft_min_snr": weight_soft_min_snr,
    "p2": weight_p2,
}


def _weighting_fn(name) -> Callable[..., torch.Tensor]:
    """Look a weighting up by name (a callable snr → w passes through)."""
    if callable(name):
        return name
    if name not in LOSS_WEIGHTINGS:
        raise ValueError(f"unknown loss weighting {name!r}; use one of {', '.join(LOSS_WEIGHTINGS)}")
    return LOSS_WEIGHTINGS[name]


def loss_weight(name, t, diffusion: GaussianDiffusion, **params) -> torch.Tensor:
    """Per-sample weight w_t (B,) float32 of the ε-MSE for the named weighting; SNR_t = ᾱ_t/(1−ᾱ_t)."""
    fn = _weighting_fn(name)
    t = diffusion.timesteps(t, device=t.device if isinstance(t, torch.Tensor) else None)
    return _loss_weight(fn, t, diffusion, **params)


def _loss_weight(fn, t: torch.Tensor, diffusion: GaussianDiffusion, **params) -> torch.Tensor:
    """`loss_weight` for a checked t: the weighting evaluated on SNR_t in float64, returned as float32."""
    snr = torch.as_tensor(diffusion.snr, device=t.device)[t]  # (B,) float64
    return fn(snr, **params).float()


# ---------------------------------------------------------------------------------------------------
# Training objective
# ---------------------------------------------------------------------------------------------------

def sample_timesteps(batch: int, diffusion: GaussianDiffusion, generator: torch.Generator | None = None,
                     device=None) -> torch.Tensor:
    """t ~ Uniform{0..T−1}, one per sample (ADM `UniformSampler`), drawn through `generator` when given."""
    gen_device = generator.device if generator is not None else device
    t = torch.randint(0, diffusion.num_timesteps, (batch,), generator=generator, device=gen_device)
    return t.to(device)


def _forward(model, x_t: torch.Tensor, t: torch.Tensor, y, enable_mask: bool) -> torch.Tensor:
    """Call the model; `enable_mask=True` is passed only for the masked MDT pass."""
    return model(x_t, t, y, enable_mask=True) if enable_mask else model(x_t, t, y)


def single_pass_loss(model, x0: torch.Tensor, t: torch.Tensor, y, diffusion: GaussianDiffusion,
                     weight: torch.Tensor, noise: torch.Tensor, enable_mask: bool = False) -> dict[str, torch.Tensor]:
    """Per-sample L = w_t·mse + vb of one forward pass (official `training_losses`, hybrid loss).

    vb sees ε̂ detached, so only the variance head v learns from it (IDDPM §3.1).
    """
    x_t = diffusion.q_sample(x0, t, noise)
    eps, v = diffusion.split_output(_forward(model, x_t, t, y, enable_mask).float(), x0.shape[1])
    mse = mean_flat((noise - eps) ** 2)  # (B,)
    if v is None:
        vb = torch.zeros_like(mse)
    else:
        frozen = torch.cat([eps.detach(), v], dim=1)  # (B, 2C, H, W)
        vb = diffusion.vb_bits_per_dim(frozen, x0, x_t, t)  # (B,)
    return {"loss": weight * mse + vb, "mse": mse, "vb": vb}


def _is_mdt(model) -> bool:
    """True for MDT/MDTv2, also through a DistributedDataParallel wrapper (`.module`)."""
    return bool(getattr(getattr(model, "module", model), "is_mdt", False))


def quartile_means(values: torch.Tensor, t: torch.Tensor, num_timesteps: int) -> torch.Tensor:
    """Mean of `values` per timestep quartile q = ⌊4t/T⌋, shape (4,), NaN for an empty quartile (no sync)."""
    q = (4 * t) // num_timesteps  # (B,)
    sums = torch.zeros(4, device=values.device).index_add_(0, q, values.float())
    counts = torch.zeros(4, device=values.device).index_add_(0, q, torch.ones_like(values, dtype=torch.float))
    return sums / counts


def training_loss(model, x0: torch.Tensor, y, diffusion: GaussianDiffusion, weighting="none", t=None,
                  generator: torch.Generator | None = None, masked_pass: bool = True) -> dict[str, torch.Tensor]:
    """DiT: mean_b(L). MDT/MDTv2: mean_b(L_full) + mean_b(L_masked), 1:1 (`masked_pass=False`: L_full only,
    the race's control that trains MDTv2's architecture as DiT is trained).

    As in the official `masked_diffusion/train_util.py: TrainLoop.forward_backward`, both MDT passes share x_0
    and t; each draws its own noise (through `generator`), and the model draws its own label dropout and mask.
    Returns `loss` (scalar to backward) and detached 0-dim tensors for logging:
    mse, vb (unmasked pass; mse unweighted), m_mse, m_vb (masked pass, NaN for DiT), loss_q0..loss_q3 (the
    per-sample loss averaged per timestep quartile, NaN where no sample fell), and `t`.
    """
    weight_fn = _weighting_fn(weighting)
    batch, device = x0.shape[0], x0.device
    t = sample_timesteps(batch, diffusion, generator, device) if t is None \
        else diffusion.timesteps(t, batch=batch, device=device)
    weight = _loss_weight(weight_fn, t, diffusion)
    full = single_pass_loss(model, x0, t, y, diffusion, weight, randn(x0.shape, generator, device, x0.dtype), False)
    loss, per_sample = full["loss"].mean(), full["loss"].detach()
    nan = torch.full((), float("nan"), device=device)
    logs = {"mse": full["mse"].detach().mean(), "vb": full["vb"].detach().mean(), "m_mse": nan, "m_vb": nan}
    if masked_pass and _is_mdt(model):
        masked = single_pass_loss(model, x0, t, y, diffusion, weight, randn(x0.shape, generator, device, x0.dtype), True)
        loss = loss + masked["loss"].mean()
        per_sample = per_sample + masked["loss"].detach()
        logs.update(m_mse=masked["mse"].detach().mean(), m_vb=masked["vb"].detach().mean())
    quartiles = quartile_means(per_sample, t, diffusion.num_timesteps)
    logs.update({f"loss_q{i}": quartiles[i] for i in range(4)})
    return {"loss": loss, **logs, "t": t}
