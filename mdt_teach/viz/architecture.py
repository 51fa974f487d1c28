"""Block diagrams of DiT, MDT v1 and MDTv2, with the piece a lesson builds highlighted.

Each model is one row read left to right, as a token sequence flows through it:

    DiT     x_t → patchify + pos → DiT blocks ×N                                   → final layer → ε̂, Σ
    MDT v1  x_t → patchify + pos → mask → encoder ×(N−dl) → side-interp. → decoder ×dl → final layer
    MDTv2   x_t → patchify + pos → mask → enc. in ×h ⇢ out ×h → side-interp. → decoder ×dl → final layer
                                   (long skips in → out; the dense shortcut: h0 to every decoder block)

Dashed pieces run only in the masked training pass (sampling adds the decoder's position embedding
instead of the side-interpolater). Block counts default to the XL/2 models of the official scripts
(DiT-XL/2: 28 blocks; MDT-XL/2: decode_layer 2; MDTv2-XL/2: decode_layer 4) and can be set to a model's
own with `counts`. Every drawn piece carries its name as the artist's gid, so tests can find it.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path

KINDS = {"dit": "DiT", "mdt": "MDT v1", "mdtv2": "MDTv2"}
PIECES = ("patchify", "mask", "blocks", "encoder", "long_skips", "side_interpolater", "decoder",
          "dense_shortcut", "final_layer", "adaln")
ROW = 1.9   # vertical distance between two models' rows
HIGHLIGHT, PLAIN, FADED = "#f4a259", "#dfe7f1", "#f3f3f3"
X = {"patchify": (0.6, 1.9), "mask": (2.2, 3.1), "encoder": (3.4, 6.2), "enc_in": (3.4, 4.65),
     "enc_out": (4.95, 6.2), "side_interpolater": (6.5, 7.9), "decoder": (8.2, 9.5), "final_layer": (9.8, 10.9),
     "blocks": (2.2, 9.5)}
OFFICIAL_COUNTS = {"dit": {"depth": 28}, "mdt": {"depth": 28, "decode_layer": 2},
                   "mdtv2": {"depth": 28, "decode_layer": 4}}


def layout(kind: str, counts: dict | None = None) -> list[tuple[str, str, tuple[float, float], bool]]:
    """The boxes of one model's row: (piece, label, (x0, x1), training_only)."""
    c = {**OFFICIAL_COUNTS[kind], **(counts or {})}
    depth, dl = c["depth"], c.get("decode_layer", 0)
    boxes = [("patchify", "patchify\n+ pos-embed", X["patchify"], False)]
    if kind == "dit":
        boxes.append(("blocks", f"DiT blocks ×{depth}", X["blocks"], False))
    else:
        boxes.append(("mask", "mask", X["mask"], True))
        if kind == "mdt":
            boxes.append(("encoder", f"encoder ×{depth - dl}\n(kept tokens)", X["encoder"], False))
        else:
            half = (depth - dl) // 2   # MDTv2: half in-blocks, half out-blocks (an odd remainder is dropped)
            boxes += [("encoder", f"encoder in\n×{half}", X["enc_in"], False),
                      ("encoder", f"encoder out\n×{half}", X["enc_out"], False)]
        boxes += [("side_interpolater", "side-\ninterpolater", X["side_interpolater"], True),
                  ("decoder", f"decoder\n×{dl}", X["decoder"], False)]
    boxes.append(("final_layer", "final layer\n→ ε̂, Σ", X["final_layer"], False))
    return boxes


def _box(ax, piece, label, x0, x1, y, dashed, lit, dim):
    face = HIGHLIGHT if lit else (FADED if dim else PLAIN)
    ax.add_patch(FancyBboxPatch((x0, y - 0.3), x1 - x0, 0.6, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=face, edgecolor="#333", linewidth=1.2 if lit else 0.8,
                                linestyle="--" if dashed else "-", gid=piece))
    ax.text((x0 + x1) / 2, y, label, ha="center", va="center", fontsize=7.5, color="#111" if not dim else "#777")


def _arc(ax, piece, x0, x1, y, height, lit, dim, label):
    color = HIGHLIGHT if lit else ("#bbb" if dim else "#5b7aa6")
    top = y + 0.3   # a quadratic Bézier in data units: control point at 2 × height, so the apex is at `height`
    path = Path([(x0, top), ((x0 + x1) / 2, top + 2 * height), (x1, top)], [Path.MOVETO, Path.CURVE3, Path.CURVE3])
    ax.add_patch(FancyArrowPatch(path=path, arrowstyle="-|>", mutation_scale=9, color=color,
                                 linewidth=2.0 if lit else 1.0, gid=piece))
    ax.text((x0 + x1) / 2, y + 0.3 + height + 0.04, label, ha="center", va="bottom", fontsize=6.5, color=color)


def draw_row(ax, kind: str, y: float, highlight: set, counts: dict | None = None) -> None:
    """One model's row at height y: boxes, arrows between them, skip arcs and the conditioning line."""
    dim = bool(highlight)
    boxes = layout(kind, counts)
    ax.text(0.4, y, KINDS[kind], ha="right", va="center", fontsize=9, fontweight="bold")
    for (piece, label, (x0, x1), dashed) in boxes:
        _box(ax, piece, label, x0, x1, y, dashed, piece in highlight, dim and piece not in highlight)
    for (_, _, (_, a), _), (_, _, (b, _), _) in zip(boxes, boxes[1:]):
        ax.annotate("", (b, y), (a, y), arrowprops=dict(arrowstyle="-|>", color="#555", lw=0.8))
    if kind == "mdtv2":
        lit = "long_skips" in highlight
        _arc(ax, "long_skips", sum(X["enc_in"]) / 2, sum(X["enc_out"]) / 2, y, 0.25, lit, dim and not lit, "long skips")
        lit = "dense_shortcut" in highlight
        _arc(ax, "dense_shortcut", X["patchify"][1] - 0.2, sum(X["decoder"]) / 2, y, 0.6, lit, dim and not lit,
             "dense shortcut: h0 (all tokens) → every decoder block")
    lit = "adaln" in highlight
    x0, x1 = X["blocks"][0] if kind == "dit" else X["encoder"][0], X["decoder"][1]
    ax.plot([x0, x1], [y - 0.45, y - 0.45], color=HIGHLIGHT if lit else "#999", lw=2.5 if lit else 1, gid="adaln")
    ax.text(x0, y - 0.5, "c = embed(t) + embed(y) → adaLN-Zero in every block", fontsize=6.5, va="top",
            color="#333" if lit or not dim else "#888")


def render_architecture(highlight=(), kinds=("dit", "mdt", "mdtv2"), counts: dict | None = None,
                        title: str | None = None):
    """Figure: the rows of `kinds`, with the pieces named in `highlight` coloured and the rest faded.

    counts: {kind: {"depth": N, "decode_layer": dl}} to label a model's own block counts."""
    highlight = {highlight} if isinstance(highlight, str) else set(highlight)
    unknown = highlight - set(PIECES)
    if unknown:
        raise ValueError(f"unknown piece(s) {sorted(unknown)}: choose from {', '.join(PIECES)}")
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown model kind(s) {bad}: choose from {', '.join(KINDS)}")
    fig, ax = plt.subplots(figsize=(10, 1.3 * len(kinds) + 0.3))
    for row, kind in enumerate(kinds):
        draw_row(ax, kind, y=-ROW * row, highlight=highlight, counts=(counts or {}).get(kind))
    ax.text(11.0, 0.9, "dashed: masked training pass only", ha="right", fontsize=6.5, color="#555")
    ax.set_xlim(-0.6, 11.1)
    ax.set_ylim(-ROW * (len(kinds) - 1) - 0.9, 1.15)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
