"""The race: summary arithmetic on known curves, variant parsing, and a miniature end-to-end race."""
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import mdt_teach.race_summary as rs
from mdt_teach.race import (CLIP, SEEDS, SWEPT_LR, VARIANTS, RaceSettings, Variant, finished, load_results,
                             parse_variants, run_race, schedule)
from mdt_teach.resources import data_file


def _record(name, points, per_step, seed=0):
    """A finished run with curve points (step, two-eyes, FD) at calibrated `per_step` seconds per step."""
    curve = [{"step": s, "seconds": s * per_step * 1.3, "cal_seconds": s * per_step, "two_eyes": e, "fd_smileys": f}
             for s, e, f in points]
    return {"name": name, "seed": seed, "label": name, "isolates": "-", "model": "-", "opt": "adamw", "lr": 1e-3,
            "weighting": "none", "steps": points[-1][0], "cal_seconds_per_step": per_step, "wall_seconds": 60.0,
            "curve": curve, "final": {"two_eyes": points[-1][1], "fd_smileys": points[-1][2]}}


def test_a_target_is_reached_where_the_curve_crosses_it_interpolated_between_evaluations():
    curve = [{"step": 0, "v": 0.0}, {"step": 100, "v": 0.2}, {"step": 200, "v": 0.6}, {"step": 300, "v": 0.4}]
    assert rs.crossing(curve, "v", 0.5) == 175.0              # 0.2 → 0.6 between 100 and 200: 3/4 of the way
    assert rs.crossing(curve, "v", 0.2) == 100.0              # reached exactly at an evaluation
    assert rs.crossing(curve, "v", 0.0) == 0.0
    assert rs.crossing(curve, "v", 0.7) is None               # never: censored at the budget
    fd = [{"step": 0, "v": 50.0}, {"step": 10, "v": 30.0}, {"step": 20, "v": 10.0}]
    assert rs.crossing(fd, "v", 20.0, higher=False) == 15.0


def test_targets_table_means_spreads_and_ratios_to_dit_of_the_same_seed():
    runs = {f"dit_seed{s}": _record("dit", [(0, 0.0, 90.0), (1000, 0.2, 30.0), (2000, 0.6, 20.0 + s)], 0.1, s)
            for s in (0, 1)}
    runs |= {f"mdtv2_seed{s}": _record("mdtv2", [(0, 0.0, 90.0), (500, 0.5 + 0.1 * s, 15.0), (1000, 0.8, 10.0)],
                                       0.2, s) for s in (0, 1)}
    summary = rs.summarize(runs, headline="two_eyes")
    assert summary["targets"]["fd_dit_final"]["value"] == 20.5               # DiT's final FD, mean over seeds
    dit, v2 = summary["models"]["dit"], summary["models"]["mdtv2"]
    half = dit["targets"]["two_eyes_50"]
    assert half["steps"]["per_seed"] == [1750.0, 1750.0] and half["reached"] == 2
    assert dit["targets"]["two_eyes_75"]["reached"] == 0                    # → "> budget", not dropped
    assert rs.fmt_time(dit["targets"]["two_eyes_75"], "steps") == "> budget"
    t = v2["targets"]["two_eyes_50"]
    assert t["steps"]["per_seed"] == [500.0, 416.6667]                      # 0 → 0.6 crosses 0.5 at 5/6 of 500
    assert t["seconds"]["per_seed"] == [100.0, 83.3333]
    r = t["speedup_steps"]
    assert r["bound"] == "=" and r["value"] == round(1750 / ((500 + 416.6667) / 2), 3)
    assert (r["min"], r["max"]) == (3.5, 4.2)                               # per-seed ratios 1750/500, 1750/416.7
    assert t["speedup_seconds"]["value"] == round(175 / ((100 + 83.3333) / 2), 3)
    # MDTv2 reaches 75% (DiT never does): a lower bound on the ratio, from DiT's budget
    r75 = v2["targets"]["two_eyes_75"]["speedup_steps"]
    assert r75["bound"] == "≥" and rs.fmt_ratio(r75).startswith("≥")
    assert v2["final"]["two_eyes"]["mean"] == 0.8 and summary["compute_hours"] == round(4 * 60 / 3600, 2)


def test_a_variant_that_never_arrives_is_censored_and_its_ratio_is_an_upper_bound():
    runs = {"dit_seed0": _record("dit", [(0, 0.0, 50.0), (100, 0.5, 5.0)], 0.1),
            "mdt_seed0": _record("mdt", [(0, 0.0, 50.0), (100, 0.2, 8.0)], 0.2)}
    row = rs.summarize(runs, headline="two_eyes")["models"]["mdt"]["targets"]["two_eyes_50"]
    assert row["reached"] == 0 and row["steps"]["per_seed"] == [100.0]      # counted as its budget
    assert row["speedup_steps"]["bound"] == "≤" and row["speedup_steps"]["value"] == 1.0


def _pair_record(name, seed, points, per_step=0.1):
    """A relational-world record: curve points (step, pair agreement), FD falling with the score."""
    rec = _record(name, [(st, 0.9, 50.0 - 40 * v) for st, v in points], per_step, seed)
    for p, (_, v) in zip(rec["curve"], points):
        p["pair_agreement"] = v
    rec["final"]["pair_agreement"] = points[-1][1]
    return rec


def test_contrasts_pair_seeds_within_their_group_and_the_chain_multiplies_to_dit_over_mdtv2():
    """Each chain step reaches 50% pair agreement twice as fast as the one before (seeds 0-2); the 2 × 2 of
    masking × weighting has seeds 0-1 only, so its contrasts are paired over 0-1 while the chain's use 0-2."""
    at50 = {"dit": 1600, "dit_minsnr": 800, "mdtv2_one_pass": 400, "mdtv2_mask0": 200, "mdtv2": 100}
    runs = {}
    for name, step in at50.items():
        for seed in (0, 1, 2):
            s50 = step * (1 + 0.5 * (seed == 2))          # seed 2 is slower for everyone: the ratios stay 2
            runs[f"{name}_seed{seed}"] = _pair_record(name, seed, [(0, 0.0), (s50, 0.5), (2000, 0.6)])
    for name, step in {"mdtv2_no_minsnr": 300, "mdtv2_mask0_no_minsnr": 900}.items():
        for seed in (0, 1):
            runs[f"{name}_seed{seed}"] = _pair_record(name, seed, [(0, 0.0), (step, 0.5), (2000, 0.6)])
    summary = rs.summarize(runs)
    assert summary["headline"] == "pair_agreement"
    assert summary["targets"]["pair_agreement_dit_final"]["value"] == 0.6       # DiT's own final, and half of it
    assert summary["targets"]["pair_agreement_dit_half"]["value"] == 0.3
    gated = rs.summarize(runs, chance=0.35)        # half of DiT's final below the painters' chance line: no levels
    assert gated["chance_line"] == 0.35 and not any(k.startswith("pair_agreement_dit") for k in gated["targets"])
    c = summary["contrasts"]
    for step in ("weighting", "architecture", "second_pass", "masking"):
        assert c[step]["seeds"] == [0, 1, 2] and c[step]["targets"]["pair_agreement_50"]["steps"]["value"] == 2.0
    assert c["masking_with_minsnr"]["seeds"] == c["minsnr_without_masking"]["seeds"] == [0, 1]
    assert c["masking_without_minsnr"]["targets"]["pair_agreement_50"]["steps"]["value"] == 3.0   # 900 / 300
    assert c["minsnr_with_masking"]["targets"]["pair_agreement_50"]["steps"]["value"] == 3.0       # 300 / 100
    assert "mdt_v1_to_v2" not in c                                              # MDT v1 did not run
    assert c["masking"]["final_change"]["pair_agreement"]["mean"] == 0.0
    shares = summary["chain_shares"]["pair_agreement_50"]["steps"]
    assert shares["total"] == 16.0 and all(shares[s]["share"] == 0.25 for s in ("weighting", "masking"))
    assert summary["models"]["mdtv2"]["targets"]["pair_agreement_50"]["speedup_steps"]["value"] == 16.0
    # a chain step whose run never arrives makes its ratio a bound, and the shares undefined
    runs["mdtv2_seed1"] = _pair_record("mdtv2", 1, [(0, 0.0), (2000, 0.4)])
    again = rs.summarize(runs)
    assert again["contrasts"]["masking"]["targets"]["pair_agreement_50"]["steps"]["bound"] == "≤"
    assert again["chain_shares"]["pair_agreement_50"]["steps"]["total"] is None
    assert "mdtv2" in rs.format_table(again) and "second pass" in rs.format_table(again)
    # the page's lead table and its contrasts table, read off the same summary
    lead = rs.lead_table(summary).splitlines()
    assert len(lead) == 2 + len(summary["models"]) and lead[1].startswith("chance: relation-blind painter")
    mdtv2_row = next(line for line in lead if line.startswith("mdtv2 "))
    assert "(16.00×" in mdtv2_row and mdtv2_row.split()[1:3] == ["3", "2000"]     # 1600 / 100 steps, × per step
    contrast = rs.contrast_table(summary).splitlines()
    assert len(contrast) == 1 + len(c)
    assert next(line for line in contrast if line.startswith("the second pass")).endswith("2.00× [2.0–2.0], 2.00× [2.0–2.0]")
    # the chain's masking step and the 2 × 2's are one contrast once their seed sets agree: listed once
    same = {**summary, "contrasts": {**c, "masking": {**c["masking"], "seeds": [0, 1]}}}
    assert "masking_with_minsnr" not in rs.distinct_contrasts(same) and len(rs.distinct_contrasts(summary)) == len(c)
    # the race read at equal steps: DiT seed 0 is at 0.5 at step 1600, so at 0.25 at step 800
    assert rs.at_step(runs["dit_seed0"], "pair_agreement", 800) == 0.25
    assert rs.at_step(runs["dit_seed0"], "pair_agreement", 2001) is None


def test_a_short_race_declares_no_target_at_step_0_and_gives_every_run_a_floor_of_steps():
    """A race of a few seconds on a busy machine: DiT's final FD is worse than the untrained model's, so the FD
    target would be "reached" at step 0 by everyone; it is left out. `min_steps` puts a floor under the budget."""
    runs = {"dit_seed0": _pair_record("dit", 0, [(0, 0.0), (4, 0.0)]),
            "mdtv2_seed0": _pair_record("mdtv2", 0, [(0, 0.0), (2, 0.0)])}
    runs["dit_seed0"]["curve"][-1]["fd_smileys"] = 60.0                  # worse than its step-0 FD of 50
    summary = rs.summarize(runs)
    assert "fd_dit_final" not in summary["targets"] and "pair_agreement_25" in summary["targets"]
    assert "pair_agreement_dit_final" not in summary["targets"]          # DiT's final score 0: no relative target
    assert RaceSettings(budget=0.01).steps(0.5) == 1 and RaceSettings(budget=0.01, min_steps=20).steps(0.5) == 20
    assert RaceSettings(budget=1.0, min_steps=20).steps(0.5) == 120     # the floor binds only when it must


def test_variants_race_at_the_sweeps_learning_rates():
    assert list(VARIANTS) == ["dit", "dit_minsnr", "mdtv2_one_pass", "mdtv2_mask0", "mdtv2", "mdtv2_no_minsnr",
                              "mdtv2_mask0_no_minsnr", "mdt"]
    swept = json.loads(data_file("race/relational/sweep/summary.json").read_text())
    assert SWEPT_LR == {group: g["winner_lr"] for group, g in swept["groups"].items()}
    assert swept["world"] == "smileys@2" and swept["clipping"] == CLIP["max_grad_norm"]
    family = {"DiT-T/4": "DiT-T/4 adamw", "MDT-T/4": "MDT-T/4 adamw", "MDTv2-T/4": "MDTv2-T/4 adamw"}
    for v in VARIANTS.values():   # every variant at its family's lr, clipping at 1, AdamW
        assert v.overrides["lr"] == SWEPT_LR[family[v.model]] and v.overrides["max_grad_norm"] == 1.0, v.name
        assert v.overrides.get("opt", "adamw") == "adamw"
    assert VARIANTS["mdtv2"].overrides == {"opt": "adamw", "lr": SWEPT_LR["MDTv2-T/4 adamw"], "max_grad_norm": 1.0}
    assert VARIANTS["mdtv2_mask0"].overrides["model_args"]["mask_ratio"] == 0.0
    assert VARIANTS["mdtv2_one_pass"].overrides["masked_pass"] is False
    assert {n for n, v in VARIANTS.items() if v.seeds == SEEDS} == set(rs.CHAIN)
    assert parse_variants("dit,mdtv2")[1].model == "MDTv2-T/4"
    with pytest.raises(ValueError, match="unknown race variant"):
        parse_variants("dit,gpt")


def test_each_contrast_changes_one_thing():
    """The two variants of a contrast differ in exactly the ingredient it names (and the lr of their families)."""
    from mdt_teach.recipe import recipe as recipe_of
    def recipe(name):
        v = VARIANTS[name]
        o = {**v.overrides}
        return {"model": v.model, "weighting": o.pop("weighting", recipe_of(v.model)["weighting"]),
                "masked_pass": o.pop("masked_pass", True),
                "mask_ratio": o.pop("model_args", {}).get("mask_ratio", "default"), "rest": o}
    changed = {name: {k for k in recipe(a) if recipe(a)[k] != recipe(b)[k]}
               for name, (a, b, _, _) in rs.CONTRASTS.items()}
    assert changed["weighting"] == {"weighting"}
    assert changed["architecture"] == {"model", "masked_pass", "rest"}   # rest: the MDTv2 family's lr and opt
    assert changed["second_pass"] == {"masked_pass", "mask_ratio"}      # the second pass, with nothing hidden
    assert changed["masking"] == changed["masking_without_minsnr"] == {"mask_ratio"}
    assert changed["minsnr_with_masking"] == changed["minsnr_without_masking"] == {"weighting"}


def test_the_weighting_and_the_masked_pass_reach_the_training_step():
    """The race's switches are not just names: Min-SNR changes the loss, masked_pass=False drops the masked pass."""
    from mdt_teach.race import make_trainer
    small = {"model_args": {"depth": 2, "hidden_size": 32, "num_heads": 2}}
    def first_step(name, batch=4, **extra):
        v = VARIANTS[name]
        v = Variant(v.name, v.model, v.label, v.isolates, {**v.overrides, **extra, "model_args": {
            **v.overrides.get("model_args", {}), **small["model_args"]}})
        trainer = make_trainer(v, Path(tempfile.mkdtemp()), 0, batch, steps=1)
        return trainer.cfg, trainer.train_step()
    cfg, one = first_step("mdtv2_one_pass")
    assert cfg.masked_pass is False and math.isnan(one["m_mse"])
    cfg, two = first_step("mdtv2_mask0")
    assert cfg.masked_pass and not math.isnan(two["m_mse"]) and one["mse"] == two["mse"]   # same first pass
    (cfg_a, a), (cfg_b, b) = first_step("dit", 32), first_step("dit_minsnr", 32)   # some t with SNR > 5
    assert (cfg_a.weighting, cfg_b.weighting) == ("none", "min_snr") and a["mse"] == b["mse"] and a["loss"] != b["loss"]


def test_the_race_trains_seed_by_seed():
    order = [(v.name, s) for v, s in schedule(parse_variants("dit,mdtv2,mdtv2_no_minsnr"))]
    assert order == [("dit", 0), ("mdtv2", 0), ("mdtv2_no_minsnr", 0), ("dit", 1), ("mdtv2", 1),
                     ("mdtv2_no_minsnr", 1), ("dit", 2), ("mdtv2", 2)]
    assert [(v.name, s) for v, s in schedule(parse_variants("mdt"), seeds=[3, 1])] == [("mdt", 1), ("mdt", 3)]


def test_a_race_cannot_mix_worlds(tmp_path):
    """Records name the world they were raced on; the committed ones (no world recorded) are classic."""
    settings = RaceSettings()
    legacy = tmp_path / "dit_seed0.json"
    legacy.write_text(json.dumps({"settings": {k: v for k, v in settings.__dict__.items() if k != "world"}}))
    with pytest.raises(ValueError, match="was raced on smileys-classic@1, not smileys@2; a race cannot mix worlds"):
        finished(legacy, settings)
    assert finished(legacy, RaceSettings(world="smileys-classic"))["settings"]["budget"] == settings.budget
    now = tmp_path / "mdtv2_seed0.json"
    now.write_text(json.dumps({"world": "smileys@2", "settings": settings.__dict__}))
    assert finished(now, settings)["world"] == "smileys@2"
    with pytest.raises(ValueError, match="other settings"):
        finished(now, RaceSettings(budget=3.0))


@pytest.mark.slow
def test_miniature_race_end_to_end(tmp_path):
    small = {"model_args": {"depth": 2, "hidden_size": 32, "num_heads": 2}}
    variants = [Variant("dit", "DiT-T/4", "DiT", "baseline", small, seeds=(0, 1)),
                Variant("mdtv2", "MDTv2-T/4", "MDTv2", "all", small)]
    out, work = tmp_path / "race", tmp_path / "runs"
    out.mkdir()
    (out / "calibration.json").write_text(json.dumps({"dit": 0.625, "mdtv2": 0.9375}))   # a busy machine
    settings = RaceSettings(budget=1 / 16, batch_size=8, eval_minutes=1 / 64, n=16, n_final=32,   # cannot cut the
                            probe_every=2, final_probe_faces=16)                  # budget: 6 and 4 steps exactly
    summary = run_race(out, settings, variants, work=work)
    assert sorted(p.stem for p in out.glob("*_seed*.json")) == ["dit_seed0", "dit_seed1", "mdtv2_seed0"]
    assert list(summary["models"]) == ["dit", "mdtv2"] and summary["models"]["dit"]["seeds"] == [0, 1]
    rec = json.loads((out / "mdtv2_seed0.json").read_text())
    steps = [p["step"] for p in rec["curve"]]
    assert steps == [0, 1, 2, 3, 4] and rec["steps"] == 4
    assert rec["steps"] == settings.steps(rec["cal_seconds_per_step"])      # the budget at the calibrated speed
    assert {"two_eyes", "fd_smileys", "funnel_face_found", "cal_seconds"} <= set(rec["curve"][-1])
    probed = [p for p in rec["curve"] if "probe_eye" in p]        # the probe hook: every 2nd evaluation, not at 0
    assert [p["step"] for p in probed] == [2, 4] and probed[0]["probe_seconds"] > 0
    assert {"probe_chance", "probe_follow", "probe_follow_chance"} <= set(probed[0])   # chance line, follow test
    final = rec["final"]                                          # more samples and a probe at the end
    assert final["samples"] == 32 and final["two_eyes_ci"][0] <= final["two_eyes"] <= final["two_eyes_ci"][1]
    assert 0 < final["probe_faces"] <= 16 and "probe_eye" in final
    assert list((out / "mdtv2_seed0").glob("step_*.png"))
    # resumable: a second call reuses the finished runs and the calibration
    again = run_race(out, settings, variants, work=work)
    assert again["models"] == summary["models"]
    # the results are the runs the summary was made from: one finished later waits for the next summary
    (out / "mdtv2_seed1.json").write_text((out / "mdtv2_seed0.json").read_text())
    assert sorted(load_results(out)[1]) == ["dit_seed0", "dit_seed1", "mdtv2_seed0"]
    with pytest.raises(ValueError, match="other settings"):      # a finished run of another budget is refused
        run_race(out, RaceSettings(budget=0.05, batch_size=8, eval_minutes=1 / 64, n=16, n_final=32), variants,
                 work=work)


@pytest.mark.slow
def test_kill_9_of_mdt_teach_race_then_the_same_command_continues_it(tmp_path):
    """`mdt-teach race` over two seeds, killed while seed 1 trains (right after a checkpoint) and run again: it
    skips the finished seed 0, resumes seed 1, and ends with the scores of a race never interrupted. On one
    thread (MDT_THREADS=1), as the committed races ran; tests/test_resume.py holds the default thread count."""
    def command(name, seeds="0,1"):
        out = tmp_path / name
        out.mkdir(exist_ok=True)
        (out / "calibration.json").write_text(json.dumps({"dit": 1.0}))   # fixed speed: 12 steps for 12 s
        return [sys.executable, "-m", "mdt_teach", "race", "--variants", "dit", "--seeds", seeds,
                "--budget", str(12 / 60), "--batch-size", "8", "--eval-minutes", str(4 / 60), "--eval-samples", "16",
                "--final-samples", "16", "--probe-every", "0", "--out", str(out), "--work", str(tmp_path / f"work_{name}")]

    env = {**os.environ, "MDT_THREADS": "1"}
    subprocess.run(command("full", seeds="1"), check=True, capture_output=True, timeout=300, env=env)   # uncut

    proc = subprocess.Popen(command("cut"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    ckpt = tmp_path / "work_cut" / "dit_seed1" / "ckpt" / "ckpt_0000008.pt"
    deadline = time.time() + 240
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL                                   # died mid-race ...
    assert (tmp_path / "cut" / "dit_seed0.json").exists() and not (tmp_path / "cut" / "dit_seed1.json").exists()

    again = subprocess.run(command("cut"), capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "race: dit_seed0 already finished" in again.stdout and "race: dit_seed1 resumes at step" in again.stdout
    full, cut = (json.loads((tmp_path / n / "dit_seed1.json").read_text()) for n in ("full", "cut"))
    assert cut["steps"] == full["steps"] == 12
    strip = lambda curve: [{k: v for k, v in p.items() if "seconds" not in k} for p in curve]   # noqa: E731
    assert strip(cut["curve"]) == strip(full["curve"])     # the same scores at every evaluation
    assert cut["final"] == full["final"]
    assert [p["step"] for p in cut["curve"]] == list(range(0, 13, 4))
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["threads"] == [1]   # as the runs record
    assert not (tmp_path / "cut" / "dit_seed1" / "curve_partial.json").exists()


def test_learning_rate_sweep_picks_by_its_declared_rule(tmp_path, monkeypatch):
    """Learning rates per model family, one budget; the winner has the highest final pair agreement (ties within
    0.03: the lowest FD, then the smaller lr)."""
    import mdt_teach.sweep as sweep

    monkeypatch.setattr(sweep, "SWEEP", {("DiT-T/4", "adamw"): (1e-3, 3e-3)})
    monkeypatch.setattr(sweep, "EXTEND", 0)          # the edge rule has its own test
    small = {"depth": 2, "hidden_size": 32, "num_heads": 2}
    summary = sweep.run_sweep(tmp_path / "race", budget=0.01, batch_size=8, n=16, work=tmp_path / "runs",
                              model_args=small)
    group = summary["groups"]["DiT-T/4 adamw"]
    assert [r["lr"] for r in group["runs"]] == [1e-3, 3e-3] and group["steps"] >= 1
    top = max(r["pair_agreement"] for r in group["runs"])
    se = lambda p: p * (1 - p) / 16                                                # noqa: E731  (16 samples)
    tied = [r for r in group["runs"] if top - r["pair_agreement"] <= 2 * (se(top) + se(r["pair_agreement"])) ** 0.5]
    assert group["winner_lr"] == min(tied, key=lambda r: (r["fd_smileys"], r["lr"]))["lr"]
    assert summary["rule"] == sweep.SWEEP_RULE and (tmp_path / "race" / "sweep" / "summary.json").exists()
    assert group["first_rule_winner_lr"] in (1e-3, 3e-3) and summary["first_rule"] == sweep.FIRST_RULE
    run = json.loads((tmp_path / "race" / "sweep" / "dit_adamw_lr0.001.json").read_text())
    assert run["world"] == "smileys@2" and run["lr"] == 1e-3 and summary["clipping"] == 1.0
    rec = lambda lr, pair, fd: {"lr": lr, "curve": [{"pair_agreement": pair, "fd_smileys": fd}]}   # noqa: E731
    # at 512 samples two standard errors of a difference near 30% are about 0.057
    assert sweep.winner([rec(1e-3, 0.10, 10.0), rec(2e-3, 0.30, 30.0), rec(4e-3, 0.26, 20.0)], 512)["lr"] == 4e-3
    assert sweep.winner([rec(1e-3, 0.10, 10.0), rec(2e-3, 0.30, 30.0), rec(4e-3, 0.23, 20.0)], 512)["lr"] == 2e-3
    assert sweep.winner([rec(1e-3, 0.0, 40.0), rec(2e-3, 0.0, 40.0)], 512)["lr"] == 1e-3   # all at the floor: FD
    # near 0 a difference of three standard errors is not a tie (the amendment); the first rule called it one
    dit = [rec(1e-3, 0.0, 59.6), rec(2e-3, 0.0, 67.1), rec(4e-3, 8 / 512, 65.2)]
    assert sweep.winner(dit, 512)["lr"] == 4e-3 and sweep.winner(dit, 512, fixed_tie=sweep.FIRST_TIE)["lr"] == 1e-3


def test_a_sweep_winner_at_the_edge_of_its_grid_extends_the_grid():
    import mdt_teach.sweep as sweep
    rec = lambda lr, pair: {"lr": lr, "curve": [{"pair_agreement": pair, "fd_smileys": 30.0}]}   # noqa: E731
    assert sweep.next_lr([rec(1e-3, 0.1), rec(2e-3, 0.2)], 0, 512) == 4e-3                # top edge: double
    assert sweep.next_lr([rec(1e-3, 0.3), rec(2e-3, 0.2)], 0, 512) == 5e-4                # bottom edge: halve
    assert sweep.next_lr([rec(1e-3, 0.1), rec(2e-3, 0.2), rec(4e-3, 0.1)], 1, 512) is None  # inside
    assert sweep.next_lr([rec(1e-3, 0.1), rec(2e-3, 0.2)], sweep.EXTEND, 512) is None       # enough


def test_variants_timed_later_share_the_first_calibrations_clock(monkeypatch, tmp_path):
    """A variant calibrated in a later session is timed beside one already known and rescaled to its clock."""
    import mdt_teach.race as race
    monkeypatch.setattr(race, "calibrate", lambda vs, *a, **k: {v.name: {"dit": 0.3, "mdt": 0.9}[v.name] for v in vs})
    more = race.calibrate_more([VARIANTS["mdt"]], {"dit": 0.2}, VARIANTS["dit"], tmp_path, 8)
    assert more == {"mdt": pytest.approx(0.6)}                 # the machine runs 1.5× slower now: 0.9 / 1.5
    assert race.calibrate_more([VARIANTS["mdt"]], {}, None, tmp_path, 8) == {"mdt": 0.9}


def test_a_race_of_only_new_variants_times_them_beside_the_known_baseline(monkeypatch, tmp_path):
    """`mdt-teach race --variants mdt` after a race of DiT and MDTv2: the calibration file knows DiT, not MDT, so
    DiT is timed again beside MDT and MDT's time is put on the file's clock (not left on today's machine's)."""
    import mdt_teach.race as race
    timed_together = []
    def fake_calibrate(vs, *a, **k):
        timed_together.append(sorted(v.name for v in vs))
        return {v.name: {"dit": 0.3, "mdtv2": 0.6, "mdt": 0.9}[v.name] for v in vs}
    monkeypatch.setattr(race, "calibrate", fake_calibrate)
    monkeypatch.setattr(race, "run_variant", lambda *a, **k: None)
    monkeypatch.setattr(race, "summarize_folder", lambda *a, **k: {})
    (tmp_path / "calibration.json").write_text(json.dumps({"mdtv2": 0.5, "dit": 0.2}))
    race.run_race(tmp_path, RaceSettings(), [VARIANTS["mdt"]], work=tmp_path / "runs")
    assert timed_together == [["dit", "mdt"]]                   # the baseline first, though listed second
    assert json.loads((tmp_path / "calibration.json").read_text()) == {"mdtv2": 0.5, "dit": 0.2,
                                                                        "mdt": pytest.approx(0.6)}
    assert race.clock_reference({}, [VARIANTS["mdt"]]) is None


def test_the_gpu_preset_races_s2_models_in_the_256_token_regime():
    from mdt_teach.models import build_model
    from mdt_teach.race import gpu_preset
    variants, settings = gpu_preset(require_gpu=False)
    assert [v.name for v in variants] == list(rs.CHAIN) and all(v.seeds == (0,) for v in variants)
    assert [v.model for v in variants] == ["DiT-S/2"] * 2 + ["MDTv2-S/2"] * 3
    assert build_model("MDTv2-S/2", input_size=32).x_embedder.num_patches == 256     # 16 × 16 tokens
    assert variants[3].overrides["model_args"]["mask_ratio"] == 0.0 and variants[4].overrides["lr"] == SWEPT_LR["MDTv2-T/4 adamw"]
    assert variants[2].overrides["masked_pass"] is False and variants[1].overrides["weighting"] == "min_snr"
    assert 5 * settings.budget <= 8 and settings.n_final == 1024


@pytest.mark.slow
def test_the_gpu_preset_runs_end_to_end_in_miniature_on_the_cpu(monkeypatch, tmp_path):
    """Everything `--preset gpu` runs but CUDA, for its most overridden contestant (MDTv2-S/2, mask ratio 0, the
    GPU recipe): trained, evaluated and summarised by `run_race` (calibration faked to 1 s per step, so the
    budget is 2 steps; 4 samples). About 9 s: the S/2 steps and checkpoints are the cost."""
    import dataclasses
    import mdt_teach.race as race
    variants, settings = race.gpu_preset(require_gpu=False)
    monkeypatch.setattr(race, "calibrate", lambda vs, *a, **k: {v.name: 1.0 for v in vs})
    small = dataclasses.replace(settings, budget=2 / 60, batch_size=2, eval_minutes=2 / 60, n=4, n_final=0,
                                sample_steps="ddim2", probe_every=0)
    summary = race.run_race(tmp_path / "gpu", small, variants[3:4], work=tmp_path / "runs", label="gpu")
    assert summary["label"] == "gpu" and list(summary["models"]) == ["mdtv2_mask0"]
    rec = json.loads((tmp_path / "gpu" / "mdtv2_mask0_seed0.json").read_text())
    assert rec["model"] == "MDTv2-S/2" and rec["steps"] == 2 and [p["step"] for p in rec["curve"]] == [0, 2]


RACE_FOLDERS = sorted(p.parent.name for p in (Path(__file__).resolve().parents[1] / "data" / "race").glob("*/*_seed*.json"))


@pytest.mark.parametrize("folder", sorted(set(RACE_FOLDERS)))
def test_every_committed_race_summary_is_recomputed_from_its_run_files(folder):
    """Every data/race/<folder> with finished runs has a summary.json, and it is what `summarize` computes from
    the per-run files it lists (not re-read from itself), with its world's headline metric and chance line."""
    assert "cpu" in RACE_FOLDERS                                   # the parametrisation sees the committed races
    committed, records = load_results(data_file(f"race/{folder}"))
    first = next(iter(records.values()))
    recomputed = rs.summarize(records, headline=rs.headline_of(first.get("world")),
                              chance=committed.get("chance_line", 0.0))
    for key in ("targets", "models", "contrasts", "chain_shares"):
        if key in committed:
            assert recomputed[key] == committed[key], key


def test_the_race_summary_is_recomputed_from_its_run_files_and_the_readme_states_it():
    """The README's race tables are `lead_table` and `contrast_table` of the relational race recomputed from its
    run files, with the chance line measured afresh from the painters (not read back from the summary)."""
    from pathlib import Path

    from mdt_teach.painters import blind_rates
    committed, records = load_results(data_file("race/relational"))
    world = records["dit_seed0"]["world"]
    recomputed = rs.summarize(records, headline=rs.headline_of(world),
                              chance=max(blind_rates(world.split("@")[0]).values()))
    assert recomputed["chance_line"] == committed["chance_line"]
    assert recomputed["models"] == committed["models"] and recomputed["contrasts"] == committed["contrasts"]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for table in (rs.lead_table(recomputed, markdown=True), rs.contrast_table(recomputed, markdown=True)):
        assert table in readme, f"README.md should hold the race table:\n{table}"
    # the recomputation can fail: one run's final score changed moves the summary
    records["dit_seed0"]["final"]["pair_agreement"] += 0.2
    assert rs.summarize(records)["models"] != committed["models"]


@pytest.mark.parametrize("argv, match", [
    (["race", "--seeds", "0,a"], "--seeds takes comma-separated non-negative integers"),
    (["race", "--seeds", "-1"], "--seeds takes comma-separated non-negative integers"),
    (["race", "--variants", "dit,gpt"], "unknown race variant(s) gpt"),
    (["race", "--eval-minutes", "0"], "--eval-minutes"),
    (["race", "--final-samples", "-1"], "--final-samples must be 0"),
    (["race", "--preset", "gpu"], "--preset gpu needs a CUDA GPU"),
    (["race", "--summarize", "--out", "empty"], "no finished race runs in empty"),
])
def test_bad_race_input_is_one_line_and_trains_nothing(argv, match, tmp_path, monkeypatch, capsys):
    from mdt_teach.cli import main
    from mdt_teach.config import detect_capabilities
    if "gpu" in argv and detect_capabilities().cuda:
        pytest.skip("this machine has a GPU")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mdt-teach race: ") and match in err[0], err
    assert [p.name for p in tmp_path.iterdir()] == ["empty"] and not any((tmp_path / "empty").iterdir())
