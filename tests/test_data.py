"""Smileys generator, digits, image folders and the dataset factory."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import hashlib

from mdt_teach.data import (CORRUPTIONS, SMILEY_CLASSES, WORLDS, Digits, ImageFolder, Smileys, center_crop_arr,
                            corrupted_smileys, list_image_folder, make_dataset, part_masks, render_meta, smileys_at,
                            smileys_batch, world_version)


# ---------------------------------------------------------------- smileys
def test_batch_shapes_range_and_labels():
    x, y = smileys_batch(400, seed=3)
    assert x.shape == (400, 3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (400,) and y.dtype == torch.int64
    assert x.min() >= -1 and x.max() <= 1
    counts = np.bincount(y.numpy(), minlength=len(SMILEY_CLASSES))
    assert len(SMILEY_CLASSES) >= 4 and counts.min() >= 0.18 * 400   # balanced-ish (uniform labels)


@pytest.mark.parametrize("world", WORLDS)
def test_image_i_is_the_same_in_any_batch(world):
    whole, labels = smileys_batch(40, seed=7, world=world)
    part, part_labels = smileys_batch(10, seed=7, start=25, world=world)
    torch.testing.assert_close(part, whole[25:35], rtol=0, atol=0)
    assert torch.equal(part_labels, labels[25:35])
    picked, _ = smileys_at([33, 2, 17], seed=7, world=world)
    torch.testing.assert_close(picked, whole[[33, 2, 17]], rtol=0, atol=0)
    other, _ = smileys_batch(40, seed=8, world=world)
    assert (other - whole).abs().amax(dim=(1, 2, 3)).min() > 0.1          # another seed, other faces


@pytest.mark.parametrize("world", WORLDS)
def test_render_of_the_metadata_is_the_image(world):
    x, _, meta = smileys_batch(300, seed=3, world=world, meta=True)
    assert torch.equal(render_meta(meta), x)                                 # bit-identical
    assert meta["eye_color"].shape == (300, 2, 3) and meta["eye_radii"].shape == (300, 2)
    edited = {k: v.copy() for k, v in meta.items()}
    edited["eye_color"][:, 1] = [0.9, 0.1, 0.1]                              # eyes that disagree
    changed = (render_meta(edited) != x).any(1)                              # (n, H, W)
    assert torch.equal(changed, torch.from_numpy(part_masks(meta)["eye_1"]))  # exactly the right eye's pixels


def test_the_classic_world_is_the_one_the_committed_results_were_made_on():
    """smileys-classic is bit-identical to the world before version 2 (sha256 of faces 0..255, seed 0, recorded
    before the change), so the committed classic-world race and probe can be reproduced."""
    x, _ = smileys_batch(256, seed=0, world="smileys-classic")
    assert hashlib.sha256(x.numpy().tobytes()).hexdigest()[:16] == "9625bb3de75edee0"
    assert world_version("smileys") == "smileys@2" and world_version("smileys-classic") == "smileys-classic@1"
    with pytest.raises(ValueError, match="unknown smileys world"):
        smileys_batch(2, world="smileys-v3")


def test_meta_geometry_two_symmetric_eyes_mouth_below():
    _, y, meta = smileys_batch(500, seed=1, world="smileys-classic", meta=True)
    (cx, cy), eyes = meta["face_center"].T, meta["eye_centers"]             # eyes (n, 2, 2)
    np.testing.assert_allclose(eyes[:, 0, 0] + eyes[:, 1, 0], 2 * cx, atol=1e-9)   # mirror images
    np.testing.assert_allclose(eyes[:, 0, 1], eyes[:, 1, 1], atol=0)               # same height
    assert np.all(eyes[:, 1, 0] - eyes[:, 0, 0] >= 0.66 * meta["face_radius"] - 1e-9)
    assert np.all(eyes[:, 0, 1] < cy) and np.all(meta["mouth_center"][:, 1] > cy)
    assert np.all((meta["face_radius"] >= 11) & (meta["face_radius"] <= 12))
    assert np.all(np.abs(meta["face_center"] - 15.5) <= 1)
    assert np.array_equal(meta["label"], y.numpy())
    np.testing.assert_allclose(meta["background"], 0.88)


def test_relational_eyes_are_mirror_images_sharing_every_attribute():
    _, _, meta = smileys_batch(500, seed=1, meta=True)
    (cx, cy), eyes = meta["face_center"].T, meta["eye_centers"]
    np.testing.assert_allclose(eyes[:, 0, 0] + eyes[:, 1, 0], 2 * cx, atol=1e-9)
    np.testing.assert_array_equal(eyes[:, 0, 1], eyes[:, 1, 1])
    np.testing.assert_array_equal(meta["eye_radii"][:, 0], meta["eye_radii"][:, 1])
    np.testing.assert_array_equal(meta["eye_color"][:, 0], meta["eye_color"][:, 1])
    assert np.all(eyes[:, 0, 1] + meta["eye_radii"][:, 0] < cy)              # the eyes sit above the centre line


@pytest.mark.parametrize("world", WORLDS)
def test_pixels_match_the_meta(world):
    x, _, meta = smileys_batch(200, seed=2, world=world, meta=True)
    img = (x.numpy() + 1) / 2                                                # (n, 3, H, W) in [0, 1]
    rows = np.arange(200)
    for e in range(2):
        ex, ey = np.round(meta["eye_centers"][:, e].T).astype(int)
        np.testing.assert_allclose(img[rows, :, ey, ex], meta["eye_color"][:, e], atol=1e-6)  # eye centres: eye colour
    np.testing.assert_allclose(img[:, :, 0, 0], meta["background"], atol=1e-6)  # background corner
    cx, cy = np.round(meta["face_center"].T).astype(int)
    skin = img[rows, :, cy, cx]                                              # face centre: skin colour
    np.testing.assert_allclose(skin, meta["face_color"], atol=1e-6)
    if world != "smileys-varied":
        np.testing.assert_allclose(skin.mean(0), [0.93, 0.68, 0.40], atol=0.01)


def test_varied_world_ranges():
    x, _, meta = smileys_batch(500, seed=4, world="smileys-varied", meta=True)
    assert meta["face_radius"].min() >= 10 and meta["face_radius"].max() <= 13
    assert meta["face_radius"].max() - meta["face_radius"].min() > 2.5
    assert np.all(np.abs(meta["face_center"] - 15.5) <= 2)
    assert meta["background"].min() >= 0.75 and meta["background"].max() <= 1.0
    assert meta["face_color"].std(0).min() > 0.03                            # colours really vary


def test_corruptions_change_only_what_they_say():
    real, labels, meta = smileys_batch(50, seed=5, meta=True)
    for kind in CORRUPTIONS:
        bad, bad_labels = corrupted_smileys(kind, 50, seed=5)
        assert bad.shape == real.shape and torch.equal(bad_labels, labels)
        assert (bad - real).abs().amax(dim=(1, 2, 3)).min() > 0.3            # every image is changed
    erased, _ = corrupted_smileys("erase_eye", 50, seed=5)
    eyes = part_masks(meta)["eyes"]
    assert not ((erased != real).any(1).numpy() & ~eyes).any()              # only eye pixels change
    recoloured, _ = corrupted_smileys("recolour_eye", 50, seed=5)
    assert not ((recoloured != real).any(1).numpy() & ~eyes).any()
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupted_smileys("blur", 4)
    with pytest.raises(ValueError, match="n >= 0"):
        smileys_batch(-1)


def test_smileys_dataset_item_and_batched_loader_agree():
    ds = Smileys(100, seed=9)
    assert (len(ds), ds.num_classes, ds.in_channels, ds.image_size) == (100, 4, 3, 32)
    x, y = smileys_batch(100, seed=9)
    img, label = ds[42]
    torch.testing.assert_close(img, x[42], rtol=0, atol=0)
    assert label == int(y[42]) and isinstance(label, int)
    torch.testing.assert_close(ds[-1][0], x[99], rtol=0, atol=0)
    xb, yb = next(iter(DataLoader(ds, batch_size=16, shuffle=False)))
    torch.testing.assert_close(xb, x[:16], rtol=0, atol=0)
    assert torch.equal(yb, y[:16])
    with pytest.raises(IndexError):
        ds[100]
    with pytest.raises(ValueError):
        Smileys(0)


# ---------------------------------------------------------------- digits
def test_digits_are_sklearn_digits_upsampled():
    from sklearn.datasets import load_digits
    ref = load_digits()
    ds = Digits()
    assert (len(ds), ds.num_classes, ds.in_channels, ds.image_size) == (1797, 10, 3, 32)
    x, y = ds[10]
    assert x.shape == (3, 32, 32) and y == ref.target[10]
    assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])
    assert ds.images.min() >= -1 and ds.images.max() <= 1
    paper = ((ds.images[:100, 0] + 1) / 2).numpy()                          # (N, 32, 32) white = 1
    pil = [Image.fromarray((1 - r / 16).astype(np.float32), mode="F").resize((32, 32), Image.BILINEAR)
           for r in ref.images[:100]]                                        # reference: Pillow bilinear
    np.testing.assert_allclose(paper, np.stack([np.asarray(p) for p in pil]), atol=1e-5)


# ---------------------------------------------------------------- image folders
def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def _striped(h, w):
    """Grey image, green outer quarters, a red stripe in the middle columns."""
    a = np.full((h, w, 3), 128, np.uint8)
    a[:, : w // 4] = a[:, -(w // 4):] = (0, 255, 0)
    a[:, w // 2 - 4: w // 2 + 4] = (255, 0, 0)
    return a


def test_adm_center_crop_keeps_the_centre_of_the_long_side():
    out = center_crop_arr(Image.fromarray(_striped(64, 160)), 32)           # BOX-halved once, then crop
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert (out[:, 14:18] == (255, 0, 0)).all()                              # red stripe at the centre
    assert not ((out[..., 1] > 200) & (out[..., 0] < 50)).any()              # green sides cropped away
    small = center_crop_arr(Image.fromarray(_striped(20, 30)), 32)          # upscaled with BICUBIC
    assert small.shape == (32, 32, 3)


def test_adm_naming_and_class_subfolders(tmp_path):
    for name in ("n02_b.png", "n01_a.png", "n01_c.jpg", "n03_x.png"):
        _save(tmp_path / "adm" / name, _striped(40, 48))
    files, labels, classes = list_image_folder(tmp_path / "adm")
    assert classes == ("n01", "n02", "n03")
    assert [f.name for f in files] == ["n01_a.png", "n01_c.jpg", "n02_b.png", "n03_x.png"]
    assert labels == [0, 0, 1, 2]
    for cls in ("dog", "cat"):
        _save(tmp_path / "sub" / cls / "img1.png", _striped(40, 48))
    ds = make_dataset(tmp_path / "sub", image_size=32, flip=False)
    assert isinstance(ds, ImageFolder) and ds.classes == ("cat", "dog") and ds.num_classes == 2
    x, y = ds[1]
    assert x.shape == (3, 32, 32) and y == 1 and x.min() >= -1 and x.max() <= 1


def test_random_flip_mirrors_the_image(tmp_path):
    a = _striped(32, 32)
    a[:, :4] = (0, 0, 255)                                                   # mark the left edge
    _save(tmp_path / "c0_0.png", a)
    plain = ImageFolder(tmp_path, image_size=32, flip=False)
    torch.manual_seed(0)
    seen = {bool(ImageFolder(tmp_path, image_size=32, flip=True)[0][0][2, 0, 0] > 0.9) for _ in range(20)}
    assert seen == {True, False}
    assert plain[0][0][2, 0, 0] > 0.9


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a smileys world .*, digits nor an existing folder"):
        make_dataset(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        make_dataset(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "c0_broken.jpg").write_bytes(b"not a jpeg at all")
    ds = make_dataset(tmp_path / "bad", image_size=32)
    with pytest.raises(ValueError, match="cannot read image .*c0_broken.jpg"):
        ds[0]


def test_make_dataset_names():
    ds = make_dataset("smileys")
    assert isinstance(ds, Smileys) and ds.num_classes == 4 and ds.world == "smileys"
    assert make_dataset("smileys-classic", n=10).world == "smileys-classic"
    assert make_dataset("digits").num_classes == 10
    with pytest.raises(ValueError, match="32"):
        make_dataset("smileys", image_size=64)
