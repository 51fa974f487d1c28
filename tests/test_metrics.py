"""Two-eyes checker, Fréchet distance, the committed feature net and FD-smileys, FID plumbing."""
import itertools

import numpy as np
import pytest
import scipy.linalg
import torch

from mdt_teach import fid, metrics
from mdt_teach.data import CORRUPTIONS, SMILEY_CLASSES, corrupted_smileys, smileys_batch
from mdt_teach.metrics import fd_smileys, frechet_distance, gaussian_stats, two_eyes

N = 600
# FD-smileys(real, corrupted) / FD-smileys(real, real') must exceed these (default world, 1k vs 1k).
# Measured with data/feature_net.pt: real' 0.47; erase 2.41 (5.2x), extra 2.37 (5.1x), shift 3.13
# (6.7x), noise 591 (1260x).
FD_RATIO = {"erase_eye": 3.0, "extra_eye": 3.0, "shift_eye": 3.0, "noise": 100.0}


@pytest.fixture(scope="module", params=[False, True], ids=["default", "varied"])
def world(request):
    """Real faces of one world and their checker result."""
    x, y, meta = smileys_batch(N, seed=11, varied=request.param, meta=True)
    return request.param, x, y, meta, two_eyes(x, y)


# ---------------------------------------------------------------- two-eyes checker
def test_real_smileys_pass(world):
    _, _, _, _, result = world
    assert result.score >= 0.98                          # measured: 100% in both worlds
    assert result.expression_accuracy >= 0.95            # measured: 100%
    assert result.funnel == {"face_found": 1.0, "two_eyes": 1.0, "passed": result.score}


def test_detections_match_the_generator(world):
    _, _, _, meta, result = world
    ok = result.passed
    # measured max errors: face centre 0.18 px, radius 0.39, eyes 0.48, mouth x 0.95
    assert np.abs(result.face_center[ok] - meta["face_center"][ok]).max() < 0.3
    assert np.abs(result.face_radius[ok] - meta["face_radius"][ok]).max() < 0.5
    assert np.abs(result.eye_centers[ok] - meta["eye_centers"][ok]).max() < 0.75
    assert np.abs(result.mouth_center[ok, 0] - meta["mouth_center"][ok, 0]).max() < 1.25


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_each_corruption_fails(world, kind):
    varied = world[0]
    x, y = corrupted_smileys(kind, N, seed=11, varied=varied)
    result = two_eyes(x, y)
    assert result.score <= 0.05                          # measured: 0% for every corruption
    if kind == "erase_eye":
        assert np.mean(result.eye_count == 1) >= 0.95
    if kind == "extra_eye":
        assert np.mean(result.eye_count == 3) >= 0.95
    if kind == "shift_eye":
        assert np.mean(~result.same_height) >= 0.95
    if kind == "noise":
        assert result.face_found.mean() <= 0.01          # measured: 0 (the component is the whole image)
    else:
        assert result.face_found.mean() >= 0.98          # measured: 1 (the face itself is intact)
    f = result.funnel
    assert f["face_found"] >= f["two_eyes"] >= f["passed"]


def test_small_pixel_noise_still_passes():
    x, y = smileys_batch(300, seed=12)
    noisy = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    assert two_eyes(noisy, y).score >= 0.98              # measured: 100% at sigma 0.05 and 0.1


def test_expression_reader_per_class():
    x, y = smileys_batch(400, seed=13, varied=True)
    result = two_eyes(x)
    assert result.expression_ok is None and result.expression_accuracy is None
    for c in range(len(SMILEY_CLASSES)):
        assert np.mean(result.expression[y.numpy() == c] == c) >= 0.95


# Face colours of both worlds (docs/smileys.md): the default colour and the corners of the varied box.
FACE_COLORS = [(0.93, 0.68, 0.40)] + list(itertools.product((0.85, 1.0), (0.58, 0.90), (0.20, 0.50)))
BACKGROUNDS = (0.80, 0.88, 0.95)


def _painted(distance, colors, backgrounds):
    """Flat shapes (N, 3, 32, 32) in [-1, 1]: each colour over a grey background, anti-aliased from the
    signed distance (N, 32, 32) of each pixel centre to the shape's edge (< 0 inside)."""
    alpha = np.clip(0.5 - distance, 0, 1)[:, None]                              # (N, 1, H, W)
    bg = np.asarray(backgrounds, np.float32)[:, None, None, None]
    img = bg + alpha * (np.asarray(colors, np.float32)[:, :, None, None] - bg)
    return torch.from_numpy((img * 2 - 1).astype(np.float32))


def _shapes(kind, size):
    """Every face colour on every background: signed distances of one shape of equivalent radius `size`."""
    cases = list(itertools.product(FACE_COLORS, BACKGROUNDS))
    Y, X = np.mgrid[:32, :32] - 15.5                                            # (H, W), centre 15.5
    if kind == "disc":
        d = np.hypot(X, Y) - size
    elif kind == "square":                                                     # side √π·r: the disc's area
        d = np.maximum(np.abs(X), np.abs(Y)) - np.sqrt(np.pi) * size / 2
    elif kind == "ellipse":                                                    # 2:1, the disc's area
        a, b = size * np.sqrt(2), size / np.sqrt(2)
        d = (np.hypot(X / a, Y / b) - 1) * b
    distance = np.repeat(d[None], len(cases), 0)
    return [c for c, _ in cases], [b for _, b in cases], distance


@pytest.mark.parametrize("size", [10.0, 11.5, 13.0])
def test_face_found_means_a_round_face_coloured_disc(size):
    colors, backgrounds, disc = _shapes("disc", size)
    flat = two_eyes(_painted(disc, colors, backgrounds))        # a face with no eyes and no mouth
    assert flat.face_found.all() and (flat.eye_count == 0).all() and flat.score == 0.0
    assert np.abs(flat.face_radius - size).max() < 0.5
    for kind in ("square", "ellipse"):                           # same colours, same area, not round
        _, _, distance = _shapes(kind, size)
        assert not two_eyes(_painted(distance, colors, backgrounds)).face_found.any(), kind
    grey = two_eyes(_painted(disc, [(0.45, 0.45, 0.45)] * len(disc), backgrounds))   # round, wrong colour
    assert not grey.face_found.any()


def test_no_face_is_found_in_noise():
    g = torch.Generator().manual_seed(0)
    gaussian = torch.randn(256, 3, 32, 32, generator=g).clamp(-1, 1)   # stands in for an untrained model's samples
    uniform = torch.rand(256, 3, 32, 32, generator=g) * 2 - 1
    for name, x in (("gaussian", gaussian), ("uniform", uniform)):
        result = two_eyes(x)
        f = result.funnel
        assert f["face_found"] <= 0.01 and f["two_eyes"] <= 0.01 and f["passed"] == 0.0, (name, f)  # measured: 0, 0, 0
    grey = two_eyes(torch.zeros(4, 3, 32, 32))                   # one flat mid-grey: nothing in the foreground
    assert not grey.face_found.any()


def test_blank_images_and_bad_input():
    blank = torch.full((3, 3, 32, 32), 0.76)            # light grey, nothing drawn
    result = two_eyes(blank)
    assert not result.face_found.any() and result.score == 0.0 and (result.expression == -1).all()
    single, _ = smileys_batch(1, seed=14)
    assert two_eyes(single[0]).passed.tolist() == [True]   # (3, H, W) is one image
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        two_eyes(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="one label per image"):
        two_eyes(single, labels=[0, 1])


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
def test_feature_net_is_committed_small_and_accurate():
    from mdt_teach.resources import data_file
    path = data_file(metrics.FEATURE_NET_FILE)
    assert path.stat().st_size <= 5_000_000
    net = metrics.load_feature_net()
    assert metrics.load_feature_net() is net              # cached
    x, y = smileys_batch(400, seed=15, varied=True)       # seeds never used in training
    feats = metrics.smiley_features(x)
    assert feats.shape == (400, net.embed.out_features) and 64 <= feats.shape[1] <= 128
    with torch.no_grad():
        assert (net(x).argmax(1) == y).float().mean() >= 0.95


@pytest.fixture(scope="module")
def real_stats():
    x, _ = smileys_batch(1000, seed=20)
    return gaussian_stats(metrics.smiley_features(x))


def test_fd_smileys_real_vs_real_is_small_and_corruptions_are_far(real_stats):
    other, _ = smileys_batch(1000, seed=21)
    baseline = fd_smileys(real_stats, other)
    assert baseline >= 0
    for kind in CORRUPTIONS:
        bad, _ = corrupted_smileys(kind, 1000, seed=21)
        assert fd_smileys(real_stats, bad) > FD_RATIO[kind] * baseline, kind


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
