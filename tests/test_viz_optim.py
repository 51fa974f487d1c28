"""Lesson 06's optimizer race, headless: real first steps, divergence cut, widget redraws, static grid."""
import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from mdt_teach.viz import optim as vo  # noqa: E402
from mdt_teach.viz.core import FigureWidget, figure_to_array  # noqa: E402



def _grad_at_start(landscape):
    land = vo.LANDSCAPES[landscape]
    theta = torch.tensor(land.start, dtype=torch.float64, requires_grad=True)
    land.f(theta).backward()
    return np.array(land.start), theta.grad.numpy()


def _pixels(fig) -> np.ndarray:
    """figure_to_array of a widget's last figure; the widget closed it, so give it an Agg canvas again."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    return figure_to_array(fig)


def test_landscapes_have_zero_gradient_and_value_at_their_minimum():
    for land in vo.LANDSCAPES.values():
        theta = torch.tensor(land.minimum, dtype=torch.float64, requires_grad=True)
        value = land.f(theta)
        value.backward()
        assert value.item() == 0.0 and torch.equal(theta.grad, torch.zeros(2, dtype=torch.float64))


def test_first_steps_are_the_textbook_ones():
    start, g = _grad_at_start("rosenbrock")  # noise-free landscape
    adan = vo.trajectory("rosenbrock", "Adan", steps=1, lr=0.05)
    sgd = vo.trajectory("rosenbrock", "SGD momentum", steps=1, sgd_lr=1e-3)
    np.testing.assert_allclose(adan[1], start - 0.05 * np.sign(g), rtol=0, atol=1e-9)  # sign step of size lr
    np.testing.assert_allclose(sgd[1], start - 1e-3 * g, rtol=0, atol=1e-12)           # plain gradient step
    assert adan.shape == sgd.shape == (2, 2)


def test_paths_are_deterministic_and_noise_is_shared():
    a = vo.trajectory("noisy valley", "Adam", steps=40, lr=0.05)
    b = vo.trajectory("noisy valley", "Adam", steps=40, lr=0.05)
    c = vo.trajectory("noisy valley", "Adam", steps=40, lr=0.05, seed=1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_diverging_path_is_cut():
    path = vo.trajectory("rosenbrock", "SGD momentum", steps=300, sgd_lr=0.05)
    assert len(path) < 301
    last = path[-1]
    assert not np.isfinite(last).all() or np.abs(last).max() > vo.ESCAPE


def test_unknown_names_raise_value_error():
    with pytest.raises(ValueError, match="landscape"):
        vo.trajectory("himmelblau", "Adan")
    with pytest.raises(ValueError, match="optimizer"):
        vo.trajectory("rosenbrock", "Lion")


def test_widget_redraws_when_sliders_move():
    w = vo.trajectory_widget(static=False)
    assert isinstance(w, FigureWidget)
    assert set(w.controls) == {"landscape", "lr", "sgd_lr", "beta1", "adan_beta2", "steps"}
    w.controls["steps"].value = 60
    before, count = _pixels(w.last_figure), w.draw_count
    w.controls["lr"].value = 0.2
    assert w.state()["lr"] == pytest.approx(0.2) and w.draw_count == count + 1
    after = _pixels(w.last_figure)
    assert before.shape == after.shape and not np.array_equal(before, after)
    w.controls["landscape"].value = "noisy valley"
    assert w.state()["landscape"] == "noisy valley" and w.draw_count == count + 2
    assert not np.array_equal(after, _pixels(w.last_figure))


def test_static_mode_returns_one_figure():
    fig = vo.trajectory_widget(static=True)
    assert isinstance(fig, Figure)
    assert figure_to_array(fig).std() > 0
