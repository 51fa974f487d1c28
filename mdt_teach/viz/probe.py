"""Lesson 11's widgets: a face with a region hidden and what each model draws there (RePaint), and where a
token looks (attention of one query token, DiT beside MDTv2 at equal steps).

The computation lives in `mdt_teach.probe` and `mdt_teach.sampling`; this module only draws.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from mdt_teach.diffusion import GaussianDiffusion
from mdt_teach.probe import attention_maps, completed, hidden_tokens
from mdt_teach.sampling import inpaint, keep_from_tokens
from mdt_teach.viz import core
from mdt_teach.viz.images import to_image


def _one(faces, i: int):
    """Face i of (images, labels, meta) as a batch of one."""
    images, labels, meta = faces
    return images[i:i + 1], labels[i:i + 1], {k: v[i:i + 1] for k, v in meta.items()}


_COMPLETIONS: dict = {}   # completions drawn so far: a face, region or resampling count revisited redraws at once
_COMPLETIONS_KEPT = 256    # one 32×32 face each


def cached_inpaint(model, image: torch.Tensor, keep: torch.Tensor, label: torch.Tensor, steps: str, resamples: int,
                   seed: int) -> torch.Tensor:
    """The widget's RePaint completion (jumps of 5), remembered for the same model weights, face, hidden region,
    label, steps, resamplings and seed."""
    weights = sum(p._version for p in model.parameters())   # changes when any weight is updated in place
    inputs = tuple(x.detach().cpu().numpy().tobytes() for x in (image, keep, label))
    full_key = (id(model), weights, *inputs, steps, int(resamples), seed)
    if full_key not in _COMPLETIONS:
        while len(_COMPLETIONS) >= _COMPLETIONS_KEPT:
            _COMPLETIONS.pop(next(iter(_COMPLETIONS)))
        _COMPLETIONS[full_key] = inpaint(model, image, keep, label, GaussianDiffusion(), steps=steps, jump_length=5,
                                         resamples=int(resamples), generator=torch.Generator().manual_seed(seed)).cpu()
    return _COMPLETIONS[full_key]


def render_inpainting(face: int, region: str, resamples: int, models: dict, faces, steps: str = "25",
                      seed: int = 0):
    """Columns: the face, the face with `region`'s tokens hidden, then each model's completion (RePaint,
    `resamples` resamplings) titled with the probe's verdict for that face."""
    image, label, meta = _one(faces, int(face))
    patch = next(iter(models.values())).patch_size
    hide, usable = hidden_tokens(meta, region, patch)
    keep = 1 - keep_from_tokens(torch.from_numpy(hide), patch)                      # (1, 1, H, W)
    fig, axes = plt.subplots(1, 2 + len(models), figsize=(2.3 * (2 + len(models)), 2.7))
    axes[0].imshow(to_image(image[0]), interpolation="nearest")
    axes[0].set_title(f"face {int(face)}", fontsize=9)
    axes[1].imshow(to_image((image * keep + 0.2 * (1 - keep))[0]), interpolation="nearest")
    axes[1].set_title(f"{region} hidden ({int(hide.sum())} tokens)" + ("" if usable[0] else "\n(not a probe face)"),
                      fontsize=9)
    for ax, (name, model) in zip(axes[2:], models.items()):
        done = cached_inpaint(model, image, keep, label, steps, resamples, seed)
        ok = bool(completed(done, meta, keep)[0])
        ax.imshow(to_image(done[0]), interpolation="nearest")
        verdict = ("the eyes agree ✓" if ok else "the eyes disagree ✗") if region == "eye" else \
                  ("clean, agreeing eyes ✓" if ok else "not a clean, agreeing pair ✗")
        ax.set_title(f"{name}\n{verdict}", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


def inpainting_widget(models: dict, faces, static: bool | None = None):
    """A face slider, a region dropdown and a resampling slider redraw `render_inpainting`."""
    controls = {}
    if core.widgets is not None:
        controls["face"] = core.widgets.IntSlider(value=0, min=0, max=len(faces[0]) - 1, description="face",
                                                  continuous_update=False)
        controls["region"] = core.widgets.Dropdown(options=["eye", "cheek"], value="eye", description="hide")
        controls["resamples"] = core.widgets.IntSlider(value=2, min=1, max=5, description="resamples",
                                                       continuous_update=False)
    settings = [{"face": 0, "region": "eye", "resamples": 2}, {"face": 0, "region": "cheek", "resamples": 2}]
    return core.show(render_inpainting, controls, settings, fixed={"models": models, "faces": faces}, static=static)


def render_attention(token: int, layer: int, t: int, models: dict, image: torch.Tensor, label: torch.Tensor,
                     seed: int = 0):
    """For each model: the face at noise level t, and where query token `token` looks in layer `layer`
    (attention averaged over heads; the query token outlined). One colour scale for all models, with its
    colour bar, so the panels compare: the same colour is the same attention weight in every model."""
    noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(seed))
    tt = torch.tensor([int(t)])
    x_t = GaussianDiffusion().q_sample(image, tt, noise)
    rows, depths = {}, {}
    for name, model in models.items():
        w = attention_maps(model.eval(), x_t, tt, label)                             # (L, 1, H, N, N)
        depths[name] = w.shape[0]
        rows[name] = w[min(int(layer), w.shape[0] - 1), 0, :, int(token)].mean(0)  # (N,) over heads
    vmax = max(float(row.max()) for row in rows.values())
    fig, axes = plt.subplots(1, len(models), figsize=(3.3 * len(models) + 0.6, 3.3), squeeze=False)
    for ax, (name, row) in zip(axes[0], rows.items()):
        depth = depths[name]
        g = int(round(row.numel() ** 0.5))
        ax.imshow(to_image(image[0]), interpolation="nearest")
        size = image.shape[-1]
        shown = ax.imshow(row.view(g, g).numpy(), cmap="magma", alpha=0.65,
                          extent=(-0.5, size - 0.5, size - 0.5, -0.5), vmin=0, vmax=vmax)
        r, c = divmod(int(token), g)
        p = size / g
        ax.add_patch(plt.Rectangle((c * p - 0.5, r * p - 0.5), p, p, fill=False, edgecolor="cyan", linewidth=2))
        ax.set_title(f"{name}: layer {min(int(layer), depth - 1)} of {depth}, t = {int(t)}", fontsize=9)
        ax.axis("off")
    fig.colorbar(shown, ax=list(axes[0]), fraction=0.03, pad=0.02, label="attention weight (mean over heads)")
    return fig


def attention_widget(models: dict, image: torch.Tensor, label: torch.Tensor, token: int = 21,
                     static: bool | None = None):
    """Token, layer and t sliders redraw `render_attention` (DiT and MDTv2 side by side)."""
    t0 = torch.tensor([100])
    depth = min(attention_maps(model.eval(), image, t0, label).shape[0] for model in models.values())   # layers run
    n_tokens = (image.shape[-1] // next(iter(models.values())).patch_size) ** 2
    controls = {}
    if core.widgets is not None:
        controls["token"] = core.widgets.IntSlider(value=token, min=0, max=n_tokens - 1, description="token",
                                                   continuous_update=False)
        controls["layer"] = core.widgets.IntSlider(value=depth - 1, min=0, max=depth - 1, description="layer",
                                                   continuous_update=False)
        controls["t"] = core.widgets.IntSlider(value=100, min=0, max=900, step=100, description="t",
                                               continuous_update=False)
    settings = [{"token": token, "layer": 0, "t": 100}, {"token": token, "layer": depth - 1, "t": 100}]
    return core.show(render_attention, controls, settings,
                     fixed={"models": models, "image": image, "label": label}, static=static)


def render_probe_results(results: dict):
    """Lesson 11's cited result, per model and stage: the missing-eye probe (95% interval) and its follow test
    over the painters' chance line, the pair agreement of free samples over theirs, and the eye-to-eye
    attention against skin."""
    rows = results["rows"]
    names = list(dict.fromkeys(r["model"] for r in rows))
    colors = dict(zip(names, ["tab:gray", "tab:orange", "tab:blue"]))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for name in names:
        rs = [r for r in rows if r["model"] == name]
        steps = [r["steps"] for r in rs]
        eye = np.array([r["eye"]["completed"] for r in rs])
        lo = eye - np.array([r["eye"]["completed_ci"][0] for r in rs])
        hi = np.array([r["eye"]["completed_ci"][1] for r in rs]) - eye
        axes[0].errorbar(steps, eye, yerr=[lo, hi], marker="o", capsize=3, color=colors[name], label=name)
        axes[0].plot(steps, [r["eye"]["follow"] for r in rs], ls="--", marker=".", color=colors[name])
        axes[1].plot(steps, [r["pair_agreement"] for r in rs], marker="s", color=colors[name], label=name)
        ratio = [np.mean(r["attention"]["100"]["other_eye"]) / np.mean(r["attention"]["100"]["skin"]) for r in rs]
        axes[2].plot(steps, ratio, marker="^", color=colors[name], label=name)
    probe_chance = max(max(r["eye"]["chance"].values()) for r in rows)
    free_chance = max(results["free_chance"].values())
    for ax, line in ((axes[0], probe_chance), (axes[1], free_chance)):
        ax.axhspan(0, line, color="grey", alpha=0.2, label=f"relation-blind painters ≤ {line:.0%}")
    axes[0].set(title="missing-eye probe: the drawn eye agrees\n(dashed: follows a recoloured visible eye)",
                xlabel="training steps", ylim=(0, 1.05))
    axes[1].set(title="pair agreement of free samples", xlabel="training steps", ylim=(0, 1.05))
    axes[2].set(title="attention left eye → right eye / → skin\n(per token, mean over layers, t = 100)",
                xlabel="training steps")
    axes[2].axhline(1.0, color="grey", lw=0.6, ls="--")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
