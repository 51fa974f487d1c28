"""Fréchet distance, the committed feature net and FD-smileys, FID plumbing (the checker: test_checker.py)."""
import numpy as np
import pytest
import scipy.linalg
import torch

from mdt_teach import fid, metrics
from mdt_teach.data import corrupted_smileys, smileys_batch
from mdt_teach.metrics import fd_smileys, frechet_distance, gaussian_stats

# FD-smileys(real, corrupted) / FD-smileys(real, real') must exceed these (1k vs 1k, each world with its own net).
FD_RATIO = {"erase_eye": 3.0, "extra_eye": 3.0, "shift_eye": 3.0, "recolour_eye": 3.0, "resize_eye": 3.0,
            "noise": 100.0}
CLASSIC = "smileys-classic"


# ---------------------------------------------------------------- Fréchet distance
def _reference_fd(mu1, s1, mu2, s2):
    """The usual FID formula with scipy.linalg.sqrtm (pytorch-fid style)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    v1, v2 = rng.uniform(0.1, 3, 16), rng.uniform(0.1, 3, 16)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance(mu1, np.diag(v1), mu1, np.diag(v1)) == pytest.approx(0, abs=1e-10)


def test_frechet_matches_scipy_sqrtm_and_is_symmetric():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 32))
    b = rng.normal(size=(400, 32)) @ rng.normal(size=(32, 32)) * 0.5 + 0.3
    (mu1, s1), (mu2, s2) = gaussian_stats(a), gaussian_stats(b)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(_reference_fd(mu1, s1, mu2, s2), rel=1e-8)
    assert ours == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-8)


def test_frechet_is_safe_for_singular_covariances():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(20, 64))                         # 20 samples in 64-d: rank-19 covariance
    mu, s = gaussian_stats(f)
    same = frechet_distance(mu, s, mu, s)                 # ~ -3e-6 (scipy sqrtm: -2e-6, complex parts)
    assert abs(same) < 1e-7 * np.trace(s)                 # rounding only, relative to tr Σ = 65
    g = rng.normal(size=(20, 64)) + 1.0
    d = frechet_distance(mu, s, *gaussian_stats(g))
    assert np.isfinite(d) and d > 0
    with pytest.raises(ValueError, match="one D"):
        frechet_distance(mu, s, mu[:3], s)


# ---------------------------------------------------------------- feature net and FD-smileys
@pytest.mark.parametrize("world", ["smileys", CLASSIC])
def test_feature_nets_are_committed_small_and_accurate(world):
    from mdt_teach.resources import data_file
    path = data_file(metrics.FEATURE_NET_FILES.get(world, metrics.FEATURE_NET_FILE))
    assert path.stat().st_size <= 5_000_000
    net = metrics.load_feature_net(world=world)
    assert metrics.load_feature_net(world=world) is net    # cached
    x, y = smileys_batch(400, seed=15, world=world)        # seeds never used in training
    feats = metrics.smiley_features(x, net)
    assert feats.shape == (400, net.embed.out_features) and 64 <= feats.shape[1] <= 128
    with torch.no_grad():
        assert (net(x).argmax(1) == y).float().mean() >= 0.95


@pytest.fixture(scope="module", params=["smileys", CLASSIC])
def real_stats(request):
    world = request.param
    net = metrics.load_feature_net(world=world)
    x, _ = smileys_batch(1000, seed=20, world=world)
    return world, net, gaussian_stats(metrics.smiley_features(x, net))


def test_fd_smileys_real_vs_real_is_small_and_corruptions_are_far(real_stats):
    world, net, stats = real_stats
    other, _ = smileys_batch(1000, seed=21, world=world)
    baseline = fd_smileys(stats, other, net)
    assert baseline >= 0
    kinds = FD_RATIO if world != CLASSIC else ("erase_eye", "extra_eye", "shift_eye", "noise")  # the classic net's
    for kind in kinds:
        bad, _ = corrupted_smileys(kind, 1000, seed=21, world=world)
        assert fd_smileys(stats, bad, net) > FD_RATIO[kind] * baseline, kind


@pytest.mark.parametrize("world", ["smileys", CLASSIC])
def test_fd_smileys_sees_the_relation(world):
    """Faces whose right eye was transplanted from another face (every part real, only the pair disagrees) are
    far from real faces in the relational world's net (measured: FD 66 against 0.26 between two real sets);
    the classic net, trained on expressions alone, barely sees them in its own world (0.81 against 0.26)."""
    from mdt_teach.data import render_meta
    from mdt_teach.painters import paint
    net = metrics.load_feature_net(world=world)
    _, _, meta = smileys_batch(1000, seed=22, world=world, meta=True)
    stats = gaussian_stats(metrics.smiley_features(smileys_batch(1000, seed=23, world=world)[0], net))
    baseline = fd_smileys(stats, smileys_batch(1000, seed=24, world=world)[0], net)
    transplant = fd_smileys(stats, render_meta(paint(meta, "transplant", world)), net)
    if world == CLASSIC:
        assert transplant < 10 * baseline
    else:
        assert transplant > 100 * baseline


def test_fd_smileys_input_checks():
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        fd_smileys(torch.zeros(4, 3, 64, 64), torch.zeros(4, 3, 64, 64))


# ---------------------------------------------------------------- Inception FID plumbing
def test_fid_says_what_to_install_when_torch_fidelity_is_missing():
    try:
        import torch_fidelity  # noqa: F401
        pytest.skip("torch-fidelity is installed here")
    except ImportError:
        pass
    with pytest.raises(ModuleNotFoundError, match=r"pip install \"mdt-teach\[fid\]\""):
        fid.inception_fid_stats(torch.zeros(2, 3, 32, 32))


def test_reference_batch_reader(tmp_path):
    rng = np.random.default_rng(3)
    mu, sigma = rng.normal(size=8), np.eye(8)
    np.savez(tmp_path / "ref.npz", mu=mu, sigma=sigma, arr_0=np.zeros((1, 4, 4, 3), np.uint8))
    got_mu, got_sigma = fid.load_reference_stats(tmp_path / "ref.npz")
    np.testing.assert_array_equal(got_mu, mu)
    np.savez(tmp_path / "bad.npz", arr_0=np.zeros(3))
    with pytest.raises(ValueError, match="no 'mu'"):
        fid.load_reference_stats(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="VIRTUAL_imagenet256_labeled.npz"):
        fid.load_reference_stats(tmp_path / "missing.npz")
