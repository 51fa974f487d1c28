"""The architecture drawing of lessons 02, 04 and 05: the right boxes per model, the highlighted ones coloured."""
import matplotlib.colors as mcolors
import pytest

from mdt_teach.viz.architecture import HIGHLIGHT, PIECES, layout, render_architecture


def _faces(fig, piece):
    ax = fig.axes[0]
    return [mcolors.to_hex(p.get_facecolor()) for p in ax.patches if p.get_gid() == piece]


def test_rows_follow_the_official_wiring():
    assert [b[0] for b in layout("dit")] == ["patchify", "blocks", "final_layer"]
    assert [b[0] for b in layout("mdt")] == ["patchify", "mask", "encoder", "side_interpolater", "decoder",
                                             "final_layer"]
    v2 = layout("mdtv2")
    assert [b[0] for b in v2] == ["patchify", "mask", "encoder", "encoder", "side_interpolater", "decoder",
                                  "final_layer"]
    # MDTv2-XL/2: depth 28, decode_layer 4 → 12 in-blocks, 12 out-blocks, 4 decoder blocks
    assert [b[1].split("×")[-1] for b in v2[2:4]] == ["12", "12"] and v2[5][1].endswith("×4")
    # training-only pieces are dashed
    assert {b[0] for b in v2 if b[3]} == {"mask", "side_interpolater"}
    # a model's own counts: MDTv2 with depth 6 and decode_layer 2 → 2 + 2 + 2
    assert [b[1].split("×")[-1] for b in layout("mdtv2", {"depth": 6, "decode_layer": 2})[2:4]] == ["2", "2"]


def test_highlight_colours_only_the_named_pieces():
    fig = render_architecture(highlight=("dense_shortcut", "side_interpolater"), kinds=("mdt", "mdtv2"))
    assert set(_faces(fig, "side_interpolater")) == {HIGHLIGHT}
    assert HIGHLIGHT not in _faces(fig, "encoder") + _faces(fig, "patchify")
    arcs = [p for p in fig.axes[0].patches if p.get_gid() in ("dense_shortcut", "long_skips")]
    colours = {p.get_gid(): mcolors.to_hex(p.get_edgecolor()) for p in arcs}
    assert colours["dense_shortcut"] == HIGHLIGHT and colours["long_skips"] != HIGHLIGHT


def test_unknown_piece_or_model_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown piece.*choose from"):
        render_architecture(highlight="side_interpolator")
    with pytest.raises(ValueError, match="unknown model kind"):
        render_architecture(kinds=("dit", "mdt3"))
    assert "adaln" in PIECES
