"""Lesson 06's figure: Adam against Adan with the same moments, so only Adan's difference term differs.

Every path is run by the real optimizer classes (`torch.optim.Adam`, `mdt_teach.optim.Adan`, and
`torch.optim.SGD` for contrast) on a 2-element float64 parameter, so the picture shows what training
would do. Adam gets betas (β1, β3) and Adan gets (β1, β2, β3): with β2 = 0 Adan's update is Adam's
(eps outside the root in both), so the only thing β2 adds is the gradient-difference term.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
import torch

from mdt_teach.optim import Adan
from mdt_teach.viz import core

OPTIMIZERS = ("Adam", "Adan", "SGD momentum")
ESCAPE = 1e3  # a path whose |θ| passes this has diverged; it is cut there
TAIL = 50     # "final loss" = mean f over the last TAIL points of a path (the noisy valley's f jitters)


def rosenbrock(theta: torch.Tensor) -> torch.Tensor:
    """Rosenbrock's banana valley (1 − x)² + 100·(y − x²)², minimum 0 at (1, 1); θ is (..., 2)."""
    x, y = theta[..., 0], theta[..., 1]
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2


def rosenbrock_grad(theta: torch.Tensor) -> torch.Tensor:
    """∇ of `rosenbrock`, written out (cheaper than autograd for a 2-element parameter); (..., 2)."""
    x, y = theta[..., 0], theta[..., 1]
    return torch.stack([-2 * (1 - x) - 400 * x * (y - x ** 2), 200 * (y - x ** 2)], dim=-1)


def valley(theta: torch.Tensor) -> torch.Tensor:
    """A narrow tilted valley 0.1·x² + 2·(y − 0.5·x)², minimum 0 at (0, 0); θ is (..., 2)."""
    x, y = theta[..., 0], theta[..., 1]
    return 0.1 * x ** 2 + 2 * (y - 0.5 * x) ** 2


def valley_grad(theta: torch.Tensor) -> torch.Tensor:
    """∇ of `valley`; (..., 2)."""
    x, y = theta[..., 0], theta[..., 1]
    return torch.stack([0.2 * x - 2 * (y - 0.5 * x), 4 * (y - 0.5 * x)], dim=-1)


@dataclass(frozen=True)
class Landscape:
    """A 2-D test function and its gradient, where paths start, its minimum, the plotted box, the noise."""

    f: Callable[[torch.Tensor], torch.Tensor]
    grad: Callable[[torch.Tensor], torch.Tensor]
    start: tuple[float, float]
    minimum: tuple[float, float]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    noise: float = 0.0   # std of the Gaussian noise added to every gradient (the same draws for all)


LANDSCAPES = {
    "rosenbrock": Landscape(rosenbrock, rosenbrock_grad, start=(-1.5, 2.0), minimum=(1.0, 1.0),
                            xlim=(-2.0, 2.0), ylim=(-1.0, 3.0)),
    "noisy valley": Landscape(valley, valley_grad, start=(-3.5, 0.5), minimum=(0.0, 0.0),
                              xlim=(-4.0, 4.0), ylim=(-2.5, 2.5), noise=0.5),
}


def make_optimizer(name: str, params, lr: float, beta1: float, beta2: float, beta3: float):
    """Adam(β1, β3), Adan(β1, β2, β3) or SGD with momentum β1: one lr and the same β's for all."""
    if name == "Adam":
        return torch.optim.Adam(params, lr=lr, betas=(beta1, beta3))
    if name == "Adan":
        return Adan(params, lr=lr, betas=(beta1, beta2, beta3))
    if name == "SGD momentum":
        return torch.optim.SGD(params, lr=lr, momentum=beta1)
    raise ValueError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")


def trajectory(landscape: str, optimizer: str, steps: int = 300, lr: float = 0.1, beta1: float = 0.98,
               beta2: float = 0.92, beta3: float = 0.99, seed: int = 0) -> np.ndarray:
    """θ_0..θ_steps of one optimizer on one landscape, (≤ steps + 1, 2); cut where the path diverges.

    β2 is Adan's difference-term weight (Adam and SGD ignore it); `seed` picks the gradient-noise draws."""
    if landscape not in LANDSCAPES:
        raise ValueError(f"unknown landscape {landscape!r}; use one of {', '.join(LANDSCAPES)}")
    land = LANDSCAPES[landscape]
    theta = torch.tensor(land.start, dtype=torch.float64)
    opt = make_optimizer(optimizer, [theta], lr, beta1, beta2, beta3)
    gen = torch.Generator().manual_seed(seed)
    path = [theta.clone()]
    for _ in range(int(steps)):
        theta.grad = land.grad(theta) + land.noise * torch.randn(2, generator=gen, dtype=torch.float64)
        opt.step()
        path.append(theta.clone())
        if not bool(torch.isfinite(theta).all()) or theta.abs().max() > ESCAPE:
            break
    return torch.stack(path).numpy()  # (K, 2)


@lru_cache(maxsize=256)
def cached_trajectory(landscape: str, optimizer: str, steps: int, lr: float, beta1: float, beta2: float,
                      beta3: float) -> np.ndarray:
    """`trajectory` (seed 0), remembered: moving one slider recomputes only the paths it changes (read-only)."""
    path = trajectory(landscape, optimizer, steps, lr, beta1, beta2, beta3)
    path.setflags(write=False)
    return path


def final_loss(landscape: str, path: np.ndarray, steps: int | None = None) -> float:
    """Mean noise-free f over the last TAIL points of a path; inf if it was cut short of `steps`."""
    if steps is not None and len(path) <= steps:
        return float("inf")
    return float(LANDSCAPES[landscape].f(torch.tensor(path[-TAIL:])).mean())


# the three contenders: label ({b2}: Adan's β2), optimizer, whether Adan's β2 is used (False: β2 = 0),
# colour, line style
CONTENDERS = (("Adam (β1, β3)", "Adam", False, "tab:blue", "-"),
              ("Adan, β2 = 0 (difference term off)", "Adan", False, "tab:orange", "--"),
              ("Adan, β2 = {b2:.2f} (difference term on)", "Adan", True, "tab:red", "-"))


def render_difference_term(landscape: str = "rosenbrock", lr: float = 0.1, beta1: float = 0.98,
                           beta3: float = 0.99, adan_beta2: float = 0.92, steps: int = 300):
    """Figure: Adam, Adan with β2 = 0 and Adan with β2 over the contours, and f(θ_k) against the step k.

    All three share lr, β1 and β3; the middle one must retrace Adam (the legend prints the largest gap)."""
    land = LANDSCAPES[landscape]
    paths = [cached_trajectory(landscape, opt, int(steps), float(lr), float(beta1),
                               float(adan_beta2) if on else 0.0, float(beta3)) for _, opt, on, _, _ in CONTENDERS]
    finals = [final_loss(landscape, p, steps) for p in paths]
    gap = np.abs(paths[0] - paths[1]).max() if paths[0].shape == paths[1].shape else np.inf
    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.4), gridspec_kw={"width_ratios": [1.15, 1]})
    _draw_contours(ax, land)
    for (label, _, _, color, style), path, final in zip(CONTENDERS, paths, finals):
        label = label.format(b2=adan_beta2)
        width = 2.6 if style == "-" and color == "tab:blue" else 1.2  # Adam thick, so the dashed copy shows
        ax.plot(path[:, 0], path[:, 1], style, color=color, lw=width, alpha=0.9, label=label)
        ax.plot(*path[-1], "o", color=color, ms=5)
        losses = land.f(torch.tensor(path)).numpy()  # (K,)
        ax_loss.semilogy(np.maximum(losses, 1e-12), style, color=color, lw=width,
                         label=f"{label.split(' (')[0]}: " + ("diverged" if np.isinf(final) else f"final {final:.2g}"))
    ax.plot(*land.start, "ks", ms=5)
    ax.plot(*land.minimum, "k*", ms=11)
    ax.set(xlim=land.xlim, ylim=land.ylim, xlabel="x", ylabel="y")
    ax.set_title(f"{landscape}: lr = {lr:.3g}, β1 = {beta1:.2f}, β3 = {beta3:.3f} (all three); "
                 f"Adan β2 = {adan_beta2:.2f}", fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    ratio = finals[2] / finals[0] if np.isfinite(finals[0]) and finals[0] > 0 else np.nan
    ax_loss.set(xlabel="step k", ylabel="f(θ_k)", xlim=(0, steps))
    ax_loss.set_title(f"loss (noise-free f); final = mean of the last {TAIL} steps\n"
                      f"difference term: final loss × {ratio:.2g};  max |θ_Adan,β2=0 − θ_Adam| = {gap:.1g}",
                      fontsize=9)
    ax_loss.legend(fontsize=8)
    fig.tight_layout()
    return fig


@lru_cache(maxsize=len(LANDSCAPES))
def _contour_grid(land: Landscape):
    """f over the landscape's box on a 200 × 200 grid and 18 log-spaced levels (computed once per landscape)."""
    xs = torch.linspace(*land.xlim, 200, dtype=torch.float64)
    ys = torch.linspace(*land.ylim, 200, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (200, 200, 2)
    z = land.f(grid).numpy()  # (200, 200)
    levels = np.logspace(np.log10(max(z.min(), 1e-3)), np.log10(z.max()), 18)
    return xs.numpy(), ys.numpy(), z, levels


def _draw_contours(ax, land: Landscape) -> None:
    """Log-spaced contour lines of f over the landscape's box."""
    xs, ys, z, levels = _contour_grid(land)
    ax.contour(xs, ys, z, levels=levels, cmap="viridis", linewidths=0.7, alpha=0.6)


def trajectory_widget(static: bool | None = None):
    """Landscape, shared lr / β1 / β3, Adan's β2 and steps over `render_difference_term`."""
    controls = {}
    if core.widgets is not None:
        style = dict(continuous_update=False, style={"description_width": "initial"})
        controls = {
            "landscape": core.widgets.Dropdown(options=list(LANDSCAPES), value="rosenbrock", description="landscape"),
            "lr": core.widgets.FloatLogSlider(value=0.1, base=10, min=-3, max=0, step=0.1, description="lr (all)",
                                              **style),
            "beta1": core.widgets.FloatSlider(value=0.98, min=0.0, max=0.99, step=0.01, description="β1 (all)",
                                              **style),
            "beta3": core.widgets.FloatSlider(value=0.99, min=0.9, max=0.999, step=0.001, readout_format=".3f",
                                              description="β3 (all)", **style),
            "adan_beta2": core.widgets.FloatSlider(value=0.92, min=0.0, max=0.99, step=0.01,
                                                   description="Adan β2", **style),
            "steps": core.widgets.IntSlider(value=300, min=60, max=1000, step=20, description="steps", **style),
        }
    adam_betas = {"beta1": 0.9, "beta3": 0.999}   # torch.optim.Adam's defaults; the widget starts at Adan's
    settings = [
        {"landscape": "rosenbrock"},
        {"landscape": "rosenbrock", **adam_betas, "lr": 10 ** -0.5},
        {"landscape": "noisy valley"},
        {"landscape": "noisy valley", **adam_betas, "lr": 10 ** -1.5},
    ]
    return core.show(render_difference_term, controls, settings, static=static)
