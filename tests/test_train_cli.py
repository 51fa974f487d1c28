"""`mdt-teach train|sample|eval`: bad input → one clear error and nothing written; a short run's outputs."""
import json

import pytest
from PIL import Image

from mdt_teach.cli import main
from mdt_teach.resources import repo_root

TINY = ["--model", "DiT-T/4", "--model-arg", "depth=2", "--model-arg", "hidden_size=32",
        "--model-arg", "num_heads=2", "--threads", "1", "--no-progress"]


def one_error_line(capsys, argv, match):
    """Run the CLI, expect exit code 2 and a single stderr line containing `match`."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mdt-teach {argv[0]}: ") and match in err[0], err


@pytest.mark.parametrize("argv, match", [
    (["train", "--model", "MDTv3-S/2", "--steps", "1"], "unknown model 'MDTv3-S/2'"),
    (["train", "--data", "no/such/folder", "--steps", "1"], "no/such/folder"),
    (["train", "--steps", "0"], "--steps must be at least 1, got 0"),
    (["train", "--steps", "-3"], "--steps must be at least 1, got -3"),
    (["train", "--steps", "2", "--batch-size", "6", "--grad-accum", "4"], "not divisible by 1 process(es) × 4"),
    (["train", "--steps", "2", "--model-arg", "depth"], "is not KEY=VALUE"),
    (["train", "--steps", "2", "--dtype", "fp8"], "unknown dtype 'fp8'"),
    (["train", "--steps", "2", "--opt", "sgd"], "unknown optimizer 'sgd'"),
    (["train", "--steps", "2", "--model", "DiT-T/4", "--mask-ratio", "0.3"], "DiT does not take mask_ratio"),
    (["train", "--resume"], "no run with a checkpoint under runs/"),
    (["train", "--steps", "2", "--weighting", "snr"], "unknown loss weighting 'snr'"),
    (["train", "--steps", "2", "--sample-steps", "ddim7x"], "unknown respacing"),
    (["train", "--steps", "2", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["train", "--steps", "2", "--batch-size", "-4"], "--batch-size must be at least 1, got -4"),
    (["train", "--steps", "2", "--lr", "0"], "--lr must be a positive number"),
    (["train", "--steps", "2", "--lr", "nan"], "--lr must be a positive number"),
    (["train", "--steps", "2", "--keep", "0"], "--keep must be at least 1"),
    (["train", "--steps", "2", "--threads", "0"], "--threads must be at least 1"),
    (["train", "--steps", "2", "--eval-samples", "-1"], "--eval-samples must be at least 0"),
    (["train", "--steps", "2", "--eval-samples", "1"], "--eval-samples 1 is too few"),
    (["train", "--steps", "2", "--grid-samples", "-8"], "--grid-samples must be at least 0"),
    (["train", "--steps", "2", "--minutes", "-1"], "--minutes must be a positive number"),
    (["train", "--steps", "2", "--method", "euler"], "unknown sampler 'euler'"),
    (["train", "--steps", "2", "--max-grad-norm", "-1"], "--max-grad-norm must be at least 0"),
    (["train", "--steps", "2", "--num-workers", "-2"], "--num-workers must be at least 0"),
    (["train", "--minutes", "1", "--lr-schedule", "cosine"], "--lr-schedule cosine needs --steps"),
    (["train", "--steps", "2", "--lr-schedule", "linear"], "unknown lr schedule 'linear'"),
])
def test_bad_train_input_is_one_line_and_writes_nothing(argv, match, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    one_error_line(capsys, argv, match)
    assert list(tmp_path.iterdir()) == []


def test_out_naming_a_file_is_refused_and_nothing_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("keep me")
    one_error_line(capsys, ["train", *TINY, "--steps", "1", "--out", "notes.txt"], "notes.txt is a file")
    one_error_line(capsys, ["train", *TINY, "--steps", "1", "--out", "notes.txt/run"], "notes.txt is a file")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"] and (tmp_path / "notes.txt").read_text() == "keep me"


def test_a_folder_with_one_unreadable_image_fails_before_the_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    for k in range(5):
        Image.new("RGB", (16, 16), (40 * k, 90, 200)).save(images / f"{k % 2}_{k}.png")
    (images / "1_9.png").write_bytes(b"not a png at all")      # sorted last: not in the first batch
    one_error_line(capsys, ["train", *TINY, "--data", "images", "--steps", "1", "--batch-size", "2",
                            "--out", "runs/x"], "cannot read image images/1_9.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


def test_batch_not_divisible_by_world_size(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")            # what torchrun --nproc_per_node=2 sets
    one_error_line(capsys, ["train", "--steps", "2", "--batch-size", "7"],
                   "global batch 7 is not divisible by 2 process(es)")
    assert list(tmp_path.iterdir()) == []


def test_train_then_sample_and_the_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY, "--steps", "3", "--batch-size", "4", "--ckpt-every", "2", "--grid-samples", "4",
                 "--sample-steps", "4", "--eval-samples", "0", "--out", "runs/t"]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "runs" / "t"
    assert "writing to runs/t/" in out and "in runs/t/" in out
    assert {p.name for p in run.iterdir()} == {"config.json", "metrics.jsonl", "eval.jsonl", "samples", "ckpt",
                                               "loss_curve.png", "summary.json"}
    assert [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert sorted(p.name for p in (run / "ckpt").iterdir()) == ["ckpt_0000002.pt", "ckpt_0000003.pt"]
    assert Image.open(run / "samples" / "final.png").size == (4 * (4 * 33 + 1), 4 * 34)   # upscaled 4×
    assert json.loads((run / "summary.json").read_text())["steps"] == 3
    assert json.loads((run / "config.json").read_text())["lr"] == 1e-3        # the tiny recipe
    assert json.loads((run / "config.json").read_text())["world"] == "smileys@2"  # the world and its version

    # the same folder again without --resume is refused, with nothing touched
    one_error_line(capsys, ["train", *TINY, "--steps", "3", "--batch-size", "4", "--out", "runs/t"],
                   "already holds checkpoints; pass --resume")
    # resuming with a different model is refused
    one_error_line(capsys, ["train", "--resume", "--out", "runs/t", "--model", "MDTv2-T/4"],
                   "was made with other settings (model 'DiT-T/4' → 'MDTv2-T/4')")

    assert main(["sample", "--ckpt", "runs/t/ckpt/ckpt_0000003.pt", "--n", "3", "--steps", "4",
                 "--out", "grid.png"]) == 0
    assert Image.open(tmp_path / "grid.png").size == (3 * 33 + 1, 34)
    assert "DiT-T/4 step 3 (EMA weights)" in capsys.readouterr().out


def test_the_cosine_schedule_is_fixed_in_steps():
    from mdt_teach.recipe import TrainConfig, lr_at, merge_for_resume
    cfg = TrainConfig(lr=2e-3, steps=100, lr_schedule="cosine", world="smileys@2")
    assert [lr_at(cfg, k) for k in (0, 50, 100, 150)] == pytest.approx([2e-3, 1e-3, 0.0, 0.0])
    assert lr_at(TrainConfig(lr=2e-3, steps=100), 50) == 2e-3                     # constant: the official
    with pytest.raises(ValueError, match="decays its lr over 100 steps"):        # a resume cannot move the end
        merge_for_resume(TrainConfig(resume=True, steps=200), cfg, "runs/c")
    assert merge_for_resume(TrainConfig(resume=True), cfg, "runs/c").steps == 100


def test_a_run_cannot_resume_on_another_world():
    """A run of the world before version 2 (no world recorded, data "smileys") or of another version is refused
    on --resume with one sentence; a run of today's world resumes."""
    from mdt_teach.recipe import TrainConfig, merge_for_resume
    for saved in (TrainConfig(data="smileys"), TrainConfig(data="smileys", world="smileys@1"),
                  TrainConfig(data="smileys-varied", world="smileys-varied@1")):
        with pytest.raises(ValueError, match=r"was trained on the world smileys(-varied)?@1, but --data .* is "
                                             r"smileys(-varied)?@2 today; a run cannot change worlds"):
            merge_for_resume(TrainConfig(resume=True), saved, "runs/old")
    ok = merge_for_resume(TrainConfig(resume=True), TrainConfig(data="smileys", world="smileys@2"), "runs/new")
    assert ok.world == "smileys@2"
    assert merge_for_resume(TrainConfig(resume=True), TrainConfig(data="digits"), "runs/d").world is None


def test_sample_accepts_an_official_state_dict(tmp_path, monkeypatch, capsys):
    import torch

    from mdt_teach.models import build_model

    monkeypatch.chdir(tmp_path)
    torch.save(build_model("MDTv2-T/4", depth=4, hidden_size=32, num_heads=2).state_dict(), tmp_path / "official.pt")
    assert main(["sample", "--ckpt", "official.pt", "--n", "2", "--steps", "3", "--labels", "1", "--out", "o.png"]) == 0
    assert "official checkpoint official.pt: 2 samples" in capsys.readouterr().out
    assert Image.open(tmp_path / "o.png").size == (2 * 33 + 1, 34)
    one_error_line(capsys, ["sample", "--ckpt", "official.pt", "--labels", "7", "--out", "p.png"],
                   "--labels go up to 7 but the model has 4 classes")


@pytest.mark.parametrize("argv, match", [
    (["sample", "--ckpt", "missing.pt", "--out", "x.png"], "missing.pt does not exist"),
    (["sample", "--ckpt", "missing.pt", "--out", "x.jpg"], "must name a .png file"),
    (["sample", "--ckpt", "missing.pt", "--labels", "-1"], "must name class ids ≥ 0"),
    (["sample", "--ckpt", "missing.pt", "--n", "0"], "--n must be at least 1"),
    (["sample", "--ckpt", "missing.pt", "--steps", "ddim7x"], "unknown respacing"),
    (["eval", "--ckpt", "missing.pt", "--data", "digits"], "eval scores smileys worlds only"),
    (["eval", "--ckpt", "missing.pt"], "missing.pt does not exist"),
])
def test_bad_sample_and_eval_input(argv, match, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    one_error_line(capsys, argv, match)
    assert list(tmp_path.iterdir()) == []


def test_eval_reports_two_eyes_and_fd(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY, "--steps", "1", "--batch-size", "4", "--grid-samples", "0", "--eval-samples", "0",
                 "--out", "r"]) == 0
    capsys.readouterr()
    assert main(["eval", "--ckpt", "r/ckpt/ckpt_0000001.pt", "--n", "8", "--steps", "4", "--json", "s.json"]) == 0
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["two_eyes"] == 0.0                           # one step of training draws no face
    assert scores["fd_smileys"] > 0 and scores["n"] == 8
    assert "two-eyes 0.0% of 8 samples" in capsys.readouterr().out


def test_the_readme_states_what_the_main_job_reached():
    """The README's main-job sentence is tools/main_job.py's account of data/main_job.json, and that record is
    the main job as it is today: `mdt-teach train` with no arguments, within 10 minutes, well above chance."""
    import sys
    from mdt_teach.recipe import MAIN_JOB_STEPS
    sys.path.insert(0, str(repo_root() / "tools"))
    from main_job import sentence
    record = json.loads((repo_root() / "data" / "main_job.json").read_text())
    assert sentence(record) in (repo_root() / "README.md").read_text()
    assert record["command"] == "mdt-teach train" and len(record["runs"]) >= 3
    for run in record["runs"]:
        assert run["steps"] == MAIN_JOB_STEPS and run["wall_seconds"] <= 600
        assert run["pair_agreement"] > 3 * max(run["chance_line"].values())
        assert run["funnel_face_found"] >= run["funnel_two_eyes"] >= run["funnel_passed"] >= run["pair_agreement"]
