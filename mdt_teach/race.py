"""`mdt-teach race`: DiT vs MDT vs MDTv2 on smileys at equal calibrated wall-clock, as a factorial that adds
MDTv2's ingredients one at a time (weighting, architecture, second pass, masking), over several seeds.

Every contestant trains the tiny preset (same width and depth) at the learning rate the sweep chose for it
(`sweep.py`, rule declared there), on the data order of its seed, for the same calibrated budget: each
variant's seconds per step are timed round-robin in one process, and a budget of B minutes is B·60 / (s/step)
steps, so the machine's load cannot favour anyone. Along the way (every `eval_minutes` of calibrated time)
the EMA model draws `n` samples from fixed noise with a fixed sampler: two-eyes and its funnel, FD-smileys,
and at some evaluations the missing-eye probe; at the end `n_final` samples and a larger probe.

The race can be stopped and continued: each finished (variant, seed) is a file `<out>/<variant>_seed<S>.json`
that the race skips; an unfinished one resumes from its checkpoint under `work/` with its curve so far
(`curve_partial.json`). The targets table is `race_summary.py`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import list_checkpoints, read_checkpoint, latest_checkpoint, write_json
from .config import detect_capabilities, wait_for
from .data import DEFAULT_WORLD, world_version
from .images import save_grid
from .metrics import score_smileys
from .painters import blind_rates
from .probe import missing_eye_probe, wilson_interval
from .race_summary import BASELINE, format_table, headline_of, summarize
from .recipe import TrainConfig
from .resources import repo_commit
from .same_settings import refuse_other_settings
from .sampling import generate
from .train import Trainer


@dataclass(frozen=True)
class Variant:
    """One contestant: a tiny preset, the recipe changes that make it, and the seeds it races with."""

    name: str
    model: str
    label: str
    isolates: str
    overrides: dict = field(default_factory=dict)
    seeds: tuple = (0,)


# The winners of the committed sweep (data/race/relational/sweep/summary.json; a test holds these to it): one
# sweep per model family; every variant of a family trains at the family's lr.
SWEPT_LR = {"DiT-T/4 adamw": 4e-3, "MDT-T/4 adamw": 1.6e-2, "MDTv2-T/4 adamw": 4e-3}
CLIP = {"max_grad_norm": 1.0}   # every contestant clips at 1 (MDTv2's recipe; DiT's and MDT v1's have none),
                                # so that clipping is not one of the differences between them
SEEDS = (0, 1, 2)    # the five variants of the main chain; the 2 × 2 of masking × weighting: 0, 1; MDT v1: 0 (its
                     # seed 1 was cut for compute once seed 0 showed its swept lr unstable: docs/race.md §1)
PROBE_FACES = 64     # faces for the probe along the way (about 30 are usable for the eye region)
FINAL_PROBE_FACES = 256
SAMPLE_SEED = 12345  # the fixed noise of every evaluation
RACE_FOLDER = "data/race/relational"   # the committed race (smileys@2) and its sweep
CLASSIC_FOLDER = "data/race/cpu"       # the race before it, on smileys-classic (lesson 08 says what changed)
DIT = {"lr": SWEPT_LR["DiT-T/4 adamw"], **CLIP}
MDTV2 = {"opt": "adamw", "lr": SWEPT_LR["MDTv2-T/4 adamw"], **CLIP}
NO_MASK = {"model_args": {"mask_ratio": 0.0, "mask_ratio_jitter": 0.0}}
# The main chain adds one ingredient per step: DiT → + Min-SNR → MDTv2's architecture → its second pass → masking.
VARIANTS = {v.name: v for v in [
    Variant("dit", "DiT-T/4", "DiT", "baseline: AdamW, no weighting, one pass", DIT, SEEDS),
    Variant("dit_minsnr", "DiT-T/4", "DiT + Min-SNR-5", "the loss weighting (on DiT)",
            {**DIT, "weighting": "min_snr"}, SEEDS),
    Variant("mdtv2_one_pass", "MDTv2-T/4", "MDTv2 architecture, one pass",
            "the architecture (long skips, dense shortcut), trained as DiT + Min-SNR is: the full pass only",
            {**MDTV2, "masked_pass": False}, SEEDS),
    Variant("mdtv2_mask0", "MDTv2-T/4", "MDTv2, mask ratio 0",
            "the second pass (a second noise draw per image, nothing hidden)", {**MDTV2, **NO_MASK}, SEEDS),
    Variant("mdtv2", "MDTv2-T/4", "MDTv2",
            "masking: the tiny recipe (two passes, mask ratio U[0.3, 0.5), Min-SNR-5, AdamW)", MDTV2, SEEDS),
    Variant("mdtv2_no_minsnr", "MDTv2-T/4", "MDTv2 without Min-SNR",
            "the weighting with masking (MDTv2 less Min-SNR)", {**MDTV2, "weighting": "none"}, (0, 1)),
    Variant("mdtv2_mask0_no_minsnr", "MDTv2-T/4", "MDTv2, mask ratio 0, without Min-SNR",
            "the weighting without masking (mask ratio 0 less Min-SNR)",
            {**MDTV2, **NO_MASK, "weighting": "none"}, (0, 1)),
    Variant("mdt", "MDT-T/4", "MDT v1", "MDT v1: masking + side-interpolater, two passes, ratio 0.3, no weighting",
            {"lr": SWEPT_LR["MDT-T/4 adamw"], **CLIP}, (0,)),
]}


def parse_variants(text: str | None) -> list[Variant]:
    """Comma-separated variant names (default: all) → Variants; unknown names → one clear error."""
    names = list(VARIANTS) if not text else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown race variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    return [VARIANTS[n] for n in names]


def run_name(v: Variant, seed: int) -> str:
    """The file stem of one (variant, seed): `<variant>_seed<S>`."""
    return f"{v.name}_seed{seed}"


def schedule(variants: list[Variant], seeds: list[int] | None = None) -> list[tuple[Variant, int]]:
    """The (variant, seed) runs in the order the race trains them: seed by seed, so that a race stopped early
    has every variant at seed 0 first (`seeds` replaces each variant's own seeds)."""
    runs = [(v, s) for v in variants for s in (seeds if seeds is not None else v.seeds)]
    return sorted(runs, key=lambda r: (r[1], variants.index(r[0])))


class Evaluator:
    """The trainer hook: every `every` steps, score `n` EMA samples (fixed noise) with the clock paused."""

    def __init__(self, folder: Path, every: int, n: int, grid: int = 8, sample_steps: str = "ddim25",
                 method: str = "ddim", probe_every: int = 0, world: str = DEFAULT_WORLD):
        self.folder, self.every, self.n, self.grid, self.world = folder, every, n, grid, world
        self.sample_steps, self.method = sample_steps, method
        self.probe_every = probe_every   # run the missing-eye probe at every k-th evaluation (0: never)
        self.curve: list[dict] = []
        self.partial: Path | None = None  # where the curve so far is kept, for a resumed race

    def __call__(self, trainer, logs: dict) -> None:
        if trainer.step % self.every == 0:
            self.evaluate(trainer)

    def samples(self, trainer, n: int):
        """`n` samples of the EMA model from the race's fixed noise and sampler."""
        return generate(trainer.ema.model, n, diffusion=trainer.diffusion, steps=self.sample_steps,
                        method=self.method, seed=SAMPLE_SEED)

    def evaluate(self, trainer) -> dict:
        """Generate, score and record one point of the curve; the time it takes is not training time."""
        if self.curve and self.curve[-1]["step"] == trainer.step:
            return self.curve[-1]
        seconds = round(trainer.elapsed(), 2) if trainer.step else 0.0  # training time, before this eval
        with trainer.paused():
            images, labels = self.samples(trainer, self.n)
            point = {"step": trainer.step, "seconds": seconds,
                     **{k: round(v, 5) for k, v in score_smileys(images, labels, self.world).items()}}
            if self.grid:
                save_grid(images[: self.grid], self.folder / f"step_{trainer.step:06d}.png", nrow=self.grid)
            if self.probe_every and trainer.step and len(self.curve) % self.probe_every == 0:
                point.update(self.probe(trainer, PROBE_FACES))
            self.curve.append(point)
            if self.partial is not None:
                write_json(self.partial, self.curve)
            trainer.log(f"  step {point['step']:5d} · {point['seconds']:6.0f} s · two-eyes "
                        f"{point['two_eyes']:.1%} · FD-smileys {point['fd_smileys']:.2f}", flush=True)
        return point

    def final(self, trainer, n: int, probe_faces: int) -> dict:
        """The end of a run on more samples: scores of `n` samples (the first `self.n` are the curve's), the
        two-eyes score's 95% Wilson interval, and the probe on `probe_faces` faces."""
        with trainer.paused():
            images, labels = self.samples(trainer, n)
            scores = {k: round(v, 5) for k, v in score_smileys(images, labels, self.world).items()}
            lo, hi = wilson_interval(round(scores["two_eyes"] * n), n)
            return {"samples": n, **scores, "two_eyes_ci": [round(lo, 4), round(hi, 4)],
                    **(self.probe(trainer, probe_faces) if probe_faces else {})}

    def probe(self, trainer, faces: int) -> dict:
        """The missing-eye probe of the EMA model (`faces` faces drawn, a short RePaint) beside the painters'
        chance line on the same faces, the follow test (both colour versions of each face), and its cost."""
        began = time.perf_counter()
        r = missing_eye_probe(trainer.ema.model, "eye", n=faces, steps="25", jump_length=5, resamples=2,
                              world=self.world, follow=True)
        rnd = lambda v: round(float(v), 4)                                                # noqa: E731
        return {"probe_eye": rnd(r.completed), "probe_eye_ci": [rnd(v) for v in r.completed_ci],
                "probe_chance": rnd(max(r.chance.values())) if r.chance else 0.0,
                "probe_follow": None if r.follow is None else rnd(r.follow),
                "probe_follow_chance": rnd(max(r.follow_chance.values())) if r.follow_chance else 0.0,
                "probe_faces": r.faces, "probe_seconds": round(time.perf_counter() - began, 2)}


def make_trainer(v: Variant, work: Path, seed: int, batch_size: int, minutes=None, steps=None, resume=False,
                 ckpt_every: int = 100, name: str | None = None, world: str = DEFAULT_WORLD):
    """A Trainer for one variant: the tiny preset, its recipe plus the variant's overrides, a smileys world."""
    cfg = TrainConfig(model=v.model, data=world, minutes=minutes, steps=steps, batch_size=batch_size,
                      seed=seed, out=str(work / (name or v.name)), ckpt_every=ckpt_every, keep=1, eval_samples=0,
                      grid_samples=0, sample_every=0, progress=False, resume=resume, **v.overrides)
    return Trainer(cfg, log=lambda *a, **k: None)


def calibrate(variants: list[Variant], work: Path, seed: int, batch_size: int, rounds: int = 8) -> dict:
    """Seconds per training step of each variant, timed round-robin in one process so that every variant
    sees the same machine load (the wall-clock comparison uses these, not the noisy in-run clock)."""
    trainers = {v.name: make_trainer(v, work / "calibration", seed, batch_size, steps=10**9) for v in variants}
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for r in range(rounds + 2):
        for name, trainer in trainers.items():
            began = time.perf_counter()
            trainer.train_step()
            wait_for(trainer.device)
            if r >= 2:  # the first two steps warm up allocators and caches
                times[name].append(time.perf_counter() - began)
    return {name: float(np.median(ts)) for name, ts in times.items()}


def calibrate_more(variants: list[Variant], known: dict, reference: Variant | None, work: Path,
                   batch_size: int) -> dict:
    """Seconds per step of `variants` on the scale of `known`, timed earlier (another session, maybe another
    machine): `reference`, a variant with a known time, is timed again beside them and the new times are
    rescaled by (its known time / its time now), so that every variant of a race shares one clock."""
    timed = calibrate(variants + ([reference] if reference else []), work, 0, batch_size)
    scale = known[reference.name] / timed[reference.name] if reference else 1.0
    return {v.name: timed[v.name] * scale for v in variants}


def clock_reference(known: dict, variants: list[Variant]) -> Variant | None:
    """The variant to time again beside new ones (`calibrate_more`): DiT, the baseline, when its time is known,
    else the first known one; a variant of this race's list wins over the registry's of the same name."""
    by_name = {**VARIANTS, **{v.name: v for v in variants}}
    names = sorted((n for n in known if n in by_name), key=lambda n: n != BASELINE)
    return by_name[names[0]] if names else None


@dataclass(frozen=True)
class RaceSettings:
    """What every (variant, seed) of one race shares; a finished file made with other settings is refused."""

    budget: float = 12.0            # calibrated training minutes per run
    batch_size: int = 32
    eval_minutes: float = 1.5       # calibrated minutes between evaluations
    n: int = 256                    # samples per evaluation along the way
    n_final: int = 1024             # samples at the end (0: the curve's last point is the end)
    sample_steps: str = "ddim25"
    method: str = "ddim"
    probe_every: int = 3            # the probe at every k-th evaluation after step 0 (0: never)
    final_probe_faces: int = FINAL_PROBE_FACES
    world: str = DEFAULT_WORLD      # the smileys world raced on (records also store its version)
    min_steps: int = 1              # a floor under every run's steps (a live race on a busy machine)

    def steps(self, per_step: float) -> int:
        """The run's steps: the budget at the variant's calibrated speed, at least `min_steps` (when the floor
        binds, that run trains longer than the budget: no longer equal time)."""
        return max(self.min_steps, int(60 * self.budget / per_step))

    def every(self, per_step: float) -> int:
        """Steps between evaluations: `eval_minutes` at the variant's calibrated speed."""
        return max(1, round(60 * self.eval_minutes / per_step))


# `mdt-teach race --preset gpu`: the paper's 256-token regime — S/2 on 32-px smileys is a 16×16 token grid, as
# S/2 on ImageNet-256 latents — for the main chain's five variants (DiT → + Min-SNR → MDTv2's architecture →
# its second pass → masking), one seed, about eight minutes of one GPU in all. The recipes are the CPU race's
# (swept on T/4, not on S/2) with the tiny EMA (0.999 with warm-up): the official 0.9999 would barely move in
# a race of a few thousand steps.
GPU_MODELS = {"DiT-T/4": "DiT-S/2", "MDTv2-T/4": "MDTv2-S/2"}
GPU_RECIPE = {"ema_decay": 0.999, "ema_warmup": True, "betas": (0.9, 0.99)}
GPU_SETTINGS = RaceSettings(budget=1.5, batch_size=64, eval_minutes=0.25, n=256, n_final=1024, probe_every=2)


def gpu_preset(require_gpu: bool = True) -> tuple[list[Variant], RaceSettings]:
    """The GPU race's contestants (S/2 versions of the main chain, seed 0) and settings; without a CUDA GPU one
    sentence says what to run instead (tests pass require_gpu=False)."""
    if require_gpu and not detect_capabilities().cuda:
        raise ValueError("--preset gpu needs a CUDA GPU (none found); on this machine run the CPU race, "
                         "`mdt-teach race`")
    chain = [v for v in VARIANTS.values() if v.seeds == SEEDS]
    return [Variant(v.name, GPU_MODELS[v.model], v.label, v.isolates, {**v.overrides, **GPU_RECIPE}, (0,))
            for v in chain], GPU_SETTINGS


def run_variant(v: Variant, seed: int, out: Path, work: Path, per_step: float, settings: RaceSettings,
                name: str | None = None) -> dict:
    """Train one (variant, seed) for the budget, evaluating along the way; resumes an interrupted run from its
    checkpoint under `work/<name>` and its curve so far (points after that checkpoint are redone). The record
    is `out/<name>.json`, name `<variant>_seed<S>` unless given."""
    began = time.perf_counter()
    name = name or run_name(v, seed)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    steps, every = settings.steps(per_step), settings.every(per_step)
    evaluator = Evaluator(folder, every, settings.n, sample_steps=settings.sample_steps, method=settings.method,
                          probe_every=settings.probe_every, world=settings.world)
    evaluator.partial = folder / "curve_partial.json"
    resume = bool(list_checkpoints(work / name))
    trainer = make_trainer(v, work, seed, settings.batch_size, steps=steps, resume=resume,
                           ckpt_every=min(100, every), name=name, world=settings.world)
    if resume:
        at = read_checkpoint(latest_checkpoint(work / name))["step"]
        saved = json.loads(evaluator.partial.read_text()) if evaluator.partial.exists() else []
        evaluator.curve = [p for p in saved if p["step"] <= at]
        print(f"race: {name} resumes at step {at} ({len(evaluator.curve)} evaluations kept)", flush=True)
    else:
        evaluator.evaluate(trainer)  # step 0: the zero-initialised model
    trainer.fit(hooks=evaluator)
    evaluator.evaluate(trainer)  # the final point of the curve
    final = evaluator.final(trainer, settings.n_final, settings.final_probe_faces) if settings.n_final else None
    for point in evaluator.curve:
        point["cal_seconds"] = round(point["step"] * per_step, 2)
    record = {"made_by": "mdt-teach race", "commit": repo_commit(),
              "name": v.name, "seed": seed, "label": v.label, "model": v.model, "isolates": v.isolates,
              "world": world_version(settings.world),
              "opt": trainer.cfg.opt, "lr": trainer.cfg.lr, "weighting": trainer.cfg.weighting,
              "settings": settings.__dict__, "steps": trainer.step, "eval_every": every,
              "seconds": round(trainer.elapsed(), 1), "seconds_per_step": round(trainer.elapsed() / max(1, trainer.step), 4),
              "cal_seconds_per_step": round(per_step, 5), "wall_seconds": round(time.perf_counter() - began, 1),
              "threads": torch.get_num_threads(), "curve": evaluator.curve, "final": final}
    write_json(out / f"{name}.json", record)
    evaluator.partial.unlink(missing_ok=True)
    return record


LEGACY_WORLD = "smileys-classic@1"   # records written before worlds were recorded were raced on the classic world


def finished(path: Path, settings: RaceSettings) -> dict:
    """A finished run's record, refused (one sentence) when it was made on another world or with other settings."""
    record = json.loads(path.read_text())
    world, wanted = record.get("world", LEGACY_WORLD), world_version(settings.world)
    if world != wanted:
        raise ValueError(f"{path} was raced on {world}, not {wanted}; a race cannot mix worlds: race into another "
                         f"--out, or pass --world {world.split('@')[0]} to summarise it")
    refuse_other_settings(path, _without_world(record.get("settings")) or {},
                          _without_world(json.loads(json.dumps(settings.__dict__))),
                          "delete it or race with the same --budget, --batch-size and evaluation flags")
    return record


def _without_world(settings: dict | None) -> dict | None:
    """Race settings less the world (checked on its own, with its version)."""
    return None if settings is None else {k: v for k, v in settings.items() if k != "world"}


def run_race(out: Path, settings: RaceSettings = RaceSettings(), variants: list[Variant] | None = None,
             seeds: list[int] | None = None, work: Path = Path("runs/race"), label: str = "cpu") -> dict:
    """Run every (variant, seed) not finished yet in `out` (resumable), then write summary.json over all the
    finished runs in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    variants = variants or list(VARIANTS.values())
    runs = schedule(variants, seeds)
    cal_path = out / "calibration.json"
    per_step = json.loads(cal_path.read_text()) if cal_path.exists() else {}
    missing = [v for v in variants if v.name not in per_step]
    if missing:
        print(f"race: timing {', '.join(v.name for v in missing)} round-robin (seconds per step)", flush=True)
        per_step.update(calibrate_more(missing, per_step, clock_reference(per_step, variants), work,
                                       settings.batch_size))
        write_json(cal_path, per_step)
    for v, seed in runs:
        done = out / f"{run_name(v, seed)}.json"
        if done.exists():
            finished(done, settings)
            print(f"race: {run_name(v, seed)} already finished ({done}); delete it to rerun", flush=True)
            continue
        print(f"race: {v.label} ({v.model}), seed {seed} — isolates {v.isolates}; {settings.steps(per_step[v.name])} "
              f"steps = {settings.budget:g} min at {per_step[v.name]:.3f} s/step", flush=True)
        run_variant(v, seed, out, work, per_step[v.name], settings)
    return summarize_folder(out, settings, label)


def summarize_folder(out: Path, settings: RaceSettings, label: str = "cpu") -> dict:
    """(Re)write `out/summary.json` from every finished (variant, seed) in `out`, in VARIANTS order, and print it
    (a race stopped between runs can be summarised and committed as it stands)."""
    def order(path: Path):
        name = path.stem.rsplit("_seed", 1)[0]
        return (list(VARIANTS).index(name) if name in VARIANTS else len(VARIANTS), path.stem)

    records = {p.stem: finished(p, settings) for p in sorted(out.glob("*_seed*.json"), key=order)}
    if not records:
        raise FileNotFoundError(f"no finished race runs in {out}: run `mdt-teach race --out {out}` first")
    headline = headline_of(world_version(settings.world))
    chance = max(blind_rates(settings.world).values()) if headline == "pair_agreement" else 0.0
    summary = summarize(records, headline=headline, chance=chance)
    summary["runs"] = list(records)
    cal_path = out / "calibration.json"
    summary.update(made_by="mdt-teach race --summarize", commit=repo_commit(), label=label,
                   settings=settings.__dict__, threads=sorted({r["threads"] for r in records.values()}),
                   calibration=json.loads(cal_path.read_text()) if cal_path.exists() else {},
                   finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    write_json(out / "summary.json", summary)
    print(format_table(summary), flush=True)
    return summary


def load_results(folder: Path) -> tuple[dict, dict]:
    """(summary, {run: record}) of a race folder, e.g. data/race/cpu (lesson 08): the runs the summary was made
    from, so that a run finished (and committed) after the last `--summarize` waits for the next one."""
    folder = Path(folder)
    if not (folder / "summary.json").exists():
        raise FileNotFoundError(f"no race results in {folder}: run `mdt-teach race --out {folder}` first")
    summary = json.loads((folder / "summary.json").read_text())
    stems = summary.get("runs") or [p.stem for p in sorted(folder.glob("*_seed*.json"))]
    return summary, {stem: json.loads((folder / f"{stem}.json").read_text()) for stem in stems}


def curve_array(record: dict, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, calibrated seconds, values) of one metric along a variant's curve."""
    c = record["curve"]
    return (np.array([p["step"] for p in c]), np.array([p.get("cal_seconds", p["seconds"]) for p in c]),
            np.array([p[key] for p in c], dtype=float))
