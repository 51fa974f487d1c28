"""Checkpoints never run code: a pickle with a `__reduce__` payload, given to every command and loader that
takes a checkpoint, is refused with one sentence and its payload never runs; broken files get one sentence too."""
import os
import subprocess
import sys

import pytest
import torch

from mdt_teach import checkpoint, compat, lessons, metrics
from mdt_teach.cli import main
from mdt_teach.models import build_model

SMALL = ["--model", "DiT-T/4", "--model-arg", "depth=2", "--model-arg", "hidden_size=32", "--model-arg",
         "num_heads=2", "--threads", "1", "--no-progress", "--eval-samples", "0", "--grid-samples", "0"]


class Payload:
    """Unpickling this object would create the file `marker` (os.system would do anything else just as well)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_file(path, marker, wrapper=lambda p: {"format": checkpoint.FORMAT, "model": p}):
    """A torch file whose unpickling runs the payload."""
    torch.save(wrapper(Payload(marker)), path)
    return path


def one_line(capsys, argv):
    """Run the CLI: exit code 2 and exactly one stderr line, returned."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mdt-teach {argv[0]}: "), err
    return err[0]


def test_the_payload_is_real(tmp_path):
    """Control: the same file loaded the unsafe way does run the payload (so the tests below can fail)."""
    marker = tmp_path / "ran"
    torch.load(evil_file(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("argv", [
    ["sample", "--ckpt", "EVIL", "--out", "s.png"],
    ["eval", "--ckpt", "EVIL"],
    ["convert", "EVIL"],
    ["convert", "EVIL", "--upgrade"],
])
def test_every_command_refuses_the_payload(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "ran"
    evil = evil_file(tmp_path / "evil.pt", marker)
    line = one_line(capsys, [str(evil) if a == "EVIL" else a for a in argv])
    assert "evil.pt asks to rebuild Python objects (posix.system" in line and "nothing in it ran" in line
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pt"]   # nothing written


def test_train_resume_refuses_the_payload(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *SMALL, "--steps", "1", "--batch-size", "2", "--out", "run"]) == 0
    capsys.readouterr()
    ckpt = checkpoint.list_checkpoints(tmp_path / "run")[-1]
    marker = tmp_path / "ran"
    evil_file(ckpt, marker)                                    # the run's own checkpoint, replaced
    line = one_line(capsys, ["train", "--resume", "--out", "run", "--steps", "2"])
    assert "asks to rebuild Python objects" in line and not marker.exists()


def test_library_loaders_refuse_the_payload(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    evil = evil_file(tmp_path / "evil.pt", marker, wrapper=lambda p: {"format": lessons.FORMAT, "x": p})
    monkeypatch.setenv("MDT_TEACH_ROOT", str(tmp_path))
    (tmp_path / "data").mkdir()
    os.replace(evil, tmp_path / "data" / "evil.pt")
    loaders = [lambda: lessons.load_lesson_checkpoint("evil.pt"),
               lambda: compat.load_official(tmp_path / "data" / "evil.pt"),
               lambda: compat.load_model(tmp_path / "data" / "evil.pt"),
               lambda: checkpoint.read_checkpoint(tmp_path / "data" / "evil.pt"),
               lambda: metrics.load_feature_net(tmp_path / "data" / "evil.pt")]
    for load in loaders:
        with pytest.raises(ValueError, match="asks to rebuild Python objects"):
            load()
    assert not marker.exists()


def test_broken_files_get_one_sentence(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "random.pt").write_bytes(os.urandom(4096))
    good = tmp_path / "good.pt"
    torch.save(build_model("MDTv2-T/4", depth=4, hidden_size=32, num_heads=2).state_dict(), good)
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[:3000])
    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "other_model.pt")
    for name, match in [("random.pt", "is not a readable PyTorch checkpoint"),
                        ("truncated.pt", "is not a readable PyTorch checkpoint"),
                        ("other_model.pt", "not a DiT or MDT checkpoint")]:
        for command in (["sample", "--ckpt", name, "--out", "s.png"], ["eval", "--ckpt", name], ["convert", name]):
            assert match in one_line(capsys, command), (name, command)
    assert not (tmp_path / "s.png").exists()


def test_a_format_1_checkpoint_is_upgraded_once(tmp_path, capsys):
    """Format 1 kept numpy's RNG state as an ndarray: refused with the upgrade command, then upgraded and read."""
    import random

    import numpy as np

    model = build_model("DiT-T/4", depth=2, hidden_size=32, num_heads=2)
    numpy_state = np.random.get_state()
    old = {"format": checkpoint.OLD_FORMAT, "step": 3, "model": model.state_dict(), "ema": model.state_dict(),
           "rng": [{"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}],
           "config": {"model": "DiT-T/4"}, "model_config": {}}
    path = tmp_path / "ckpt_0000003.pt"
    torch.save(old, path)
    with pytest.raises(ValueError, match=r"format 1 .*mdt-teach convert --upgrade"):
        checkpoint.read_checkpoint(path)
    assert main(["convert", str(path), "--upgrade"]) == 0
    state = checkpoint.read_checkpoint(path)                   # now plain data, read by the safe reader
    assert state["step"] == 3 and state["format"] == checkpoint.FORMAT
    upgraded = state["rng"][0]["numpy"]
    assert torch.equal(upgraded["keys"], torch.from_numpy(numpy_state[1].astype(np.int64)))   # the same state
    assert (upgraded["name"], upgraded["pos"]) == (numpy_state[0], numpy_state[2])


def test_a_subprocess_sample_never_runs_the_payload(tmp_path):
    """The console script, as a user runs it."""
    marker = tmp_path / "ran"
    evil = evil_file(tmp_path / "evil.pt", marker)
    done = subprocess.run([sys.executable, "-m", "mdt_teach", "sample", "--ckpt", str(evil), "--out",
                           str(tmp_path / "s.png")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "nothing in it ran" in done.stderr and "Traceback" not in done.stderr
    assert not marker.exists()
