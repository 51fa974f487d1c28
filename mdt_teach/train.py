"""The training engine (spec §2.2, §2.5, §6.5): Trainer for DiT / MDT / MDTv2, EMA, atomic checkpoints
with exact resume, and DistributedDataParallel under `torchrun`.

One step: the global batch k (a pure function of the data seed and k) → this rank's shards → for each
shard the global RNG is reseeded from (seed, step, shard) → `diffusion.training_loss` (one pass for
DiT; unmasked + masked pass for MDT, one backward) → clip → optimizer → EMA. Because every random draw
of a step (timesteps, noise, label dropout, mask) is a function of (seed, step, shard), `--resume`
continues bit for bit, and 2 ranks × 1 shard make the same update as 1 rank × 2 accumulated shards.

Departures from the official loop (each one a choice, documented where it is made):
- RNG: one reseed per shard instead of one running stream (same distribution, different numbers).
- Data: a deterministic order (smileys: face i of the world `seed` at stream position i; datasets: a
  seeded permutation per epoch), sharded over ranks; the official loader shuffles and, under torchrun,
  does not shard at all (spec §7.23).
- ZeRO: we clip on the true global gradient norm; the official Adan under ZeRO clips each rank's shard
  by that shard's own norm (spec §2.5).
- Tiny presets: lr 1e-3, EMA 0.999 with warm-up (design.md feasibility study); official is 3e-4/5e-4,
  EMA 0.9999 from step 0. MDTv2 tiny trains with AdamW at 2e-3 (measured better than Adan at toy scale;
  `--opt adan` gives the official optimizer). bf16/fp16 autocast on GPU profiles; the released training is fp32.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist

from .config import RunConfig, capture_rng, restore_rng, seed_everything, setup
from .diffusion import GaussianDiffusion, training_loss

CKPT_PREFIX = "ckpt_"
FORMAT = "mdt_teach.train/1"
RESUME_KEEPS = ("steps", "minutes", "ckpt_every", "keep", "sample_every", "eval_every", "eval_samples",
                "grid_samples", "progress", "num_workers", "threads", "compile", "out", "resume")
MAIN_JOB_MINUTES = 8.3   # training budget of `mdt-teach train` without --steps; final eval + grid fit in 10 min
DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16",
               "float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}
RESUME_OVERRIDES = ("lr", "max_grad_norm")   # may change on resume when given (e.g. after a NaN)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or ±inf; the run stopped without writing a checkpoint."""


# ----------------------------------------------------------------------------------------------
# Configuration and the official recipes
# ----------------------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    """Every knob of a run; None means "the model's recipe" (see `recipe`) or "the profile's default"."""

    model: str | None = None          # None: the profile's model (tiny: MDTv2-T/4)
    data: str = "smileys"             # smileys | digits | PATH (image folder or latent cache)
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
    ema_decay: float | None = None
    ema_warmup: bool | None = None    # decay_k = min(decay, (1 + k)/(10 + k))
    warmup_steps: int = 0             # linear lr warm-up (official: none)
    grad_accum: int = 1               # shards per rank and step
    compile: bool = False
    zero: bool = False                # shard optimizer state (ZeroRedundancyOptimizer)
    ckpt_every: int = 500
    keep: int = 3
    sample_every: int = 500           # EMA sample grid every k steps (0: only at the end)
    eval_every: int = 0               # smileys: two-eyes + FD every k steps (0: only at the end)
    eval_samples: int = 256           # samples for the final evaluation (0: none)
    grid_samples: int = 32            # images in each sample grid (0: none)
    sample_steps: str = "50"          # DDPM steps (respaced) for grids and evaluation: 68% two-eyes on the
                                      # main job's model, against 66% with 100 steps and 60% with DDIM-50
    cfg_scale: float = 1.0
    num_workers: int = 0              # DataLoader workers for image folders and latent caches
    threads: int | None = None        # torch CPU threads per process (None: the profile's, split per rank)
    progress: bool = True
    model_args: dict = field(default_factory=dict)   # build_model overrides, e.g. depth=2


def recipe(model: str, opt: str | None = None) -> dict:
    """The official optimisation recipe of a preset (spec §6.5); tiny presets get the toy recipe.

    MDTv2: Adan, lr 5e-4 (S/2 run.sh) or 3e-4, max_grad_norm 1, Min-SNR-5. MDT v1: AdamW 3e-4.
    DiT: AdamW 1e-4. EMA 0.9999 from step 0. Tiny (deviation, design.md feasibility study): lr 1e-3,
    EMA 0.999 with warm-up, and β2 0.99 whenever the optimizer (the recipe's or `opt`) is AdamW.
    MDTv2 tiny (deviation, measured): AdamW at lr 2e-3 unless `opt` asks for Adan. At ~1000 CPU steps
    AdamW 2e-3 reached 65.6% two-eyes where Adan reached 49.6% (lr 1e-3) and 39.8% (lr 3e-3); the race's
    equal-lr ablation points the same way. Clipping at 1 and Min-SNR-5 stay.
    """
    from .models import MODEL_PRESETS

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
        toy_lr = 2e-3 if family == "MDTv2" and chosen == "adamw" else 1e-3
        out.update(opt=chosen, lr=toy_lr, ema_decay=0.999, ema_warmup=True,
                   betas=(0.9, 0.99) if chosen == "adamw" else None)
    return out


def resolve(cfg: TrainConfig, run: RunConfig) -> TrainConfig:
    """Fill every None from the profile and the model's recipe (`validate` checks the result)."""
    model = cfg.model or run.model
    filled = {k: v for k, v in recipe(model, cfg.opt).items() if getattr(cfg, k) is None}
    dtype = DTYPE_NAMES.get(cfg.dtype, cfg.dtype) if cfg.dtype else run.dtype
    cfg = replace(cfg, model=model, batch_size=cfg.batch_size or run.batch_size, dtype=dtype, **filled)
    if cfg.steps is None and cfg.minutes is None:
        cfg = replace(cfg, minutes=MAIN_JOB_MINUTES)
    return cfg


def validate(cfg: TrainConfig, world_size: int = 1) -> None:
    """One clear ValueError for settings that cannot run."""
    if cfg.steps is not None and cfg.steps <= 0:
        raise ValueError(f"--steps must be a positive number of optimizer steps, got {cfg.steps}")
    if cfg.minutes is not None and cfg.minutes <= 0:
        raise ValueError(f"--minutes must be positive, got {cfg.minutes}")
    if cfg.batch_size <= 0 or cfg.grad_accum <= 0:
        raise ValueError(f"--batch-size ({cfg.batch_size}) and --grad-accum ({cfg.grad_accum}) must be positive")
    shards = world_size * cfg.grad_accum
    if cfg.batch_size % shards:
        raise ValueError(f"global batch {cfg.batch_size} is not divisible by {world_size} process(es) × "
                         f"{cfg.grad_accum} accumulation step(s); use a multiple of {shards}")
    if cfg.opt not in ("adan", "adamw"):
        raise ValueError(f"unknown optimizer {cfg.opt!r}; use adan or adamw")
    if cfg.dtype not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"unknown dtype {cfg.dtype!r}; use float32 (fp32), float16 (fp16) or bfloat16 (bf16)")
    if min(cfg.ckpt_every, cfg.keep) < 1:
        raise ValueError("--ckpt-every and --keep must be at least 1")
    from .diffusion import LOSS_WEIGHTINGS
    from .sampling import space_timesteps

    if cfg.weighting not in LOSS_WEIGHTINGS:
        raise ValueError(f"unknown loss weighting {cfg.weighting!r}; use one of {', '.join(LOSS_WEIGHTINGS)}")
    space_timesteps(1000, cfg.sample_steps)   # a bad --sample-steps fails now, not at the first grid
    if not (cfg.ema_decay is None or 0 <= cfg.ema_decay < 1):
        raise ValueError(f"EMA decay {cfg.ema_decay} must lie in [0, 1)")


def config_from_dict(saved: dict) -> TrainConfig:
    """A TrainConfig from its JSON form (tuples come back as lists)."""
    names = {f.name for f in fields(TrainConfig)}
    kwargs = {k: v for k, v in saved.items() if k in names}
    if kwargs.get("betas") is not None:
        kwargs["betas"] = tuple(kwargs["betas"])
    return TrainConfig(**kwargs)


# ----------------------------------------------------------------------------------------------
# Distributed plumbing (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK)
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 does all file IO."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1


def dist_from_env(env=None) -> DistInfo:
    """Read the torchrun environment without initialising anything (world 1 without torchrun)."""
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", 1))
    return DistInfo(rank=int(env.get("RANK", 0)), world_size=world, local_rank=int(env.get("LOCAL_RANK", 0)),
                    local_world_size=int(env.get("LOCAL_WORLD_SIZE", world)))


def init_distributed(info: DistInfo, device: str, threads: int | None = None) -> torch.device:
    """Join the process group (nccl on GPU, gloo on CPU), pick this rank's device and CPU threads."""
    if device == "cuda":
        torch.cuda.set_device(info.local_rank)
    if info.enabled and not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if device == "cuda" else "gloo")
    if threads is None and device == "cpu" and info.enabled:  # share the cores between the local ranks
        threads = max(1, (os.cpu_count() or 1) // info.local_world_size)
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.device("cuda", info.local_rank) if device == "cuda" else torch.device("cpu")


def all_reduce_(x: torch.Tensor, info: DistInfo, op=None) -> torch.Tensor:
    """In-place all-reduce (sum by default); a no-op in a single process."""
    if info.enabled:
        torch_dist.all_reduce(x, op=op or torch_dist.ReduceOp.SUM)
    return x


def broadcast_object(obj, info: DistInfo):
    """Rank 0's value of `obj` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj, info: DistInfo) -> list:
    """Every rank's `obj`, in rank order, on every rank."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    torch_dist.all_gather_object(out, obj)
    return out


def wrap_ddp(model: torch.nn.Module, device: torch.device):
    """DDP with the official settings (spec §2.5): find_unused_parameters=False works because one backward
    follows both MDT passes; buffers are not re-broadcast each forward; 128 MB buckets."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    no_buffer_sync = ({"forward_sync_buffers": False}
                      if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                      else {"broadcast_buffers": False})
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=False, bucket_cap_mb=128,
                                   gradient_as_bucket_view=True, **no_buffer_sync)


# ----------------------------------------------------------------------------------------------
# Randomness
# ----------------------------------------------------------------------------------------------

def mix_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of the integers `parts` (SplitMix64 chain)."""
    z = 0x9E3779B97F4A7C15
    for part in parts:
        z = (z ^ (int(part) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        z ^= z >> 31
    return z >> 1


def seed_shard(seed: int, step: int, shard: int) -> None:
    """Reseed torch (CPU and CUDA) for one shard of one step: all of its draws follow from (seed, step, shard)."""
    torch.manual_seed(mix_seed(seed, step, shard))


# ----------------------------------------------------------------------------------------------
# Data in a deterministic order: the global batch of step k holds stream positions kB .. kB+B−1
# ----------------------------------------------------------------------------------------------

def shard_positions(step: int, batch_size: int, first_shard: int, num_shards: int, shards_total: int) -> np.ndarray:
    """Stream positions of `num_shards` consecutive shards (of shards_total) of step `step`'s global batch."""
    per = batch_size // shards_total
    start = step * batch_size + first_shard * per
    return np.arange(start, start + num_shards * per)


class SmileyStream:
    """The smileys world as an endless stream: position i is face i of world `seed` (data.smileys_at)."""

    num_classes, in_channels, image_size = 4, 3, 32

    def __init__(self, seed: int):
        self.seed = seed

    def batch(self, positions: np.ndarray):
        """(images (n, 3, 32, 32) in [-1, 1], labels (n,))."""
        from .data import smileys_at

        return smileys_at(positions, seed=self.seed)


class EpochPermutation:
    """Position p of a finite dataset → index perm_e[p mod N] with e = p // N, perm_e seeded by (seed, e)."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self._cache = size, seed, {}

    def __call__(self, positions: np.ndarray) -> list[tuple[int, int]]:
        """(position, dataset index) pairs of the stream positions."""
        out = []
        for p in positions:
            epoch, j = divmod(int(p), self.size)
            if epoch not in self._cache:
                g = torch.Generator().manual_seed(mix_seed(self.seed, epoch, 0xDA7A))
                self._cache = {epoch: torch.randperm(self.size, generator=g).tolist()}
            out.append((int(p), self._cache[epoch][j]))
        return out


class PositionSeeded(torch.utils.data.Dataset):
    """Item (position, index) = dataset[index] with torch reseeded from (seed, position) first, so random
    augmentations (flips) and latent posterior draws are the same in any worker and after a resume."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        position, index = item
        torch.manual_seed(mix_seed(self.seed, position, 0xF11B))
        return self.dataset[index]


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields, step after step from `start_step`, this rank's (position, index) pairs (DataLoader batches)."""

    def __init__(self, size: int, seed: int, batch_size: int, rank: int, shards_per_rank: int,
                 shards_total: int, start_step: int = 0):
        self.order = EpochPermutation(size, seed)
        self.args = (batch_size, rank * shards_per_rank, shards_per_rank, shards_total)
        self.start_step = start_step

    def __iter__(self):
        step = self.start_step
        while True:
            yield self.order(shard_positions(step, *self.args))
            step += 1


class LoaderSource:
    """A finite dataset read through a DataLoader (workers) that follows the deterministic order."""

    def __init__(self, dataset, seed: int, num_workers: int):
        self.dataset, self.seed, self.num_workers = PositionSeeded(dataset, seed), seed, num_workers
        self.num_classes = dataset.num_classes
        self.in_channels = dataset.in_channels
        self.image_size = dataset.image_size
        self._iter, self._next_step, self._key = None, None, None

    def local_batch(self, step: int, batch_size: int, rank: int, shards_per_rank: int, shards_total: int):
        """(x, y) of this rank's shards at `step`; the loader is (re)started when steps jump."""
        key = (batch_size, rank, shards_per_rank, shards_total)
        if self._iter is None or step != self._next_step or key != self._key:
            sampler = StepBatchSampler(len(self.dataset), self.seed, batch_size, rank, shards_per_rank,
                                       shards_total, start_step=step)
            loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.num_workers,
                                                 persistent_workers=self.num_workers > 0)
            self._iter, self._key = iter(loader), key
        self._next_step = step + 1
        x, y = next(self._iter)[:2]
        return x, torch.as_tensor(y).long()


def make_source(data: str, seed: int, num_workers: int = 0, image_size: int = 32):
    """The batch source for --data: the smileys stream, or a dataset (digits, image folder, latent cache)."""
    if data == "smileys":
        return SmileyStream(seed)
    from .data import make_dataset

    return LoaderSource(make_dataset(data, image_size=None if data == "digits" else image_size), seed, num_workers)


def local_batch(source, step: int, batch_size: int, info: DistInfo, grad_accum: int):
    """This rank's grad_accum shards of the global batch of `step`, concatenated: (x, y)."""
    shards_total = info.world_size * grad_accum
    if isinstance(source, LoaderSource):
        return source.local_batch(step, batch_size, info.rank, grad_accum, shards_total)
    return source.batch(shard_positions(step, batch_size, info.rank * grad_accum, grad_accum, shards_total))


# ----------------------------------------------------------------------------------------------
# EMA
# ----------------------------------------------------------------------------------------------

class EMA:
    """θ_ema ← d·θ_ema + (1 − d)·θ after every optimizer step (official `update_ema`, rate 0.9999).

    With warm-up, d_k = min(d, (1 + k)/(10 + k)) so short runs are not dominated by the zero-initialised
    weights (design.md feasibility notes; the official EMA has no warm-up).
    """

    def __init__(self, model: torch.nn.Module, decay: float, warmup: bool):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup = decay, warmup

    def decay_at(self, step: int) -> float:
        """The decay used for the update after optimizer step number `step` (0-based)."""
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Move the average toward the current weights; buffers are copied."""
        d = self.decay_at(step)
        ema_params, params = list(self.model.parameters()), [p.detach() for p in model.parameters()]
        torch._foreach_mul_(ema_params, d)
        torch._foreach_add_(ema_params, params, alpha=1 - d)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)


# ----------------------------------------------------------------------------------------------
# Checkpoints: written to a temporary name, then renamed; the last k are kept
# ----------------------------------------------------------------------------------------------

def atomic_save(obj, path: Path) -> None:
    """torch.save to `path.tmp`, fsync, then os.replace: a crash leaves the old files intact."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def checkpoint_path(folder: Path, step: int) -> Path:
    """ckpt/ckpt_0001234.pt."""
    return Path(folder) / "ckpt" / f"{CKPT_PREFIX}{step:07d}.pt"


def list_checkpoints(folder: Path) -> list[Path]:
    """Finished checkpoints of a run folder, oldest first (temporary files are ignored)."""
    ckpt_dir = Path(folder) / "ckpt"
    if not ckpt_dir.is_dir():
        return []
    return sorted(p for p in ckpt_dir.glob(f"{CKPT_PREFIX}*.pt"))


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints."""
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Read one of our checkpoints, memory-mapped so the ranks of a node share the pages (a clear error for a
    missing or foreign file). Keep map_location on the CPU when the RNG states are to be restored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass a ckpt_*.pt file of a run folder")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False, mmap=True)
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file: one clear line
        raise ValueError(f"cannot read {path} as a torch checkpoint ({err.__class__.__name__}); "
                         "pick an older ckpt_*.pt of the run") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not an mdt_teach training checkpoint; official weights load with "
                         "mdt_teach.compat.load_official")
    return state


def latest_checkpoint(folder: Path) -> Path:
    """The newest checkpoint of a run folder, or a FileNotFoundError saying how to start instead."""
    found = list_checkpoints(folder)
    if not found:
        raise FileNotFoundError(f"no checkpoint in {folder}/ckpt to resume from; start without --resume")
    return found[-1]


def find_resumable(root: Path = Path("runs")) -> Path:
    """The most recently modified run folder under `root` that holds a checkpoint."""
    runs = [p for p in Path(root).glob("*") if list_checkpoints(p)] if Path(root).is_dir() else []
    if not runs:
        raise FileNotFoundError(f"no run with a checkpoint under {root}/; pass --out RUN_FOLDER with --resume")
    return max(runs, key=lambda p: latest_checkpoint(p).stat().st_mtime)


def truncate_jsonl(path: Path, step: int) -> None:
    """Drop the lines of a step log written after `step` (by a run that was killed after its checkpoint)."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= step]
    path.write_text("".join(ln + "\n" for ln in kept))


def _finite_or_none(v):
    """JSON has no NaN: write null instead."""
    return v if isinstance(v, (int, str)) or (v is not None and math.isfinite(v)) else None


# ----------------------------------------------------------------------------------------------
# Optimizer
# ----------------------------------------------------------------------------------------------

def clips_in_trainer(cfg: TrainConfig) -> bool:
    """Clip here, unless Adan does it itself. Under ZeRO each rank's Adan holds one shard, so its own
    clipping would use the shard's norm (what the official code does); we clip on the true global norm."""
    return bool(cfg.max_grad_norm) and (cfg.zero or cfg.opt != "adan")


def make_optimizer(params: list, cfg: TrainConfig, sharded: bool = False):
    """Adan (MDTv2) or AdamW (MDT v1, DiT), wrapped in ZeroRedundancyOptimizer when `sharded`."""
    kwargs = dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.betas is not None:
        kwargs["betas"] = tuple(cfg.betas)
    if cfg.opt == "adan":
        from .optim import Adan

        cls = Adan
        kwargs["max_grad_norm"] = 0.0 if clips_in_trainer(cfg) else float(cfg.max_grad_norm or 0.0)
    else:
        cls = torch.optim.AdamW
    if sharded:
        from torch.distributed.optim import ZeroRedundancyOptimizer

        return ZeroRedundancyOptimizer(params, optimizer_class=cls, **kwargs)
    return cls(params, **kwargs)


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Constant lr (official), with an optional linear warm-up over `warmup_steps`."""
    if cfg.warmup_steps > 0:
        return cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)
    return cfg.lr


# ----------------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------------

LOG_KEYS = ("loss", "mse", "vb", "m_mse", "m_vb", "loss_q0", "loss_q1", "loss_q2", "loss_q3")


class Trainer:
    """Builds model, EMA, optimizer and data from a TrainConfig; `fit()` runs the loop."""

    def __init__(self, cfg: TrainConfig, run: RunConfig | None = None, dist: DistInfo | None = None,
                 log=print):
        self.dist = dist or dist_from_env()
        self.log = log if self.dist.is_main else (lambda *a, **k: None)
        self.run = run or setup(cfg.profile, seed=cfg.seed, quiet=not self.dist.is_main)
        if not cfg.resume:  # pure checks first: a bad setting fails before any process group or file
            cfg = resolve(cfg, self.run)
            validate(cfg, self.dist.world_size)
        self.device = init_distributed(self.dist, self.run.device, cfg.threads)
        self.out = self._resolve_out(cfg)
        if cfg.resume:
            cfg = self._merge_saved(cfg)
            validate(cfg, self.dist.world_size)
        self.cfg = cfg
        self.source = make_source(cfg.data, cfg.seed, cfg.num_workers, self.run.image_size)
        if self.run.use_vae and self.source.in_channels == 3:
            raise ValueError(f"the {self.run.profile} profile trains on SD-VAE latents; encode the images once with "
                             "`mdt-teach cache-latents` and pass the cache folder as --data")
        self.amp_dtype = getattr(torch, cfg.dtype)
        self._build(cfg)
        self.step = 0
        self.diffusion = GaussianDiffusion()
        self.start_time = time.time()
        self.elapsed_before = 0.0

    # -- construction -------------------------------------------------------------------------
    def _resolve_out(self, cfg: TrainConfig) -> Path:
        """The run folder (nothing is created here): --out, the newest run for --resume, or a fresh name."""
        if cfg.out:
            out = Path(cfg.out)
        elif cfg.resume:
            out = find_resumable()
        else:
            slug = f"{cfg.model.lower().replace('/', '')}-{Path(cfg.data).name}-{time.strftime('%Y%m%d-%H%M%S')}"
            out = Path("runs") / slug
        out = Path(broadcast_object(str(out), self.dist))
        if cfg.resume:
            latest_checkpoint(out)
        elif list_checkpoints(out):
            raise ValueError(f"{out} already holds checkpoints; pass --resume to continue it or choose another --out")
        return out

    def _merge_saved(self, given: TrainConfig) -> TrainConfig:
        """On resume the run's saved config holds; only RESUME_KEEPS and (when given) RESUME_OVERRIDES change."""
        saved = config_from_dict(load_checkpoint(latest_checkpoint(self.out))["config"])
        defaults = TrainConfig()
        for f in fields(TrainConfig):
            value = getattr(given, f.name)
            if f.name in RESUME_KEEPS + RESUME_OVERRIDES:
                continue
            if value != getattr(defaults, f.name) and value != getattr(saved, f.name):
                raise ValueError(f"{self.out} was trained with {f.name}={getattr(saved, f.name)!r}, not {value!r}; "
                                 "drop that flag to resume, or start a new run with another --out")
        keep = {k: getattr(given, k) for k in RESUME_KEEPS}
        keep.update({k: getattr(given, k) for k in RESUME_OVERRIDES if getattr(given, k) is not None})
        if given.steps is None and given.minutes is None:  # no new budget: the run's own target
            keep.update(steps=saved.steps, minutes=saved.minutes)
        return replace(saved, **{**keep, "out": str(self.out)})

    def _model_overrides(self, cfg: TrainConfig) -> dict:
        """Size the model from the data (channels, classes, resolution), then apply --model-arg."""
        src = self.source
        return dict(in_channels=src.in_channels, num_classes=src.num_classes, input_size=src.image_size,
                    **cfg.model_args)

    def _build(self, cfg: TrainConfig) -> None:
        """Model (same init on every rank), EMA, DDP wrapper, optimizer, GradScaler."""
        from .models import build_model

        seed_everything(cfg.seed)
        self.model = build_model(cfg.model, **self._model_overrides(cfg)).to(self.device)
        self.ema = EMA(self.model, cfg.ema_decay, cfg.ema_warmup)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.sharded = cfg.zero and self.dist.enabled  # ZeRO on one process would shard nothing
        self.opt = make_optimizer(self.params, cfg, sharded=self.sharded)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.dtype == "float16")
        if cfg.compile:
            self.model.compile()
        self.net = wrap_ddp(self.model, self.device) if self.dist.enabled else self.model

    # -- one optimizer step ---------------------------------------------------------------------
    def _shard_loss(self, x0, y, shard: int) -> dict:
        """Loss dict of one shard, with its random draws seeded from (seed, step, shard)."""
        seed_shard(self.cfg.seed, self.step, shard)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.cfg.dtype != "float32"):
            return training_loss(self.net, x0, y, self.diffusion, weighting=self.cfg.weighting)

    def train_step(self) -> dict:
        """Forward + backward over this rank's shards, all-reduce the logs, stop on a non-finite loss, step."""
        cfg, accum = self.cfg, self.cfg.grad_accum
        x, y = local_batch(self.source, self.step, cfg.batch_size, self.dist, accum)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        for g in self.opt.param_groups:
            g["lr"] = lr_at(cfg, self.step)
        sums = torch.zeros(len(LOG_KEYS), device=self.device, dtype=torch.float64)
        for i, (xs, ys) in enumerate(zip(x.chunk(accum), y.chunk(accum))):
            sync = i == accum - 1 or not self.dist.enabled
            with contextlib.nullcontext() if sync else self.net.no_sync():
                out = self._shard_loss(xs, ys, self.dist.rank * accum + i)
                self.scaler.scale(out["loss"] / accum).backward()
            sums += torch.stack([out[k].detach().double() for k in LOG_KEYS])
        logs = all_reduce_(sums, self.dist) / (accum * self.dist.world_size)
        self._check_finite(float(logs[0]))
        clip = self._clip()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        self.ema.update(self.model, self.step)
        self.step += 1
        out = {k: float(v) for k, v in zip(LOG_KEYS, logs.tolist())}
        out["lr"] = lr_at(cfg, self.step - 1)
        if clip is not None:
            out["clip"] = clip
        return out

    def _clip(self):
        """Clip on the true global norm with Adan's own rule (every rank holds the all-reduced gradients);
        returns the clip coefficient min(1, max_norm / (‖g‖ + eps)) or None."""
        if not clips_in_trainer(self.cfg):
            return None
        from .optim import clip_grads_

        self.scaler.unscale_(self.opt)
        grads = [p.grad for p in self.params if p.grad is not None]
        return float(clip_grads_(grads, self.cfg.max_grad_norm, eps=1e-8))

    def _check_finite(self, loss: float) -> None:
        """Stop with one clear message; the last good checkpoint is left as it was."""
        if math.isfinite(loss):
            return
        self.opt.zero_grad(set_to_none=True)
        found = list_checkpoints(self.out)
        where = (f"the last good checkpoint is {found[-1]}; continue from it with --resume (e.g. with a lower --lr)"
                 if found else "no checkpoint had been written yet")
        raise NonFiniteLossError(f"loss became {loss} at step {self.step + 1}; stopped without saving: {where}")

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue bit for bit (collective under DDP: every rank must call it)."""
        rng = gather_objects(capture_rng(), self.dist)
        if self.sharded:
            self.opt.consolidate_state_dict(to=0)
        opt_state = self.opt.state_dict() if self.dist.is_main else None
        return {"format": FORMAT, "step": self.step, "model": self.model.state_dict(),
                "ema": self.ema.model.state_dict(), "opt": opt_state, "scaler": self.scaler.state_dict(),
                "rng": rng, "world_size": self.dist.world_size,
                "data": {"position": self.step * self.cfg.batch_size, "seed": self.cfg.seed},
                "config": asdict(self.cfg), "model_config": asdict(self.model.config),
                "elapsed": self.elapsed()}

    def load_state_dict(self, state: dict) -> None:
        """Restore model, EMA, optimizer, scaler, step and this rank's RNG states."""
        self.model.load_state_dict(state["model"])
        self.ema.model.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.elapsed_before = float(state.get("elapsed", 0.0))
        if state["world_size"] == self.dist.world_size:
            restore_rng(state["rng"][self.dist.rank])
        else:
            self.log(f"resuming {state['world_size']} rank(s) on {self.dist.world_size}: per-rank RNG states are "
                     "not restored (the training draws are reseeded per shard and do not need them)")

    def save(self) -> Path | None:
        """Write a checkpoint atomically (rank 0), keep the newest `keep`; returns its path on rank 0."""
        state = self.state_dict()
        path = None
        if self.dist.is_main:
            path = checkpoint_path(self.out, self.step)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_save(state, path)
            prune_checkpoints(self.out, self.cfg.keep)
        if self.dist.enabled:
            torch_dist.barrier()
        return path

    def elapsed(self) -> float:
        """Training seconds so far, over all resumed segments (paused periods excluded)."""
        return self.elapsed_before + time.time() - self.start_time

    @contextlib.contextmanager
    def paused(self):
        """Stop the training clock (elapsed() and the --minutes budget) while sampling or evaluating."""
        began = time.time()
        try:
            yield
        finally:
            self.start_time += time.time() - began

    # -- the loop -------------------------------------------------------------------------------
    def done(self) -> bool:
        """Step limit reached, or this session's training-time budget spent (rank 0 decides for every rank)."""
        stop = self.cfg.steps is not None and self.step >= self.cfg.steps
        if self.cfg.minutes is not None:
            stop = stop or time.time() - self.start_time >= 60 * self.cfg.minutes
        flag = torch.tensor([float(stop)], device=self.device)
        if self.dist.enabled:
            torch_dist.broadcast(flag, src=0)
        return bool(flag.item())

    def fit(self, hooks=None) -> dict:
        """Train until done; returns a summary. `hooks(trainer, logs)` runs on rank 0 after every step."""
        from .train_cli import RunLogger

        logger = RunLogger(self) if self.dist.is_main else None
        if self.cfg.resume:
            path = latest_checkpoint(self.out)
            self.load_state_dict(load_checkpoint(path))
            self.log(f"resumed from {path} at step {self.step}", flush=True)
        if logger:
            logger.start()
        self.start_time = time.time()
        last_saved = self.step if self.cfg.resume else None
        while not self.done():
            logs = self.train_step()
            if logger:
                logger.step(logs)
            if hooks:
                hooks(self, logs)
            if self.step % self.cfg.ckpt_every == 0:
                self._announce_save(self.save())
                last_saved = self.step
            if logger:
                logger.periodic()
        if last_saved != self.step:
            self._announce_save(self.save())
        return logger.finish() if logger else {"step": self.step}

    def _announce_save(self, path) -> None:
        """One line per checkpoint (tests watch for it)."""
        if path is not None:
            self.log(f"checkpoint step {self.step} → {path}", flush=True)


def main(argv=None) -> int:
    """`python -m mdt_teach.train ...`, what torchrun launches: the same flags as `mdt-teach train`."""
    import argparse
    import sys

    from .train_cli import add_arguments, run

    parser = argparse.ArgumentParser(prog="python -m mdt_teach.train",
                                     description="train DiT / MDT / MDTv2 (one process per GPU under torchrun)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"mdt-teach train: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
