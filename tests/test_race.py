"""The race: summary arithmetic on known curves, variant parsing, and a miniature end-to-end race."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mdt_teach.race import VARIANTS, Variant, parse_variants, run_race, summarize, with_calibrated_seconds


def _record(name, points, per_step):
    curve = [{"step": s, "seconds": s * per_step * 1.3, "two_eyes": e, "fd_smileys": f} for s, e, f in points]
    rec = {"label": name, "isolates": "-", "steps": points[-1][0], "seconds": 1.0, "seconds_per_step": 0.1,
           "curve": curve}
    return with_calibrated_seconds(rec, per_step)


def test_summary_speedups_at_equal_steps_and_equal_time():
    dit = _record("dit", [(0, 0.0, 50.0), (1000, 0.1, 20.0), (2000, 0.3, 10.0)], per_step=0.1)
    mdt = _record("mdtv2", [(0, 0.0, 50.0), (500, 0.35, 9.0), (1000, 0.6, 5.0)], per_step=0.2)
    s = summarize({"dit": dit, "mdtv2": mdt})
    assert s["targets"] == {"two_eyes": 0.3, "fd_smileys": 10.0}
    row = s["models"]["mdtv2"]
    assert row["two_eyes_reached_at_step"] == 500 and row["fd_smileys_reached_at_step"] == 500
    assert row["two_eyes_speedup_steps"] == 4.0          # DiT needed 2000 steps, MDTv2 500
    assert row["two_eyes_speedup_seconds"] == 2.0        # 200 s vs 100 s at the calibrated speeds
    assert s["models"]["dit"]["two_eyes_speedup_steps"] == 1.0


def test_a_model_that_never_reaches_the_target_has_no_speedup():
    dit = _record("dit", [(0, 0.0, 50.0), (100, 0.5, 5.0)], per_step=0.1)
    slow = _record("mdt", [(0, 0.0, 50.0), (100, 0.2, 8.0)], per_step=0.2)
    row = summarize({"dit": dit, "mdt": slow})["models"]["mdt"]
    assert row["two_eyes_reached_at_step"] is None and row["two_eyes_speedup_steps"] is None


def test_variants_cover_the_recipes_and_ablations():
    assert list(VARIANTS) == ["dit", "mdt", "mdtv2", "mdtv2_mask0", "mdtv2_adamw", "dit_minsnr"]
    assert parse_variants("dit,mdtv2")[1].model == "MDTv2-T/4"
    # the committed race's optimizers stay pinned whatever the trainer's tiny default is
    assert VARIANTS["mdtv2"].overrides["opt"] == VARIANTS["mdtv2_mask0"].overrides["opt"] == "adan"
    assert VARIANTS["mdtv2_adamw"].overrides["lr"] == VARIANTS["mdtv2"].overrides["lr"] == 1e-3
    with pytest.raises(ValueError, match="unknown race variant"):
        parse_variants("dit,gpt")


@pytest.mark.slow
def test_miniature_race_end_to_end(tmp_path):
    small = {"model_args": {"depth": 2, "hidden_size": 32, "num_heads": 2}}
    variants = [Variant("dit", "DiT-T/4", "DiT", "baseline", small),
                Variant("mdtv2", "MDTv2-T/4", "MDTv2", "all", small)]
    out = tmp_path / "race"
    summary = run_race(out, budget=0.03, variants=variants, batch_size=8, every=4, n=16, work=tmp_path / "runs",
                       probe_every=1000)
    assert set(summary["models"]) == {"dit", "mdtv2"}
    rec = json.loads((out / "mdtv2.json").read_text())
    steps = [p["step"] for p in rec["curve"]]
    assert steps[0] == 0 and steps == sorted(steps) and steps[-1] == rec["steps"] >= 4
    assert {"two_eyes", "fd_smileys", "funnel_face_found", "cal_seconds"} <= set(rec["curve"][-1])
    probed = [p for p in rec["curve"] if "probe_eye" in p]        # the probe hook: every 1000th evaluation
    assert [p["step"] for p in probed] == [0] and probed[0]["probe_eye"] == 0 and probed[0]["probe_seconds"] > 0
    assert list((out / "mdtv2").glob("step_*.png"))
    # resumable: a second call reuses the finished variants and the calibration
    again = run_race(out, budget=0.03, variants=variants, batch_size=8, every=4, n=16, work=tmp_path / "runs")
    assert again["models"]["mdtv2"]["steps"] == summary["models"]["mdtv2"]["steps"]


@pytest.mark.slow
def test_kill_9_of_mdt_teach_race_then_the_same_command_continues_it(tmp_path):
    """`mdt-teach race` killed mid-variant (right after a checkpoint) and run again ends with the scores of a race
    that was never interrupted, evaluation for evaluation."""
    def command(name):
        out = tmp_path / name
        out.mkdir(exist_ok=True)
        (out / "calibration.json").write_text(json.dumps({"dit": 1.0}))   # fixed speed: 40 steps for 40 s
        return [sys.executable, "-m", "mdt_teach", "race", "--variants", "dit", "--budget", str(40 / 60),
                "--batch-size", "8", "--eval-every", "4", "--eval-samples", "16", "--out", str(out),
                "--work", str(tmp_path / f"work_{name}")]

    subprocess.run(command("full"), check=True, capture_output=True, timeout=300)

    proc = subprocess.Popen(command("cut"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "work_cut" / "dit" / "ckpt" / "ckpt_0000008.pt"
    deadline = time.time() + 240
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and not (tmp_path / "cut" / "dit.json").exists()   # died mid-race

    again = subprocess.run(command("cut"), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "race: dit resumes at step" in again.stdout
    full, cut = (json.loads((tmp_path / n / "dit.json").read_text()) for n in ("full", "cut"))
    assert cut["steps"] == full["steps"] == 40
    strip = lambda curve: [{k: v for k, v in p.items() if "seconds" not in k} for p in curve]   # noqa: E731
    assert strip(cut["curve"]) == strip(full["curve"])         # the same scores at every evaluation
    assert [p["step"] for p in cut["curve"]] == list(range(0, 41, 4))
    assert not (tmp_path / "cut" / "dit" / "curve_partial.json").exists()


def test_learning_rate_sweep_picks_by_its_declared_rule(tmp_path, monkeypatch):
    """Three learning rates per (model, optimizer), one budget; the winner is the lowest final FD (ties: two-eyes)."""
    import mdt_teach.sweep as sweep

    monkeypatch.setattr(sweep, "SWEEP", {("DiT-T/4", "adamw"): (1e-3, 3e-3)})
    small = {"depth": 2, "hidden_size": 32, "num_heads": 2}
    summary = sweep.run_sweep(tmp_path / "race", budget=0.01, batch_size=8, n=16, work=tmp_path / "runs",
                              model_args=small)
    group = summary["groups"]["DiT-T/4 adamw"]
    assert [r["lr"] for r in group["runs"]] == [1e-3, 3e-3] and group["steps"] >= 1
    best = min(group["runs"], key=lambda r: r["fd_smileys"])
    assert group["winner_lr"] == best["lr"] or abs(group["runs"][0]["fd_smileys"] - best["fd_smileys"]) <= sweep.TIE
    assert summary["rule"] == sweep.SWEEP_RULE and (tmp_path / "race" / "sweep" / "summary.json").exists()
    rec = lambda lr, fd, two: {"lr": lr, "curve": [{"fd_smileys": fd, "two_eyes": two}]}   # noqa: E731
    assert sweep.winner([rec(1e-3, 10.0, 0.1), rec(2e-3, 10.3, 0.2), rec(4e-3, 12.0, 0.9)])["lr"] == 2e-3
    assert sweep.winner([rec(1e-3, 10.0, 0.2), rec(2e-3, 10.3, 0.2)])["lr"] == 1e-3
