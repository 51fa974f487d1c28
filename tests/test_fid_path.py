"""The paper's evaluation path: sampling presets, the official uint8 conversion, `sample-fid` (shards that
resume, independent of the process count) and `fid` between .npz files."""
import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import linalg

from mdt_teach.checkpoint import FORMAT
from mdt_teach.cli import main
from mdt_teach.cli.sample import DEFAULTS, parse_labels, sampling_settings
from mdt_teach.compat import load_model
from mdt_teach.diffusion import GaussianDiffusion
from mdt_teach.fid import fid_between, npz_stats
from mdt_teach.fid_samples import (FidSampling, assemble, image_generators, image_labels, npz_name, sample_for_fid,
                                   shard_file)
from mdt_teach.metrics import frechet_distance
from mdt_teach.models import build_model
from mdt_teach.sampling import PRESETS, default_scale_pow, sample, to_uint8


def _tiny(family="MDTv2"):
    torch.manual_seed(0)
    model = build_model(f"{family}-T/4", depth=2, hidden_size=32, num_heads=2).eval()
    for p in model.parameters():   # off the zero init, so guidance and labels matter
        torch.nn.init.normal_(p, std=0.02)
    return model


def _training_checkpoint(path: Path, family: str) -> Path:
    """One of our training checkpoints (format 2) of a tiny model: EMA and raw weights differ, Adan-like state."""
    model = _tiny(family)
    ema = {k: v / 2 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    opt = {"state": {i: {"exp_avg": torch.randn_like(p)} for i, p in enumerate(model.parameters())}}
    torch.save({"format": FORMAT, "step": 7, "model": model.state_dict(), "ema": ema, "opt": opt,
                "config": {"model": f"{family}-T/4"}, "model_config": asdict(model.config)}, path)
    return path


def _one_line(capsys, argv) -> str:
    """Run the CLI: exit code 2 and exactly one stderr line, returned."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mdt-teach {argv[0]}: "), err
    return err[0]


def test_presets_are_the_official_settings():
    # scripts/image_sample.py (FID) and infer_mdt.py (demo) of sail-sg/MDT
    assert PRESETS["fid"] == dict(steps="250", method="ddpm", cfg_scale=3.8, scale_pow=4.0, vae_decoder="ema",
                                  labels="random")
    assert PRESETS["demo"] == dict(steps="250", method="ddpm", cfg_scale=4.0, scale_pow=0.01, vae_decoder="mse",
                                   seed=1, labels="19,23,106,108,278,282")
    args = argparse.Namespace(preset="fid", **{k: None for k in DEFAULTS})
    assert sampling_settings(args)["cfg_scale"] == 3.8
    args.cfg_scale, args.steps = 2.0, "50"          # an explicit flag wins over the preset
    assert sampling_settings(args) | {} == {**DEFAULTS, **PRESETS["fid"], "cfg_scale": 2.0, "steps": "50"}
    assert sampling_settings(argparse.Namespace(preset=None, **{k: None for k in DEFAULTS})) == DEFAULTS
    random = parse_labels("random", 64, 4, seed=0)
    assert random.shape == (64,) and set(random.tolist()) == {0, 1, 2, 3}


def test_dit_guidance_is_constant_by_default_and_mdt_ramps():
    dit, mdt = _tiny("DiT"), _tiny("MDTv2")
    assert default_scale_pow(dit) == 0.0 and default_scale_pow(mdt) == 4.0
    # DiT's own forward_with_cfg: eps = uncond + w (cond − uncond) with the same w at every t
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 4])   # [z; z] layout: label 4 = null
    x = torch.cat([x[:1], x[:1]])
    for t in (999, 500, 0):
        tt = torch.full((2,), t)
        out = dit.forward_with_cfg(x, tt, y, cfg_scale=3.0, scale_pow=0.0)
        raw = dit(x, tt, y)
        expect = raw[1:, :3] + 3.0 * (raw[:1, :3] - raw[1:, :3])
        torch.testing.assert_close(out[:1, :3], expect, rtol=1e-5, atol=1e-6)


def test_uint8_conversion_is_the_official_truncation():
    x = torch.tensor([-1.5, -1.0, -0.999, 0.0, 0.0039, 0.0041, 0.996, 1.0, 1.7]).view(1, 1, 1, 9).expand(1, 3, 1, 9)
    official = ((x + 1) * 127.5).clamp(0, 255).to(torch.uint8)      # scripts/image_sample.py
    got = to_uint8(x)
    assert got.shape == (1, 1, 9, 3) and got.dtype == torch.uint8
    assert torch.equal(got.permute(0, 3, 1, 2), official)
    # 127.5 → 127 and 127.997 → 127: truncated, not rounded
    assert got[0, 0, :, 0].tolist() == [0, 0, 0, 127, 127, 128, 254, 255, 255]


def test_per_image_noise_does_not_depend_on_the_batch():
    model, diffusion = _tiny(), GaussianDiffusion()
    labels = image_labels(7, range(6), model.num_classes)
    assert torch.equal(labels, image_labels(7, range(6), model.num_classes))
    assert not torch.equal(labels, image_labels(8, range(6), model.num_classes))
    shape = (3, 32, 32)
    whole = sample(model, (6,) + shape, labels, diffusion, steps="5", cfg_scale=2.0,
                   generator=image_generators(7, range(6)))
    parts = [sample(model, (len(idx),) + shape, labels[idx[0]:idx[-1] + 1], diffusion, steps="5", cfg_scale=2.0,
                    generator=image_generators(7, idx)) for idx in (range(0, 4), range(4, 6))]
    torch.testing.assert_close(whole, torch.cat(parts), rtol=1e-4, atol=1e-5)


def test_sample_fid_resumes_to_the_same_npz(tmp_path, monkeypatch):
    """Interrupted after 2 of 4 shards, restarted: the same .npz as one uninterrupted run."""
    model = _tiny()
    s = FidSampling(ckpt="tiny", n=7, seed=3, steps="4", cfg_scale=2.0, shard_size=2)
    whole = sample_for_fid(model, s, tmp_path / "whole", progress=False)
    assert whole.name == npz_name(7, 32, 32) == "samples_7x32x32x3.npz"

    import mdt_teach.fid_samples as fs
    real, calls = fs.sample_shard, []

    def dies_after_two(*args):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(args[2])
        return real(*args)
    monkeypatch.setattr(fs, "sample_shard", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        sample_for_fid(model, s, tmp_path / "cut", progress=False)
    assert sorted(p.name for p in (tmp_path / "cut" / "shards").iterdir()) == ["shard_000000.npz", "shard_000001.npz"]
    monkeypatch.setattr(fs, "sample_shard", lambda *a: (calls.append(a[2]), real(*a))[1])
    again = sample_for_fid(model, s, tmp_path / "cut", progress=False)
    assert calls == [0, 1, 2, 3]                     # the restart sampled only the missing shards
    with np.load(whole) as a, np.load(again) as b:
        assert a["arr_0"].shape == (7, 32, 32, 3) and a["arr_0"].dtype == np.uint8
        assert np.array_equal(a["arr_0"], b["arr_0"]) and np.array_equal(a["arr_1"], b["arr_1"])
    with pytest.raises(ValueError, match=r"was made with other settings \(cfg_scale 2.0 → 3.0\); use another --out"):
        sample_for_fid(model, FidSampling(ckpt="tiny", n=7, seed=3, steps="4", cfg_scale=3.0, shard_size=2),
                       tmp_path / "cut", progress=False)


def test_frechet_distance_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(500, 6)), rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) + 0.3
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    direct = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(direct, rel=1e-8)
    assert abs(frechet_distance(mu1, s1, mu1, s1)) < 1e-9


def test_fid_between_npz_files(tmp_path, capsys):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(40, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", arr_0=images, arr_1=np.zeros(40))
    np.savez(tmp_path / "b.npz", arr_0=images[::-1])
    mean_colour = lambda u8, **_: u8.reshape(len(u8), -1, 3).mean(1).astype(np.float64)   # a stand-in feature net
    assert abs(fid_between(tmp_path / "a.npz", tmp_path / "b.npz", mean_colour)) < 1e-9   # same set, other order
    mu, sigma = npz_stats(tmp_path / "a.npz", mean_colour)
    np.savez(tmp_path / "ref.npz", mu=mu + 1.0, sigma=sigma)   # a reference batch of statistics
    assert fid_between(tmp_path / "a.npz", tmp_path / "ref.npz", mean_colour) == pytest.approx(3.0)
    np.savez(tmp_path / "bad.npz", something=np.zeros(3))
    assert main(["fid", str(tmp_path / "bad.npz"), str(tmp_path / "a.npz"), "--features", "smileys"]) == 2
    assert "holds neither images (arr_0) nor statistics (mu, sigma)" in capsys.readouterr().err
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert main(["fid", str(tmp_path / "junk.npz"), str(tmp_path / "a.npz")]) == 2
    assert "is not a readable .npz file" in capsys.readouterr().err


@pytest.mark.parametrize("family, flags, expect", [
    ("DiT", [], "cfg 1.5, pow 0)"),                      # DiT's own FID setting: sample_ddp.py, constant guidance
    ("MDTv2", [], "cfg 3.8, pow 4)"),                    # the official MDT one (scripts/image_sample.py)
    ("DiT", ["--cfg", "2"], "cfg 2, pow 0)"),            # an explicit flag still wins
])
def test_sample_preset_fid_is_each_family_s_own(family, flags, expect, tmp_path, capsys):
    ckpt = _training_checkpoint(tmp_path / "ckpt.pt", family)
    assert main(["sample", "--ckpt", str(ckpt), "--preset", "fid", "--n", "2", "--steps", "3", *flags,
                 "--out", str(tmp_path / "s.png")]) == 0
    assert f"{family}-T/4 step 7 (EMA weights): 2 samples (ddpm 3 steps, {expect}" in capsys.readouterr().out
    assert sampling_settings(argparse.Namespace(preset="demo", **{k: None for k in DEFAULTS}), "DiT") == \
        {**DEFAULTS, **PRESETS["demo"], "scale_pow": 0.0}


def test_sample_fid_gives_a_dit_checkpoint_dit_s_fid_setting(tmp_path, capsys):
    ckpt = _training_checkpoint(tmp_path / "dit.pt", "DiT")
    assert main(["sample-fid", "--ckpt", str(ckpt), "--out", str(tmp_path / "s"), "--num-samples", "2",
                 "--steps", "3", "--no-progress"]) == 0
    assert "(ddpm 3 steps, cfg 1.5, pow 0)" in capsys.readouterr().out
    recorded = json.loads((tmp_path / "s" / "settings.json").read_text())
    assert (recorded["cfg_scale"], recorded["scale_pow"]) == (1.5, 0.0)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the process's memory map (Linux)")
def test_load_model_maps_the_file_and_takes_the_ema(tmp_path):
    """Every weight of a loaded CPU model lies in a mapping of the checkpoint file (nothing read into memory up
    front, so the raw weights and the optimizer state are never read), and the weights are the EMA."""
    ckpt = _training_checkpoint(tmp_path / "ckpt.pt", "MDTv2")
    model, _ = load_model(ckpt)
    spans = [tuple(int(x, 16) for x in line.split()[0].split("-")) for line in
             Path("/proc/self/maps").read_text().splitlines() if line.endswith(str(ckpt.resolve()))]
    assert spans
    for p in model.state_dict().values():
        assert any(lo <= p.untyped_storage().data_ptr() < hi for lo, hi in spans)
    ema = torch.load(ckpt, weights_only=True)["ema"]
    assert all(torch.equal(v, ema[k]) for k, v in model.state_dict().items())
    raw, _ = load_model(ckpt, use_ema=False)
    assert not torch.equal(raw.final_layer.linear.weight, model.final_layer.linear.weight)


def test_the_npz_is_streamed_from_the_shards(tmp_path, monkeypatch):
    """The .npz equals np.savez of the concatenated shards, and assembling it never concatenates them."""
    s = FidSampling(ckpt="tiny", n=5, seed=1, steps="3", cfg_scale=2.0, shard_size=2)
    path = sample_for_fid(_tiny(), s, tmp_path, progress=False)
    shards = [np.load(shard_file(tmp_path, k)) for k in range(3)]
    with np.load(path) as got:
        for key in ("arr_0", "arr_1"):
            expect = np.concatenate([shard[key] for shard in shards])
            assert got[key].dtype == expect.dtype and np.array_equal(got[key], expect)
    monkeypatch.setattr(np, "concatenate", lambda *a, **k: pytest.fail("assemble concatenated the shards"))
    assert assemble(tmp_path, s) == path
    np.savez(shard_file(tmp_path, 1), arr_0=shards[1]["arr_0"][:1], arr_1=shards[1]["arr_1"][:1])
    with pytest.raises(ValueError, match="shard_000001.npz holds 1 images where 2 belong; delete it"):
        assemble(tmp_path, s)


def test_fid_without_its_extra_is_one_sentence(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)          # as if torch-fidelity were not installed
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", None)
    np.savez(tmp_path / "a.npz", arr_0=np.zeros((4, 8, 8, 3), np.uint8))
    line = _one_line(capsys, ["fid", str(tmp_path / "a.npz"), str(tmp_path / "a.npz")])
    assert 'pip install "mdt-teach[fid]"' in line


@pytest.mark.parametrize("flags, match", [
    (["--num-samples", "-1"], "--num-samples must be at least 1, got -1"),
    (["--num-samples", "0"], "--num-samples must be at least 1, got 0"),
    (["--shard-size", "0"], "--shard-size must be at least 1, got 0"),
    (["--out", "a_file"], "--out a_file is a file; name a folder"),
    (["--steps", "ddim7x"], "unknown respacing"),
])
def test_bad_sample_fid_input_names_its_own_flags(flags, match, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("")
    line = _one_line(capsys, ["sample-fid", "--ckpt", "missing.pt", "--out", "samples", *flags])
    assert match in line and "--n " not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]          # nothing written
