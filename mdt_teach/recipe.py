"""What a run trains with: `TrainConfig` (every knob), the official recipes, their checks, and the optimizer.

`resolve` fills what was not given from the profile (`config.setup`) and the model's recipe; `validate`
turns every setting that cannot run into one sentence before anything is created. The recipes follow the
official run scripts (`scripts/*.sh` of sail-sg/MDT: MDTv2 trains with Adan, lr 5e-4 for S/2 and 3e-4
above, gradient clipping at 1 and Min-SNR-5; DiT with AdamW 1e-4, `train.py` of facebookresearch/DiT).
The tiny presets use the toy recipe of `docs/toy_recipe.md`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import torch

from .config import RunConfig
from .data import WORLDS, world_version
from .diffusion import LOSS_WEIGHTINGS
from .model_config import MODEL_PRESETS
from .optim import Adan
from .same_settings import refuse_other_settings
from .sampling import METHODS, space_timesteps

MAIN_JOB_STEPS = 1000   # `mdt-teach train` without --steps or --minutes: ~8 min of training + the final evaluation
                        # in <= 10 min on 2 cores (data/main_job.json); fixed in steps, so the run is the same anywhere
DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16",
               "float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}
RESUME_KEEPS = ("steps", "minutes", "ckpt_every", "keep", "sample_every", "eval_every", "eval_samples",
                "grid_samples", "progress", "num_workers", "threads", "compile", "deterministic", "out", "resume")
RESUME_OVERRIDES = ("lr", "max_grad_norm")
LR_SCHEDULES = ("constant", "cosine")   # may change on resume when given (e.g. after a NaN)


@dataclass
class TrainConfig:
    """Every knob of a run; None means "the model's recipe" (see `recipe`) or "the profile's default"."""

    model: str | None = None          # None: the profile's model (tiny: MDTv2-T/4)
    data: str = "smileys"             # a smileys world (smileys, smileys-classic, …) | digits | PATH (folder or cache)
    world: str | None = None          # set by `resolve`: the smileys world and its version, e.g. "smileys@2"
    image_size: int | None = None     # pixel side of an image folder (None: the profile's, 256 in full)
    vae: str | None = None            # latent profiles on an image folder: the VAE that encodes every batch
                                      # on the fly, flips included (None: stabilityai/sd-vae-ft-mse)
    steps: int | None = None          # None: train until `minutes` runs out
    batch_size: int | None = None     # GLOBAL batch over all ranks and accumulation shards
    out: str | None = None            # run folder; default runs/<model>-<data>-<time>
    seed: int = 0
    profile: str | None = None
    dtype: str | None = None          # float32 | float16 | bfloat16; None: the profile's
    minutes: float | None = None      # training-time budget of this session (grids and evals not counted)
    resume: bool = False
    opt: str | None = None            # adan | adamw
    lr: float | None = None
    betas: tuple | None = None
    weight_decay: float = 0.0
    max_grad_norm: float | None = None
    weighting: str | None = None      # none | min_snr | soft_min_snr | p2
    masked_pass: bool = True          # MDT models: add the masked pass (False: the full pass only, as DiT)
    ema_decay: float | None = None
    ema_warmup: bool | None = None    # decay_k = min(decay, (1 + k)/(10 + k))
    warmup_steps: int = 0             # linear lr warm-up (official: none)
    lr_schedule: str = "constant"     # constant (official) | cosine: decays to 0 at `steps` (needs --steps)
    grad_accum: int = 1               # shards per rank and step
    compile: bool = False
    zero: bool = False                # shard optimizer state (ZeroRedundancyOptimizer)
    deterministic: bool = False       # deterministic CUDA kernels (docs/reproducibility.md); the CPU always is
    ckpt_every: int | None = None     # None: the profile's (500; full: 10,000, as the official run)
    keep: int = 3
    sample_every: int = 500           # EMA sample grid every k steps (0: only at the end)
    eval_every: int = 0               # smileys: two-eyes + FD every k steps (0: only at the end)
    eval_samples: int = 256           # samples for the final evaluation (0: none)
    grid_samples: int = 32            # images in each sample grid (0: none)
    sample_steps: str = "50"          # respacing for grids and evaluation (data/sampler_comparison.json
    sample_method: str = "ddpm"       # compares samplers on the main job's model)
    cfg_scale: float = 1.0
    num_workers: int = 0              # DataLoader workers for image folders and latent caches
    threads: int | None = None        # torch CPU threads per process (None: the profile's, split per rank)
    progress: bool = True
    model_args: dict = field(default_factory=dict)   # build_model overrides, e.g. depth=2


def recipe(model: str, opt: str | None = None) -> dict:
    """The official optimisation recipe of a preset; tiny presets get the toy recipe.

    MDTv2: Adan, lr 5e-4 (S/2) or 3e-4, max_grad_norm 1, Min-SNR-5. MDT v1: AdamW 3e-4. DiT: AdamW 1e-4.
    EMA 0.9999 from step 0. Tiny (a deviation, docs/toy_recipe.md): lr 1e-3, EMA 0.999 with warm-up, and
    β2 0.99 whenever the optimizer is AdamW. MDTv2 tiny: AdamW unless `opt` asks for Adan, at lr 4e-3 (the
    best of 2e-3, 3e-3, 4e-3 and 6e-3 in the relational world's pilots, data/recipe_pilots.json). Clipping
    at 1 and Min-SNR-5 stay.
    """
    if model not in MODEL_PRESETS:
        raise ValueError(f"unknown model {model!r}; valid names: {', '.join(MODEL_PRESETS)}")
    family = MODEL_PRESETS[model]["family"]
    if family == "MDTv2":
        out = dict(opt="adan", lr=5e-4 if "-S/" in model else 3e-4, weighting="min_snr", max_grad_norm=1.0)
    else:
        out = dict(opt="adamw", lr=3e-4 if family == "MDT" else 1e-4, weighting="none", max_grad_norm=0.0)
    out.update(ema_decay=0.9999, ema_warmup=False, betas=None)
    if "-T/" in model:
        chosen = opt or ("adamw" if family == "MDTv2" else out["opt"])
        toy_lr = 4e-3 if family == "MDTv2" and chosen == "adamw" else 1e-3
        out.update(opt=chosen, lr=toy_lr, ema_decay=0.999, ema_warmup=True,
                   betas=(0.9, 0.99) if chosen == "adamw" else None)
    return out


def resolve(cfg: TrainConfig, run: RunConfig) -> TrainConfig:
    """Fill every None from the profile and the model's recipe (`validate` checks the result)."""
    model = cfg.model or run.model
    filled = {k: v for k, v in recipe(model, cfg.opt).items() if getattr(cfg, k) is None}
    dtype = DTYPE_NAMES.get(cfg.dtype, cfg.dtype) if cfg.dtype else run.dtype
    batch = run.batch_size if cfg.batch_size is None else cfg.batch_size
    world = world_version(cfg.data) if cfg.data in WORLDS else None
    ckpt_every = run.ckpt_every if cfg.ckpt_every is None else cfg.ckpt_every
    cfg = replace(cfg, model=model, batch_size=batch, dtype=dtype, world=world, ckpt_every=ckpt_every, **filled)
    if cfg.steps is None and cfg.minutes is None:
        cfg = replace(cfg, steps=MAIN_JOB_STEPS)
    return cfg


def _at_least(name: str, value, low) -> None:
    """`value` ≥ `low`, or one sentence naming the flag."""
    if value is not None and not value >= low:
        raise ValueError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")


def validate(cfg: TrainConfig, world_size: int = 1) -> None:
    """One clear ValueError for any setting that cannot run (called before any file or process group)."""
    for name in ("steps", "batch_size", "grad_accum", "ckpt_every", "keep", "threads", "image_size"):
        _at_least(name, getattr(cfg, name), 1)
    for name in ("sample_every", "eval_every", "eval_samples", "grid_samples", "num_workers", "warmup_steps",
                 "weight_decay", "max_grad_norm", "seed"):
        _at_least(name, getattr(cfg, name), 0)
    if cfg.minutes is not None and not (cfg.minutes > 0 and math.isfinite(cfg.minutes)):
        raise ValueError(f"--minutes must be a positive number, got {cfg.minutes}")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise ValueError(f"--lr must be a positive number, got {cfg.lr}")
    if cfg.eval_samples == 1:
        raise ValueError("--eval-samples 1 is too few for a Fréchet distance; use 0 (no evaluation) or at least 2")
    shards = world_size * cfg.grad_accum
    if cfg.batch_size % shards:
        raise ValueError(f"global batch {cfg.batch_size} is not divisible by {world_size} process(es) × "
                         f"{cfg.grad_accum} accumulation step(s); use a multiple of {shards}")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr schedule {cfg.lr_schedule!r}; use one of {', '.join(LR_SCHEDULES)}")
    if cfg.lr_schedule == "cosine" and cfg.steps is None:
        raise ValueError("--lr-schedule cosine needs --steps: the schedule is fixed in steps at the start (so a "
                         "resumed run continues it exactly); give --steps N")
    if cfg.opt not in ("adan", "adamw"):
        raise ValueError(f"unknown optimizer {cfg.opt!r}; use adan or adamw")
    if cfg.dtype not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"unknown dtype {cfg.dtype!r}; use float32 (fp32), float16 (fp16) or bfloat16 (bf16)")
    if cfg.weighting not in LOSS_WEIGHTINGS:
        raise ValueError(f"unknown loss weighting {cfg.weighting!r}; use one of {', '.join(LOSS_WEIGHTINGS)}")
    if cfg.sample_method not in METHODS:
        raise ValueError(f"unknown sampler {cfg.sample_method!r}; use one of {', '.join(METHODS)}")
    space_timesteps(1000, cfg.sample_steps)   # a bad --sample-steps fails now, not at the first grid
    if not (cfg.ema_decay is None or 0 <= cfg.ema_decay < 1):
        raise ValueError(f"EMA decay {cfg.ema_decay} must lie in [0, 1)")
    if not cfg.masked_pass and MODEL_PRESETS[cfg.model]["family"] == "DiT":
        raise ValueError(f"{cfg.model} has no masked pass to switch off; masked_pass=False is for MDT models")


def config_from_dict(saved: dict) -> TrainConfig:
    """A TrainConfig from its JSON / checkpoint form (tuples come back as lists)."""
    names = {f.name for f in fields(TrainConfig)}
    kwargs = {k: v for k, v in saved.items() if k in names}
    if kwargs.get("betas") is not None:
        kwargs["betas"] = tuple(kwargs["betas"])
    return TrainConfig(**kwargs)


def check_same_world(saved: TrainConfig, out: str) -> None:
    """A run continues on the world it was trained on: refuse (one sentence) when `saved.data` names another world
    (or another version of it) today. Runs from before worlds were recorded trained on version 1."""
    if saved.data not in WORLDS and saved.world is None:
        return
    was = saved.world or f"{saved.data}@1"
    now = world_version(saved.data) if saved.data in WORLDS else "nothing"
    if was != now:
        raise ValueError(f"{out} was trained on the world {was}, but --data {saved.data} is {now} today; a run "
                         "cannot change worlds: start a new run with another --out")


def merge_for_resume(given: TrainConfig, saved: TrainConfig, out: str) -> TrainConfig:
    """On resume the run's saved config holds; only RESUME_KEEPS and (when given) RESUME_OVERRIDES change."""
    defaults = TrainConfig()
    asked = {f.name: getattr(given, f.name) for f in fields(TrainConfig)            # what the command line set
             if f.name not in RESUME_KEEPS + RESUME_OVERRIDES and getattr(given, f.name) != getattr(defaults, f.name)}
    refuse_other_settings(out, {k: getattr(saved, k) for k in asked}, asked,
                          "drop those flags to resume, or start a new run with another --out")
    check_same_world(saved, out)
    keep = {k: getattr(given, k) for k in RESUME_KEEPS}
    if keep["ckpt_every"] is None:                      # not given: the run's own cadence
        keep["ckpt_every"] = saved.ckpt_every
    keep.update({k: getattr(given, k) for k in RESUME_OVERRIDES if getattr(given, k) is not None})
    if given.steps is None and given.minutes is None:  # no new budget: the run's own target
        keep.update(steps=saved.steps, minutes=saved.minutes)
    if saved.lr_schedule == "cosine" and keep["steps"] != saved.steps:
        raise ValueError(f"{out} decays its lr over {saved.steps} steps (--lr-schedule cosine), fixed at the start; "
                         f"resume without --steps (or with --steps {saved.steps})")
    return replace(saved, **{**keep, "out": out})


# ----------------------------------------------------------------------------------------------
# The optimizer the recipe names
# ----------------------------------------------------------------------------------------------

def clips_in_trainer(cfg: TrainConfig) -> bool:
    """Clip in the trainer, unless Adan does it itself. Under ZeRO each rank's Adan holds one shard, so its own
    clipping would use the shard's norm (what the official code does); we clip on the true global norm."""
    return bool(cfg.max_grad_norm) and (cfg.zero or cfg.opt != "adan")


def make_optimizer(params: list, cfg: TrainConfig, sharded: bool = False):
    """Adan (MDTv2) or AdamW (MDT v1, DiT), wrapped in ZeroRedundancyOptimizer when `sharded`."""
    kwargs = dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.betas is not None:
        kwargs["betas"] = tuple(cfg.betas)
    if cfg.opt == "adan":
        cls = Adan
        kwargs["max_grad_norm"] = 0.0 if clips_in_trainer(cfg) else float(cfg.max_grad_norm or 0.0)
    else:
        cls = torch.optim.AdamW
    if sharded:
        from torch.distributed.optim import ZeroRedundancyOptimizer

        return ZeroRedundancyOptimizer(params, optimizer_class=cls, **kwargs)
    return cls(params, **kwargs)


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Constant lr (official), or cosine-decayed to 0 over `steps` (lr · ½(1 + cos(π · step / steps))), with an
    optional linear warm-up over `warmup_steps`. A function of the step alone, so a resumed run gets the same."""
    lr = cfg.lr
    if cfg.lr_schedule == "cosine":
        lr *= 0.5 * (1.0 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps))
    if cfg.warmup_steps > 0:
        lr *= min(1.0, (step + 1) / cfg.warmup_steps)
    return lr
