"""Lesson 06's figure: SGD with momentum, Adam and Adan racing on 2-D test functions.

Every path is run by the real optimizer classes (`torch.optim.SGD`, `torch.optim.Adam`,
`mdt_teach.optim.Adan`) on a 2-element float64 parameter, so the picture shows what training would do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
import torch

from mdt_teach.optim import Adan
from mdt_teach.viz import core

OPTIMIZERS = ("SGD momentum", "Adam", "Adan")
COLORS = {"SGD momentum": "tab:green", "Adam": "tab:blue", "Adan": "tab:red"}
ESCAPE = 1e3  # a path whose |θ| passes this has diverged; it is cut there


def rosenbrock(theta: torch.Tensor) -> torch.Tensor:
    """Rosenbrock's banana valley (1 − x)² + 100·(y − x²)², minimum 0 at (1, 1); θ is (..., 2)."""
    x, y = theta[..., 0], theta[..., 1]
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2


def valley(theta: torch.Tensor) -> torch.Tensor:
    """A narrow tilted valley 0.1·x² + 2·(y − 0.5·x)², minimum 0 at (0, 0); θ is (..., 2)."""
    x, y = theta[..., 0], theta[..., 1]
    return 0.1 * x ** 2 + 2 * (y - 0.5 * x) ** 2


@dataclass(frozen=True)
class Landscape:
    """A 2-D test function, where paths start, its minimum, the plotted box and the gradient noise."""

    f: Callable[[torch.Tensor], torch.Tensor]
    start: tuple[float, float]
    minimum: tuple[float, float]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    noise: float = 0.0   # std of the Gaussian noise added to every gradient (the same draws for all)


LANDSCAPES = {
    "rosenbrock": Landscape(rosenbrock, start=(-1.5, 2.0), minimum=(1.0, 1.0), xlim=(-2.0, 2.0), ylim=(-1.0, 3.0)),
    "noisy valley": Landscape(valley, start=(-3.5, 0.5), minimum=(0.0, 0.0), xlim=(-4.0, 4.0), ylim=(-2.5, 2.5),
                              noise=0.5),
}


def make_optimizer(name: str, params, lr: float, sgd_lr: float, beta1: float, adan_beta2: float):
    """One contender: β1 is the gradient average of all three; each keeps its default second-moment β."""
    if name == "SGD momentum":
        return torch.optim.SGD(params, lr=sgd_lr, momentum=beta1)
    if name == "Adam":
        return torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999))
    if name == "Adan":
        return Adan(params, lr=lr, betas=(beta1, adan_beta2, 0.99))
    raise ValueError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")


def trajectory(landscape: str, optimizer: str, steps: int = 300, lr: float = 0.05, sgd_lr: float = 1e-3,
               beta1: float = 0.9, adan_beta2: float = 0.92, seed: int = 0) -> np.ndarray:
    """θ_0..θ_steps of one optimizer on one landscape, (≤ steps + 1, 2); cut where the path diverges."""
    if landscape not in LANDSCAPES:
        raise ValueError(f"unknown landscape {landscape!r}; use one of {', '.join(LANDSCAPES)}")
    land = LANDSCAPES[landscape]
    theta = torch.tensor(land.start, dtype=torch.float64, requires_grad=True)
    opt = make_optimizer(optimizer, [theta], lr, sgd_lr, beta1, adan_beta2)
    gen = torch.Generator().manual_seed(seed)
    path = [theta.detach().clone()]
    for _ in range(int(steps)):
        opt.zero_grad()
        land.f(theta).backward()
        theta.grad.add_(torch.randn(2, generator=gen, dtype=torch.float64), alpha=land.noise)
        opt.step()
        path.append(theta.detach().clone())
        if not bool(torch.isfinite(theta).all()) or theta.abs().max() > ESCAPE:
            break
    return torch.stack(path).numpy()  # (K, 2)


def render_trajectories(landscape: str = "rosenbrock", lr: float = 0.05, sgd_lr: float = 1e-3,
                        beta1: float = 0.9, adan_beta2: float = 0.92, steps: int = 300, seed: int = 0):
    """Figure: the three paths over the landscape's contours, and f(θ_k) against the step k."""
    land = LANDSCAPES[landscape]
    paths = {name: trajectory(landscape, name, steps, lr, sgd_lr, beta1, adan_beta2, seed) for name in OPTIMIZERS}
    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.15, 1]})
    _draw_contours(ax, land)
    for name, path in paths.items():
        ax.plot(path[:, 0], path[:, 1], "-", color=COLORS[name], lw=1.2, alpha=0.9, label=name)
        ax.plot(*path[-1], "o", color=COLORS[name], ms=5)
        losses = land.f(torch.from_numpy(path)).numpy()  # (K,)
        diverged = len(path) <= steps
        ax_loss.semilogy(np.maximum(losses, 1e-12), color=COLORS[name],
                         label=f"{name}: {'diverged' if diverged else f'f = {losses[-1]:.2g}'}")
    ax.plot(*land.start, "ks", ms=5)
    ax.plot(*land.minimum, "k*", ms=11)
    ax.set(xlim=land.xlim, ylim=land.ylim, xlabel="x", ylabel="y")
    ax.set_title(f"{landscape}: Adam/Adan lr = {lr:.3g}, SGD lr = {sgd_lr:.3g}, β1 = {beta1:.2f}, "
                 f"Adan β2 = {adan_beta2:.2f}", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    ax_loss.set(xlabel="step k", ylabel="f(θ_k)", xlim=(0, steps))
    ax_loss.set_title("loss along the path (noise-free f)", fontsize=9)
    ax_loss.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _draw_contours(ax, land: Landscape) -> None:
    """Log-spaced contour lines of f over the landscape's box."""
    xs = torch.linspace(*land.xlim, 200, dtype=torch.float64)
    ys = torch.linspace(*land.ylim, 200, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (200, 200, 2)
    z = land.f(grid).numpy()  # (200, 200)
    levels = np.logspace(np.log10(max(z.min(), 1e-3)), np.log10(z.max()), 18)
    ax.contour(xs.numpy(), ys.numpy(), z, levels=levels, cmap="viridis", linewidths=0.7, alpha=0.6)


def trajectory_widget(static: bool | None = None):
    """Sliders for landscape, lr (Adam, Adan), SGD lr, β1, Adan's β2 and steps over `render_trajectories`."""
    controls = {}
    if core.widgets is not None:
        style = dict(continuous_update=False, style={"description_width": "initial"})
        controls = {
            "landscape": core.widgets.Dropdown(options=list(LANDSCAPES), value="rosenbrock", description="landscape"),
            "lr": core.widgets.FloatLogSlider(value=0.05, base=10, min=-3, max=0, step=0.1, description="lr (Adam, Adan)",
                                         **style),
            "sgd_lr": core.widgets.FloatLogSlider(value=1e-3, base=10, min=-5, max=-1, step=0.1, description="SGD lr",
                                             **style),
            "beta1": core.widgets.FloatSlider(value=0.9, min=0.0, max=0.99, step=0.01, description="β1", **style),
            "adan_beta2": core.widgets.FloatSlider(value=0.92, min=0.0, max=0.99, step=0.01, description="Adan β2",
                                              **style),
            "steps": core.widgets.IntSlider(value=300, min=20, max=1000, step=20, description="steps", **style),
        }
    settings = [
        {"landscape": "rosenbrock"},
        {"landscape": "rosenbrock", "lr": 0.3},
        {"landscape": "noisy valley"},
        {"landscape": "noisy valley", "beta1": 0.5},
    ]
    return core.show(render_trajectories, controls, settings, static=static)
