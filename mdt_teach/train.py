"""The training loop for DiT, MDT and MDTv2: one optimizer step, top to bottom, in `Trainer.train_step`.

    batch of step k → per-shard seeding → training_loss → backward → clip → optimizer step → EMA

`training_loss` is one pass for DiT and, for MDT, an unmasked plus a masked pass with one backward
(MDT §3.3; `masked_diffusion/train_util.py: TrainLoop.forward_backward`). Everything around the step lives
one import away, in a module named after its job:

    recipe.py        TrainConfig, the official recipes, validation, the optimizer
    data_order.py    which images step k sees and the seed of every random draw (exact resume)
    distributed.py   torchrun: ranks, process group, DDP
    ema.py           the moving average of the weights
    checkpoint.py    atomic writes, the safe reader, the ckpt/ folder
    runlog.py        run folder, progress bar, metrics, sample grids, evaluations

Because every draw of a step is a function of (seed, step, shard) and every kernel is deterministic on the
CPU (docs/reproducibility.md), two runs with one seed give the same weights bit for bit, `--resume` after
a kill continues bit for bit, and 2 ranks × 1 shard make the same update as 1 rank × 2 accumulated shards.

Departures from the official loop (each a choice, documented where it is made): one reseed per shard instead
of one running RNG stream (data_order.py); a deterministic, sharded data order (data_order.py); a latent cache
holds both orientations of each image instead of encoding every read (latent_cache.py); clipping on
the true global norm under ZeRO (recipe.clips_in_trainer); the toy recipe of the tiny presets (recipe.py);
bf16/fp16 autocast on GPU profiles (the released training is fp32).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as torch_dist

from .checkpoint import (FORMAT, atomic_save, checkpoint_path, find_resumable, latest_checkpoint, list_checkpoints,
                         prune_checkpoints, read_checkpoint)
from .config import (RunConfig, capture_rng, restore_rng, seed_everything, setup, use_deterministic_kernels,
                     uses_grad_scaler)
from .data_order import make_source, seed_shard
from .diffusion import GaussianDiffusion, training_loss
from .distributed import (DistInfo, all_reduce_, broadcast_object, dist_from_env, gather_objects, init_distributed,
                          wrap_ddp)
from .ema import EMA
from .vae import DEFAULT_VAE, load_vae
from .models import build_model
from .optim import clip_grads_
from .recipe import (TrainConfig, clips_in_trainer, config_from_dict, lr_at, make_optimizer, merge_for_resume, resolve,
                     validate)
from .runlog import RunLogger

LOG_KEYS = ("loss", "mse", "vb", "m_mse", "m_vb", "loss_q0", "loss_q1", "loss_q2", "loss_q3")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or ±inf; the run stopped without writing a checkpoint."""


class Trainer:
    """Checks every input, then builds model, EMA, optimizer and data from a TrainConfig; `fit()` trains."""

    def __init__(self, cfg: TrainConfig, run: RunConfig | None = None, dist: DistInfo | None = None, log=print):
        self.dist = dist or dist_from_env()
        self.log = log if self.dist.is_main else (lambda *a, **k: None)
        self.run = run or setup(cfg.profile, seed=cfg.seed, quiet=not self.dist.is_main)
        if not cfg.resume:  # pure checks first: a bad setting fails before any process group or file
            cfg = resolve(cfg, self.run)
            validate(cfg, self.dist.world_size)
        self.device = init_distributed(self.dist, self.run.device, cfg.threads)
        self.out = self._run_folder(cfg)
        if cfg.resume:
            saved = config_from_dict(read_checkpoint(latest_checkpoint(self.out))["config"])
            cfg = merge_for_resume(cfg, saved, str(self.out))
            validate(cfg, self.dist.world_size)
        self.cfg = cfg
        use_deterministic_kernels(cfg.deterministic)
        self.source = make_source(cfg.data, cfg.seed, cfg.num_workers, cfg.image_size or self.run.image_size)
        self.source.local_batch(0, cfg.batch_size, self.dist, cfg.grad_accum)  # unreadable data fails here
        self.encoder = None   # latent profiles on an image folder encode every batch, as the official loop does
        if self.run.use_vae and self.source.in_channels == 3:
            self.encoder = load_vae(cfg.vae or DEFAULT_VAE, device=self.device)
        in_channels, size = ((self.encoder.latent_channels, self.source.image_size // self.encoder.downsample)
                             if self.encoder else (self.source.in_channels, self.source.image_size))
        seed_everything(cfg.seed)   # the same initial weights on every rank
        self.model = build_model(cfg.model, in_channels=in_channels, num_classes=self.source.num_classes,
                                 input_size=size, **cfg.model_args).to(self.device)
        self.ema = EMA(self.model, cfg.ema_decay, cfg.ema_warmup)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.sharded = cfg.zero and self.dist.enabled  # ZeRO on one process would shard nothing
        self.opt = make_optimizer(self.params, cfg, sharded=self.sharded)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=uses_grad_scaler(cfg.dtype))
        if cfg.compile:
            self.model.compile()
        self.net = wrap_ddp(self.model, self.device) if self.dist.enabled else self.model
        self.diffusion = GaussianDiffusion()
        self.step, self.elapsed_before, self.start_time = 0, 0.0, time.time()

    def _run_folder(self, cfg: TrainConfig) -> Path:
        """The run folder, checked but not created: --out, the newest run for --resume, or a fresh name."""
        if cfg.out:
            out = Path(cfg.out)
        elif cfg.resume:
            out = find_resumable()
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            out = Path("runs") / f"{cfg.model.lower().replace('/', '')}-{Path(cfg.data).name}-{stamp}"
        out = Path(broadcast_object(str(out), self.dist))
        blocker = next((p for p in [out, *out.parents] if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise ValueError(f"--out {out} cannot be a run folder: {blocker} is a file; choose another --out")
        if cfg.resume:
            latest_checkpoint(out)
        elif list_checkpoints(out):
            raise ValueError(f"{out} already holds checkpoints; pass --resume to continue it or choose another --out")
        return out

    # -- one optimizer step ---------------------------------------------------------------------
    def train_step(self) -> dict:
        """One optimizer step on the global batch of step `self.step`; returns the all-reduced loss logs."""
        cfg, accum, dist = self.cfg, self.cfg.grad_accum, self.dist
        x, y = self.source.local_batch(self.step, cfg.batch_size, dist, accum)   # this rank's `accum` shards
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        for group in self.opt.param_groups:
            group["lr"] = lr_at(cfg, self.step)
        logs = torch.zeros(len(LOG_KEYS), device=self.device, dtype=torch.float64)
        for i, (xs, ys) in enumerate(zip(x.chunk(accum), y.chunk(accum))):
            seed_shard(cfg.seed, self.step, dist.rank * accum + i)      # t, noise, label dropout, mask
            if self.encoder is not None:                                # online SD-VAE: a posterior sample × 0.18215
                xs = self.encoder.encode(xs)
            last = i == accum - 1 or not dist.enabled                   # DDP all-reduces on the last shard
            with contextlib.nullcontext() if last else self.net.no_sync():
                with torch.autocast(self.device.type, getattr(torch, cfg.dtype), enabled=cfg.dtype != "float32"):
                    out = training_loss(self.net, xs, ys, self.diffusion, weighting=cfg.weighting,
                                        masked_pass=cfg.masked_pass)
                self.scaler.scale(out["loss"] / accum).backward()       # one backward for both MDT passes
            logs += torch.stack([out[k].detach().double() for k in LOG_KEYS])
        logs = all_reduce_(logs, dist) / (accum * dist.world_size)
        self._stop_if_not_finite(float(logs[0]))
        clip = self._clip()                                             # on the global gradient norm
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        self.ema.update(self.model, self.step)
        self.step += 1
        return {**dict(zip(LOG_KEYS, logs.tolist())), "lr": lr_at(cfg, self.step - 1),
                **({} if clip is None else {"clip": clip})}

    def _clip(self) -> float | None:
        """Clip on the true global norm with Adan's rule (every rank holds the all-reduced gradients); returns
        the clip coefficient min(1, max_norm / (‖g‖ + eps)), or None when Adan clips itself or nothing clips."""
        if not clips_in_trainer(self.cfg):
            return None
        self.scaler.unscale_(self.opt)
        return float(clip_grads_([p.grad for p in self.params if p.grad is not None], self.cfg.max_grad_norm, eps=1e-8))

    def _stop_if_not_finite(self, loss: float) -> None:
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
        """Everything needed to continue bit for bit, as plain data (collective under DDP: every rank calls it)."""
        rng = gather_objects(capture_rng(), self.dist)
        if self.sharded:
            self.opt.consolidate_state_dict(to=0)
        return {"format": FORMAT, "step": self.step, "model": self.model.state_dict(),
                "ema": self.ema.model.state_dict(), "opt": self.opt.state_dict() if self.dist.is_main else None,
                "scaler": self.scaler.state_dict(), "rng": rng, "world_size": self.dist.world_size,
                "data": {"position": self.step * self.cfg.batch_size, "seed": self.cfg.seed},
                "config": asdict(self.cfg), "model_config": asdict(self.model.config), "elapsed": self.elapsed()}

    def load_state_dict(self, state: dict) -> None:
        """Restore model, EMA, optimizer, scaler, step and this rank's RNG states."""
        self.model.load_state_dict(state["model"])
        self.ema.model.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.elapsed_before = int(state["step"]), float(state.get("elapsed", 0.0))
        if state["world_size"] == self.dist.world_size:
            restore_rng(state["rng"][self.dist.rank])
        else:
            self.log(f"resuming {state['world_size']} rank(s) on {self.dist.world_size}: per-rank RNG states are "
                     "not restored (the training draws are reseeded per shard and do not need them)")

    def save(self) -> Path | None:
        """Write a checkpoint atomically (rank 0), keep the newest `keep`; returns its path on rank 0."""
        state, path = self.state_dict(), None
        if self.dist.is_main:
            path = checkpoint_path(self.out, self.step)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_save(state, path)
            prune_checkpoints(self.out, self.cfg.keep)
            self.log(f"checkpoint step {self.step} → {path}", flush=True)   # tests watch for this line
        if self.dist.enabled:
            torch_dist.barrier()
        return path

    # -- the clock ------------------------------------------------------------------------------
    def session_seconds(self) -> float:
        """Training seconds of this session (sampling and evaluation excluded): what --minutes limits."""
        return time.time() - self.start_time

    def elapsed(self) -> float:
        """Training seconds over all resumed sessions."""
        return self.elapsed_before + self.session_seconds()

    @contextlib.contextmanager
    def paused(self):
        """Stop the training clock while sampling or evaluating."""
        began = time.time()
        try:
            yield
        finally:
            self.start_time += time.time() - began

    # -- the loop -------------------------------------------------------------------------------
    def done(self) -> bool:
        """Step limit reached, or this session's training-time budget spent (rank 0 decides for every rank)."""
        stop = self.cfg.steps is not None and self.step >= self.cfg.steps
        stop = stop or (self.cfg.minutes is not None and self.session_seconds() >= 60 * self.cfg.minutes)
        flag = torch.tensor([float(stop)], device=self.device)
        if self.dist.enabled:
            torch_dist.broadcast(flag, src=0)
        return bool(flag.item())

    def fit(self, hooks=None) -> dict:
        """Train until done; returns a summary. `hooks(trainer, logs)` runs on rank 0 after every step."""
        logger = RunLogger(self) if self.dist.is_main else None
        if self.cfg.resume:
            path = latest_checkpoint(self.out)
            self.load_state_dict(read_checkpoint(path))
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
                self.save()
                last_saved = self.step
            if logger:
                logger.periodic()
        if last_saved != self.step:
            self.save()
        return logger.finish() if logger else {"step": self.step}
