"""Masking invariants and the official RNG order (ratio draw, then per-token noise).

Official counterparts: `masked_diffusion/models.py: MDTv2.random_masking` and the ratio draw in `MDTv2.forward`.
"""
import pytest
import torch

from mdt_teach.masking import draw_mask_ratio, num_kept, random_masking, unshuffle_with_tokens


@pytest.mark.parametrize("ratio, kept", [(0.0, 256), (0.3, 179), (0.5, 128), (0.7, 76)])
def test_keeps_exactly_int_L_times_one_minus_ratio(ratio, kept):
    torch.manual_seed(0)
    x = torch.randn(4, 256, 8)
    x_kept, mask, ids_restore, ids_keep = random_masking(x, ratio)
    assert x_kept.shape == (4, kept, 8) and ids_keep.shape == (4, kept)
    assert mask.shape == (4, 256) and ids_restore.shape == (4, 256)
    assert torch.all(mask.sum(1) == 256 - kept)
    for b in range(4):
        assert torch.equal(x_kept[b], x[b, ids_keep[b]])
        assert torch.all(mask[b, ids_keep[b]] == 0)
        assert len(set(ids_keep[b].tolist())) == kept


def test_ids_restore_inverts_the_shuffle():
    torch.manual_seed(1)
    x = torch.randn(3, 64, 5)
    x_kept, mask, ids_restore, ids_keep = random_masking(x, 0.4)
    fill = torch.full((1, 1, 5), 99.0)
    restored = unshuffle_with_tokens(x_kept, fill, ids_restore)
    kept = mask == 0
    assert torch.equal(restored[kept], x[kept])               # kept tokens back in their original slots
    assert torch.all(restored[~kept] == 99.0)                 # masked slots hold the fill token
    _, _, ids_restore0, ids_keep0 = random_masking(x, 0.0)    # K = L: ids_keep is a full permutation
    assert torch.equal(torch.gather(ids_keep0, 1, ids_restore0), torch.arange(64).expand(3, 64))


def test_kept_tokens_are_in_shuffled_order_from_global_rng():
    """Same draws as the official code: noise = torch.rand(B, L) on x's device, argsort ascending."""
    x = torch.randn(2, 256, 4)
    torch.manual_seed(7)
    _, _, _, ids_keep = random_masking(x, 0.3)
    torch.manual_seed(7)
    expected = torch.argsort(torch.rand(2, 256), dim=1)[:, :179]
    assert torch.equal(ids_keep, expected)
    assert not torch.equal(ids_keep, ids_keep.sort(1).values)   # not sorted


def test_mdtv2_ratio_is_drawn_first_then_noise():
    """ρ = u·0.2 + r with u = torch.rand(1), then K = int(L·(1 − ρ)) in float32, then the noise."""
    x = torch.randn(2, 256, 4)
    torch.manual_seed(11)
    ratio = draw_mask_ratio(0.3, 0.2)
    _, _, _, ids_keep = random_masking(x, ratio)
    torch.manual_seed(11)
    rho = torch.rand(1) * 0.2 + 0.3
    k = int(256 * (1 - rho))
    expected = torch.argsort(torch.rand(2, 256), dim=1)[:, :k]
    assert torch.equal(ids_keep, expected) and 129 <= k <= 179


def test_v2_ratio_range_and_fixed_ratio():
    torch.manual_seed(0)
    ratios = [draw_mask_ratio(0.3, 0.2) for _ in range(500)]
    values = [float(r) for r in ratios]
    assert min(values) >= 0.3 and max(values) < 0.5 and max(values) - min(values) > 0.15
    kept = {num_kept(256, r) for r in ratios}
    # int() truncates (official len_keep = int(L * (1 - mask_ratio))), so ρ in (0.496, 0.5) keeps 128, not 129
    assert min(kept) >= 128 and max(kept) == 179 and len(kept) > 40
    state = torch.get_rng_state()
    assert draw_mask_ratio(0.3, 0.0) == 0.3                  # jitter 0: no draw at all
    assert torch.equal(state, torch.get_rng_state())


def test_generator_is_reproducible_and_leaves_global_rng_alone():
    x = torch.randn(2, 64, 3)
    state = torch.get_rng_state()
    a = random_masking(x, 0.5, generator=torch.Generator().manual_seed(0))
    b = random_masking(x, 0.5, generator=torch.Generator().manual_seed(0))
    c = random_masking(x, 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(a[3], b[3]) and not torch.equal(a[3], c[3])


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_ratio_outside_unit_interval_is_rejected(bad):
    with pytest.raises(ValueError, match=r"outside \[0, 1\)"):
        random_masking(torch.randn(1, 16, 2), bad)
    with pytest.raises(ValueError, match=r"outside \[0, 1\)"):
        draw_mask_ratio(bad, 0.2)


def test_ratio_that_keeps_nothing_is_rejected():
    with pytest.raises(ValueError, match="keeps no token"):
        random_masking(torch.randn(1, 16, 2), 0.97)
