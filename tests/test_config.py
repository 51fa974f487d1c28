"""setup(): profile choice, dtype decision and seeding, with the machine's capabilities injected."""
import random

import numpy as np
import pytest
import torch

from mdt_teach.config import Capabilities, choose_profile, decide, setup, static_mode

CPU = Capabilities(cuda=False, cpu_count=2)
T4 = Capabilities(cuda=True, bf16=False, cpu_count=2, device_name="Tesla T4", colab=True)
A100 = Capabilities(cuda=True, bf16=True, cpu_count=32, device_name="A100")


def test_auto_profile_follows_cuda():
    assert choose_profile(None, CPU, env={}) == "tiny"
    assert choose_profile(None, T4, env={}) == "small"
    assert choose_profile(None, A100, env={}) == "small"  # full only when asked


def test_priority_argument_over_env_over_auto():
    assert choose_profile(None, A100, env={"MDT_PROFILE": "full"}) == "full"
    assert choose_profile("tiny", A100, env={"MDT_PROFILE": "full"}) == "tiny"


def test_dtype_by_hardware():
    cpu = decide(None, CPU, env={})
    assert (cpu.device, cpu.dtype, cpu.grad_scaler, cpu.threads) == ("cpu", "float32", False, 2)
    t4 = decide(None, T4, env={})
    assert (t4.device, t4.dtype, t4.grad_scaler) == ("cuda", "float16", True)
    a100 = decide("full", A100, env={})
    assert (a100.device, a100.dtype, a100.grad_scaler, a100.use_vae) == ("cuda", "bfloat16", False, True)
    assert a100.torch_dtype is torch.bfloat16


def test_full_checkpoints_at_the_official_cadence():
    """Every 10,000 steps as the official loop; the checkpoint sizes config.py quotes (weights, EMA and the
    optimizer's buffers, fp32): an MDTv2-XL/2 one is 17.8 GB, which every rank waits for."""
    from mdt_teach.plan import meta_model
    assert [decide(p, A100, env={}).ckpt_every for p in ("tiny", "small", "full")] == [500, 500, 10_000]
    params = {name: sum(p.numel() for p in meta_model(name).parameters()) for name in ("MDTv2-T/4", "MDTv2-S/2",
                                                                                        "MDTv2-XL/2")}
    assert round(4 * 4 * params["MDTv2-T/4"] / 1e6, -1) == 40              # tiny: AdamW, 2 buffers (~40 MB)
    assert round(6 * 4 * params["MDTv2-S/2"] / 1e9, 1) == 0.9               # small: Adan, 4 buffers
    assert round(params["MDTv2-XL/2"] / 1e6) == 742 and round(6 * 4 * params["MDTv2-XL/2"] / 1e9, 1) == 17.8


def test_a_run_checkpoints_at_its_profiles_cadence_unless_told_and_keeps_it_on_resume():
    from dataclasses import replace
    from mdt_teach.recipe import TrainConfig, merge_for_resume, resolve
    full = resolve(TrainConfig(model="MDTv2-XL/2"), decide("full", A100, env={}))
    assert full.ckpt_every == 10_000 and resolve(TrainConfig(), decide("tiny", CPU, env={})).ckpt_every == 500
    assert resolve(TrainConfig(ckpt_every=7), decide("full", A100, env={})).ckpt_every == 7
    saved = replace(full, out="r")
    assert merge_for_resume(TrainConfig(resume=True), saved, "r").ckpt_every == 10_000      # not given: kept
    assert merge_for_resume(TrainConfig(resume=True, ckpt_every=50), saved, "r").ckpt_every == 50


def test_unknown_profile_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        decide("huge", CPU, env={})


def test_setup_seeds_and_prints_one_banner(capsys):
    cfg = setup("tiny", seed=7, caps=CPU)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    setup("tiny", seed=7, caps=CPU)
    b = (random.random(), np.random.rand(), torch.rand(1).item())
    assert a == b
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and out[0] == cfg.banner and "profile tiny" in out[0]
    with pytest.raises(Exception):
        cfg.profile = "small"  # frozen


def test_colab_without_gpu_prints_runtime_hint(capsys):
    setup(None, caps=Capabilities(cuda=False, cpu_count=2, colab=True))
    assert "Runtime → Change runtime type → GPU" in capsys.readouterr().out


def test_static_mode(monkeypatch):
    monkeypatch.setenv("MDT_STATIC", "1")
    assert static_mode()
    monkeypatch.setenv("MDT_STATIC", "0")
    assert not static_mode()


def test_only_config_touches_cuda():
    """Design rule: no other module looks at torch.cuda or picks a dtype."""
    from pathlib import Path

    import mdt_teach

    pkg = Path(mdt_teach.__file__).parent
    offenders = [p.name for p in pkg.rglob("*.py")
                 if p.name != "config.py" and "torch.cuda.is_available" in p.read_text()]
    assert offenders == []


def test_threads_override_for_a_busy_machine():
    assert decide(None, CPU, env={"MDT_THREADS": "1"}).threads == 1
    assert decide(None, Capabilities(cpu_count=64), env={}).threads == 8
