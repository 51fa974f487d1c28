"""VAE wrapper (tiny AutoencoderKL, no download) and the sharded latent cache, end to end."""
import json
import types

import numpy as np
import pytest
import torch
from PIL import Image

from mdt_teach import cli
from mdt_teach.data import ImageFolder, make_dataset
from mdt_teach.data_order import LoaderSource, make_source
from mdt_teach.distributed import DistInfo
from mdt_teach.latent_cache import LatentCache, cache_latents, shard_paths
from mdt_teach.vae import SCALE, LatentVAE, load_vae, tiny_vae


# ---------------------------------------------------------------- VAE wrapper
def test_tiny_vae_is_deterministic_and_scaled():
    a, b = tiny_vae(), tiny_vae()
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    vae = LatentVAE(a)
    assert (vae.downsample, vae.latent_channels, vae.scale) == (8, 4, 0.18215)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    mean, std = vae.moments(x)
    assert mean.shape == std.shape == (2, 4, 4, 4) and (std > 0).all()
    z = vae.encode(x, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z, (mean + std * eps) * SCALE)                 # DiT: sample × 0.18215
    torch.testing.assert_close(vae.decode(z), a.decode(z / SCALE).sample)     # decode divides it back
    assert vae.decode(z).shape == (2, 3, 32, 32)


@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks` argument is deprecated")
def test_load_vae_offline_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="run once with internet, set HF_HOME"):
        load_vae("stabilityai/sd-vae-ft-mse", local_files_only=True, cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_vae(str(tmp_path / "no_such_vae"))
    with pytest.raises(FileNotFoundError, match="no loadable AutoencoderKL"):
        load_vae(str(tmp_path))                                                 # a folder without a VAE
    assert load_vae("tiny").name == "tiny"


def test_moving_a_vae_prints_no_diffusers_warning(capfd):
    """Lesson 10 printed diffusers' "should be kept in float32: []" warning once per decoded shard: LatentVAE.to
    passed dtype=None, which diffusers' ModelMixin.to reads as a cast. A move without a dtype is silent now."""
    vae = load_vae("tiny", device="cpu")
    vae.to("cpu")
    assert vae.to(dtype=torch.float64)._dtype_device()[0] == torch.float64    # a real cast still casts
    capfd.readouterr()
    load_vae("tiny", device="cpu").to("cpu")
    assert "kept in float32" not in capfd.readouterr().err


def test_load_vae_from_a_local_folder(tmp_path):
    tiny_vae().save_pretrained(tmp_path / "vae")
    vae = load_vae(str(tmp_path / "vae"))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(vae.moments(x)[0], LatentVAE(tiny_vae()).moments(x)[0])


# ---------------------------------------------------------------- latent cache
@pytest.fixture()
def folder(tmp_path):
    """10 small images, ADM naming, two classes."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    root.mkdir()
    for i in range(10):
        arr = rng.integers(0, 256, size=(36 + i, 40, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / f"{'cat' if i % 3 else 'dog'}_{i:03d}.png")
    return root


def _cache(folder, out, **kw):
    args = dict(vae="tiny", image_size=32, batch_size=4, shard_size=4, workers=0, progress=False)
    return cache_latents(folder, out, **{**args, **kw})


def test_cache_end_to_end_then_resume(folder, tmp_path):
    out = tmp_path / "latents"
    assert _cache(folder, out) == {"written": [0, 1, 2], "skipped": []}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["latent_shape"] == [4, 4, 4]
    assert [s["count"] for s in manifest["shards"]] == [4, 4, 2]

    cache = LatentCache(out, sample=False)
    assert (len(cache), cache.in_channels, cache.image_size, cache.num_classes) == (10, 4, 4, 2)
    images = ImageFolder(folder, image_size=32, flip=False)
    vae = LatentVAE(tiny_vae())
    for i in (0, 5, 9):
        for mirrored in (False, True):   # the mirrored copy is the encoding of the mirrored image
            image = images[i][0].flip(-1) if mirrored else images[i][0]
            mean, std = vae.moments(image[None])
            torch.testing.assert_close(cache.moments(i, mirrored)[0], mean[0], atol=2e-3, rtol=2e-3)  # float16
            torch.testing.assert_close(cache.moments(i, mirrored)[1], std[0], atol=2e-3, rtol=2e-3)
        assert not torch.allclose(cache.moments(i, True)[0], cache.moments(i, False)[0].flip(-1), atol=1e-3)
        assert cache[i][1] == images[i][1]

    sampled = LatentCache(out, sample=True, flip=False)
    torch.manual_seed(0)
    draws = torch.stack([sampled[3][0] for _ in range(400)])
    mean, std = cache.moments(3)
    assert not torch.equal(draws[0], draws[1])
    torch.testing.assert_close(draws.mean(0), mean * SCALE, atol=4 * SCALE * std.max() / 20, rtol=0)

    # a killed run: the last shard is gone and a half-written temp file is left behind
    before = {k: np.load(shard_paths(out, k)[0]).copy() for k in range(3)}
    mtime0 = shard_paths(out, 0)[0].stat().st_mtime_ns
    shard_paths(out, 2)[0].unlink()
    (out / "shard_00001.npy.tmp").write_bytes(b"half a shard")
    with pytest.raises(ValueError, match="shard 2 is missing"):
        LatentCache(out)
    assert _cache(folder, out) == {"written": [2], "skipped": [0, 1]}
    assert not list(out.glob("*.tmp"))
    assert shard_paths(out, 0)[0].stat().st_mtime_ns == mtime0                # untouched
    for k in range(3):
        np.testing.assert_array_equal(np.load(shard_paths(out, k)[0]), before[k])


def test_cache_refuses_other_settings_and_wrong_shapes(folder, tmp_path):
    out = tmp_path / "latents"
    _cache(folder, out, shard_size=5)
    with pytest.raises(ValueError, match=r"was made with other settings \(image_size 32 → 64"):
        _cache(folder, out, shard_size=5, image_size=64)
    np.save(shard_paths(out, 1)[0], np.zeros((5, 2, 2, 4, 8, 8), np.float16))  # wrong latent shape
    with pytest.raises(ValueError, match=r"shard 1 is shape \(5, 2, 2, 4, 8, 8\)"):
        LatentCache(out)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps(dict(manifest, complete=False)))
    with pytest.raises(ValueError, match="incomplete"):
        LatentCache(out)
    with pytest.raises(FileNotFoundError, match="cache-latents"):
        LatentCache(tmp_path)


def test_cli_cache_latents_and_make_dataset(folder, tmp_path, capsys):
    out = tmp_path / "cli_latents"
    argv = ["cache-latents", str(folder), str(out), "--vae", "tiny", "--image-size", "32",
            "--shard-size", "6", "--workers", "0", "--no-progress", "--device", "cpu"]
    assert cli.main(argv) == 0
    assert "wrote shards [0, 1]" in capsys.readouterr().out
    source = make_source(str(out), seed=0)                    # what --data OUT trains on
    ds = source.dataset
    assert isinstance(ds, LatentCache) and len(ds) == 10 and ds[0][0].shape == (4, 4, 4)
    with pytest.raises(ValueError, match="is a latent cache, not an image folder"):
        make_dataset(out)
    assert cli.main(["cache-latents", str(tmp_path / "nope"), str(out), "--vae", "tiny", "--no-progress",
                     "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "existing folder" in err


def test_training_picks_each_orientation_half_the_time_and_resumes_to_the_same_picks(folder, tmp_path):
    """Over an epoch the data order shows both orientations with p ≈ 0.5; a new reader at the same stream
    positions (a resumed run) makes the same picks."""
    out = tmp_path / "latents"
    _cache(folder, out)
    cache = LatentCache(out, sample=False)

    def picks(source, steps, start=0):
        seen = []
        for step in range(start, start + steps):
            z, _ = source.local_batch(step, 5, DistInfo(), 1)
            for zi in z:   # which stored orientation is this item? compare with both means
                i = [j for j in range(len(cache)) for m in (0, 1)
                     if torch.allclose(zi, cache.moments(j, bool(m))[0] * SCALE)]
                assert len(i) == 1
                seen.append(bool(torch.allclose(zi, cache.moments(i[0], True)[0] * SCALE)))
        return seen

    source = LoaderSource(LatentCache(out, sample=False), seed=3, num_workers=0)
    first = picks(source, 40)                      # 200 reads = 20 epochs of 10 images
    assert 0.4 < sum(first) / len(first) < 0.6
    resumed = LoaderSource(LatentCache(out, sample=False), seed=3, num_workers=0)
    assert picks(resumed, 10, start=30) == first[150:]
    assert LatentCache(out, sample=False, flip=False)[0][0].equal(cache.moments(0, False)[0] * SCALE)


@pytest.mark.parametrize("dtype, bytes_per_value, tol", [("float32", 4, 1e-5), ("float16", 2, 1e-3),
                                                          ("bfloat16", 2, 8e-3)])
def test_cache_storage_dtype(folder, tmp_path, dtype, bytes_per_value, tol):
    out = tmp_path / dtype
    _cache(folder, out, dtype=dtype, shard_size=10)
    assert np.load(shard_paths(out, 0)[0]).nbytes == 10 * 2 * 2 * 4 * 4 * 4 * bytes_per_value
    cache, exact = LatentCache(out, sample=False), LatentVAE(tiny_vae())
    mean = exact.moments(ImageFolder(folder, image_size=32, flip=False)[4][0][None])[0][0]
    got = cache.moments(4)[0]
    assert (got - mean).abs().max() <= tol * mean.abs().max()
    with pytest.raises(ValueError, match="not a storage dtype"):
        _cache(folder, tmp_path / "x", dtype="int8")


def test_an_unflipped_cache_of_the_old_format_is_refused(folder, tmp_path):
    out = tmp_path / "latents"
    _cache(folder, out)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps(dict(manifest, format="mdt-teach-latents-v1")))
    with pytest.raises(ValueError, match="without the mirrored images"):
        LatentCache(out)


def test_full_profile_trains_on_an_image_folder_by_encoding_every_batch(folder, tmp_path):
    """The official way, for users without the disk for a cache: flip, encode, sample the posterior per batch;
    still a function of the seed (two runs, the same weights)."""
    from mdt_teach.recipe import TrainConfig
    from mdt_teach.train import Trainer

    def run(out):
        cfg = TrainConfig(profile="full", data=str(folder), image_size=32, vae="tiny", model="MDTv2-T/4",
                          model_args=dict(depth=2, hidden_size=32, num_heads=2, patch_size=2), batch_size=4, steps=2,
                          eval_samples=0, grid_samples=0, progress=False, threads=1, out=str(tmp_path / out))
        trainer = Trainer(cfg, log=lambda *a, **k: None)
        trainer.fit()
        return trainer

    a, b = run("a"), run("b")
    assert (a.model.in_channels, a.model.input_size) == (4, 4)          # 32 px through an 8× VAE
    assert a.encoder is not None and a.encoder.name == "tiny"
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert a.model.final_layer.linear.weight.abs().max() > 0             # it trained


def test_sample_fid_loads_the_decoder_once_for_all_shards(monkeypatch):
    """decode_if_latent keeps one VAE per (decoder, device): 782 shards must not read the SD-VAE 782 times."""
    import mdt_teach.vae as vae_module

    loads = []
    real = vae_module.load_vae
    monkeypatch.setattr(vae_module, "load_vae", lambda *a, **k: loads.append(a) or real(*a, **k))
    vae_module._decoder.cache_clear()
    model = types.SimpleNamespace(in_channels=4)
    z = torch.randn(2, 4, 4, 4)
    pixels = [vae_module.decode_if_latent(model, z, "tiny") for _ in range(3)]                 # three "shards"
    assert len(loads) == 1 and all(torch.equal(pixels[0], x) for x in pixels)
    vae_module._decoder.cache_clear()
