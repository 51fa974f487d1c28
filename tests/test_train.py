"""Training engine: recipes, EMA, deterministic data order, atomic checkpoints, NaN stop, accumulation."""
import json
import math

import numpy as np
import pytest
import torch

import mdt_teach.train as train_mod
from mdt_teach.checkpoint import atomic_save, checkpoint_path, list_checkpoints, read_checkpoint
from mdt_teach.data_order import EpochPermutation, LoaderSource, shard_positions
from mdt_teach.distributed import DistInfo
from mdt_teach.ema import EMA
from mdt_teach.recipe import TrainConfig, lr_at, recipe
from mdt_teach.runlog import truncate_jsonl
from mdt_teach.seeds import mix_seed
from mdt_teach.train import NonFiniteLossError, Trainer

SMALL = dict(depth=4, hidden_size=32, num_heads=2)


def tiny(tmp_path, **kw) -> TrainConfig:
    """A 4-block, width-32 MDTv2 on smileys, batch 4, checkpoint every step, no sampling."""
    base = dict(model="MDTv2-T/4", model_args=dict(SMALL), batch_size=4, steps=3, out=str(tmp_path / "run"),
                ckpt_every=1, eval_samples=0, grid_samples=0, progress=False, threads=1)
    return TrainConfig(**{**base, **kw})


def quiet(*args, **kwargs):
    """Swallow the trainer's log lines."""


# ---------------------------------------------------------------------------------------------
# Recipes (the official run scripts; docs/toy_recipe.md for the tiny presets)
# ---------------------------------------------------------------------------------------------

def test_official_recipes():
    s2 = recipe("MDTv2-S/2")
    assert (s2["opt"], s2["lr"], s2["weighting"], s2["max_grad_norm"], s2["ema_decay"]) == ("adan", 5e-4, "min_snr", 1.0, 0.9999)
    assert recipe("MDTv2-XL/2")["lr"] == 3e-4
    v1 = recipe("MDT-XL/2")
    assert (v1["opt"], v1["lr"], v1["weighting"], v1["max_grad_norm"]) == ("adamw", 3e-4, "none", 0.0)
    dit = recipe("DiT-XL/2")
    assert (dit["opt"], dit["lr"], dit["weighting"]) == ("adamw", 1e-4, "none")
    assert not s2["ema_warmup"] and not dit["ema_warmup"]


def test_tiny_recipe_is_the_documented_deviation():
    t = recipe("MDTv2-T/4")
    assert (t["opt"], t["lr"], t["ema_decay"], t["ema_warmup"], t["weighting"]) == ("adamw", 4e-3, 0.999, True, "min_snr")
    assert t["max_grad_norm"] == 1.0 and t["betas"] == (0.9, 0.99)
    adan = recipe("MDTv2-T/4", opt="adan")   # the official optimizer on request, at the toy lr
    assert (adan["opt"], adan["lr"], adan["betas"]) == ("adan", 1e-3, None)
    assert (recipe("MDT-T/4")["opt"], recipe("MDT-T/4")["lr"]) == ("adamw", 1e-3)
    assert recipe("DiT-T/4")["betas"] == (0.9, 0.99) and recipe("MDTv2-T/4", opt="adamw")["betas"] == (0.9, 0.99)
    with pytest.raises(ValueError, match="unknown model 'MDTv3-S/2'"):
        recipe("MDTv3-S/2")


def test_lr_warmup_is_linear_then_constant():
    cfg = TrainConfig(lr=1e-3, warmup_steps=4)
    assert [lr_at(cfg, k) for k in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert lr_at(TrainConfig(lr=3e-4), 10_000) == 3e-4


# ---------------------------------------------------------------------------------------------
# EMA
# ---------------------------------------------------------------------------------------------

def test_ema_warmup_decay_values():
    ema = EMA(torch.nn.Linear(2, 2), decay=0.999, warmup=True)
    assert ema.decay_at(0) == pytest.approx(0.1)
    assert ema.decay_at(90) == pytest.approx(91 / 100)
    assert ema.decay_at(100_000) == 0.999
    assert EMA(torch.nn.Linear(2, 2), decay=0.9999, warmup=False).decay_at(0) == 0.9999


def test_ema_update_is_the_official_formula():
    net = torch.nn.Linear(3, 2)
    ema = EMA(net, decay=0.9, warmup=False)
    before = [p.clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema.update(net, step=0)
    for e, b, p in zip(ema.model.parameters(), before, net.parameters()):
        torch.testing.assert_close(e, 0.9 * b + 0.1 * p)
        assert not e.requires_grad


# ---------------------------------------------------------------------------------------------
# Deterministic data order and randomness
# ---------------------------------------------------------------------------------------------

def test_shards_partition_the_global_batch_whatever_the_split():
    one_rank_two_shards = shard_positions(5, 8, DistInfo(), grad_accum=2)
    two_ranks = np.concatenate([shard_positions(5, 8, DistInfo(rank=r, world_size=2), grad_accum=1) for r in range(2)])
    np.testing.assert_array_equal(one_rank_two_shards, np.arange(40, 48))
    np.testing.assert_array_equal(two_ranks, np.arange(40, 48))


def test_epoch_permutation_visits_every_item_once_per_epoch():
    order = EpochPermutation(10, seed=3)
    pairs = order(np.arange(0, 20))
    first, second = [i for _, i in pairs[:10]], [i for _, i in pairs[10:]]
    assert sorted(first) == list(range(10)) and sorted(second) == list(range(10))
    assert first != second                                   # a new permutation each epoch
    assert EpochPermutation(10, seed=3)(np.arange(10)) == pairs[:10]   # a pure function of the seed


def test_mix_seed_is_a_pure_function():
    # pinned: every data order, shard seed and face of a committed run follows from these values
    assert (mix_seed(0, 5, 1), mix_seed(7)) == (8526369622762369816, 6974024797297829445)
    assert len({mix_seed(0, s, r) for s in range(50) for r in range(4)}) == 200
    assert 0 <= mix_seed(2**70, -1) < 2**63


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------

def test_atomic_save_interrupted_midway_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    atomic_save({"step": 1}, path)

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]      # no temp file left


def test_trainer_checkpoint_interrupted_previous_stays_loadable(tmp_path, monkeypatch):
    trainer = Trainer(tiny(tmp_path, steps=2, keep=5), log=quiet)
    trainer.fit()
    assert [p.name for p in list_checkpoints(trainer.out)] == ["ckpt_0000001.pt", "ckpt_0000002.pt"]
    trainer.train_step()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"\x80\x02 partial bytes")
        raise OSError("node preempted")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="preempted"):
        trainer.save()
    monkeypatch.undo()
    assert list_checkpoints(trainer.out)[-1].name == "ckpt_0000002.pt"
    state = read_checkpoint(checkpoint_path(trainer.out, 2))
    assert state["step"] == 2 and set(state) >= {"model", "ema", "opt", "scaler", "rng", "data", "config"}
    assert not list((trainer.out / "ckpt").glob("*.tmp"))


def test_keep_last_k_checkpoints(tmp_path):
    trainer = Trainer(tiny(tmp_path, steps=5, keep=2), log=quiet)
    trainer.fit()
    assert [p.name for p in list_checkpoints(trainer.out)] == ["ckpt_0000004.pt", "ckpt_0000005.pt"]
    state = read_checkpoint(list_checkpoints(trainer.out)[-1])
    assert state["data"]["position"] == 5 * 4 and len(state["rng"]) == 1


def test_foreign_checkpoint_gets_a_clear_error(tmp_path):
    torch.save({"pos_embed": torch.zeros(1)}, tmp_path / "official.pt")
    with pytest.raises(ValueError, match="not an mdt_teach training checkpoint"):
        read_checkpoint(tmp_path / "official.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pt")


def test_truncate_jsonl_drops_steps_after_the_checkpoint(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"step": k, "loss": 1.0}) + "\n" for k in range(1, 8)))
    truncate_jsonl(path, 4)
    assert [json.loads(ln)["step"] for ln in path.read_text().splitlines()] == [1, 2, 3, 4]


# ---------------------------------------------------------------------------------------------
# Non-finite loss
# ---------------------------------------------------------------------------------------------

def test_injected_nan_stops_cleanly_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = train_mod.training_loss

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:                                   # the third step
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(train_mod, "training_loss", poisoned)
    trainer = Trainer(tiny(tmp_path, steps=6), log=quiet)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 3; .*ckpt_0000002\.pt"):
        trainer.fit()
    assert [p.name for p in list_checkpoints(trainer.out)] == ["ckpt_0000001.pt", "ckpt_0000002.pt"]
    assert read_checkpoint(checkpoint_path(trainer.out, 2))["step"] == 2
    logged = [json.loads(ln) for ln in (trainer.out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged] == [1, 2] and all(math.isfinite(m["loss"]) for m in logged)
    assert trainer.step == 2                                  # no optimizer step on the bad batch


# ---------------------------------------------------------------------------------------------
# The step itself
# ---------------------------------------------------------------------------------------------

def test_step_logs_both_mdt_passes_and_clips_with_adan(tmp_path):
    trainer = Trainer(tiny(tmp_path, steps=1, opt="adan"), log=quiet)
    logs = trainer.train_step()
    # loss = mean(w·mse + vb) over both passes with Min-SNR weights 0 < w ≤ 1
    assert logs["vb"] + logs["m_vb"] < logs["loss"] <= logs["mse"] + logs["vb"] + logs["m_mse"] + logs["m_vb"] + 1e-6
    assert math.isfinite(logs["m_mse"]) and logs["lr"] == 1e-3
    assert trainer.opt.defaults["max_grad_norm"] == 1.0       # Adan clips itself without ZeRO
    assert "clip" not in logs


def test_tiny_mdtv2_default_is_adamw_clipped_by_the_trainer(tmp_path):
    trainer = Trainer(tiny(tmp_path, steps=1), log=quiet)
    logs = trainer.train_step()
    assert isinstance(trainer.opt, torch.optim.AdamW) and logs["lr"] == 4e-3
    assert 0 < logs["clip"] <= 1.0                            # AdamW cannot clip itself: the trainer does


def test_dit_has_no_masked_pass_and_adamw(tmp_path):
    trainer = Trainer(tiny(tmp_path, model="DiT-T/4", model_args=dict(depth=2, hidden_size=32, num_heads=2)),
                      log=quiet)
    logs = trainer.train_step()
    assert isinstance(trainer.opt, torch.optim.AdamW) and trainer.opt.defaults["betas"] == (0.9, 0.99)
    assert math.isnan(logs["m_mse"]) and logs["loss"] > 0


def test_every_draw_follows_from_seed_and_step(tmp_path):
    a = Trainer(tiny(tmp_path, out=str(tmp_path / "a")), log=quiet)
    b = Trainer(tiny(tmp_path, out=str(tmp_path / "b")), log=quiet)
    torch.manual_seed(123)                                     # the global RNG state must not matter
    la = [a.train_step()["loss"] for _ in range(2)]
    torch.manual_seed(456)
    lb = [b.train_step()["loss"] for _ in range(2)]
    assert la == lb
    c = Trainer(tiny(tmp_path, out=str(tmp_path / "c"), seed=1), log=quiet)
    assert c.train_step()["loss"] != la[0]


def test_bf16_autocast_step_runs_on_cpu(tmp_path):
    trainer = Trainer(tiny(tmp_path, dtype="bf16"), log=quiet)
    assert trainer.cfg.dtype == "bfloat16"
    assert math.isfinite(trainer.train_step()["loss"])
    assert next(trainer.model.parameters()).dtype == torch.float32   # fp32 master weights


# ---------------------------------------------------------------------------------------------
# Datasets through a DataLoader: deterministic order and augmentations, in workers and after resume
# ---------------------------------------------------------------------------------------------

def test_loader_batches_do_not_depend_on_workers(tmp_path):
    from PIL import Image

    from mdt_teach.data import ImageFolder

    rng = np.random.default_rng(0)
    for k in range(6):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"c{k % 2}_{k}.png")
    folder = ImageFolder(tmp_path, image_size=8, flip=True)
    main, workers = LoaderSource(folder, seed=1, num_workers=0), LoaderSource(folder, seed=1, num_workers=1)
    for step in (0, 1, 2, 7):                                   # 7: a jump, as after a resume
        xa, ya = main.local_batch(step, 4, DistInfo(), 1)
        xb, yb = workers.local_batch(step, 4, DistInfo(), 1)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    flips = [bool(torch.equal(x, x.flip(-1))) for x in xa]       # random images are never symmetric
    assert not any(flips)


def test_in_process_resume_on_a_dataset_is_exact(tmp_path):
    cfg = dict(model="DiT-T/4", model_args=dict(depth=2, hidden_size=32, num_heads=2), data="digits",
               ckpt_every=2)
    full = Trainer(tiny(tmp_path, steps=4, out=str(tmp_path / "full"), **cfg), log=quiet)
    full.fit()
    Trainer(tiny(tmp_path, steps=2, out=str(tmp_path / "cut"), **cfg), log=quiet).fit()
    resumed = Trainer(TrainConfig(resume=True, steps=4, out=str(tmp_path / "cut"), progress=False, threads=1),
                      log=quiet)
    assert resumed.cfg.model == "DiT-T/4" and resumed.cfg.data == "digits"   # the run's own config
    resumed.fit()
    read = lambda run: [json.loads(ln)["loss"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert read(resumed.out) == read(full.out) and len(read(full.out)) == 4
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_paused_time_is_not_training_time(tmp_path):
    import time

    trainer = Trainer(tiny(tmp_path), log=quiet)
    before = trainer.elapsed()
    with trainer.paused():                                     # e.g. sampling a grid
        time.sleep(0.3)
    assert trainer.elapsed() - before < 0.1


def test_fp16_gradscaler_step_runs(tmp_path):
    trainer = Trainer(tiny(tmp_path, dtype="fp16", opt="adamw", max_grad_norm=1.0), log=quiet)
    assert trainer.scaler.is_enabled() and trainer.opt.defaults["betas"] == (0.9, 0.99)
    logs = trainer.train_step()
    assert math.isfinite(logs["loss"]) and 0 < logs["clip"] <= 1       # unscaled before the global clip


def test_deterministic_switch_turns_on_deterministic_kernels(tmp_path):
    try:
        trainer = Trainer(tiny(tmp_path, deterministic=True), log=quiet)
        assert torch.are_deterministic_algorithms_enabled() and trainer.cfg.deterministic
        assert math.isfinite(trainer.train_step()["loss"])    # every kernel of a step has a deterministic version
    finally:
        torch.use_deterministic_algorithms(False)


def test_a_time_budget_shows_its_total_and_what_is_left(tmp_path, capsys):
    trainer = Trainer(tiny(tmp_path, steps=None, minutes=0.05, progress=True, ckpt_every=10**6), log=quiet)
    trainer.fit()
    err = capsys.readouterr().err
    assert "training time:" in err and "/3 [" in err          # 3 s budget: the total, elapsed<remaining
    assert trainer.step >= 1


def test_the_closing_line_names_only_what_the_run_wrote(tmp_path, capsys):
    """No sample grid asked for (grid_samples=0), no checkpoint before the end: the last line says so by
    leaving them out (lesson 07's run printed "samples, ... and checkpoints" with neither written)."""
    Trainer(tiny(tmp_path, steps=2, ckpt_every=10**6), log=quiet).fit()
    line = [s for s in capsys.readouterr().out.splitlines() if s.startswith("mdt-teach train: 2 steps")][-1]
    listed = line.split("; ", 1)[1].rsplit(" in ", 1)[0].split(", ")
    expected = ["samples"] * any((tmp_path / "run" / "samples").glob("*")) + ["metrics.jsonl", "loss_curve.png"] \
        + ["checkpoints"] * any((tmp_path / "run" / "ckpt").glob("*")) + ["summary.json"]
    assert listed == expected and "samples" not in listed
