"""Lesson 06's controlled Adam/Adan comparison, headless: gradients, first steps, Adan(β2 = 0) = Adam,
no divergence on the lr slider (exercise 3), the divergence cut, widget redraws for every control, static grid."""
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


def _slider_lrs() -> list[float]:
    """Every value the widget's lr slider can take (FloatLogSlider: 10 ** (min + i·step))."""
    lr = vo.trajectory_widget(static=False).controls["lr"]
    n = round((lr.max - lr.min) / lr.step)
    return [lr.base ** (lr.min + i * lr.step) for i in range(n + 1)]


def test_landscapes_have_zero_gradient_and_value_at_their_minimum():
    for land in vo.LANDSCAPES.values():
        theta = torch.tensor(land.minimum, dtype=torch.float64, requires_grad=True)
        value = land.f(theta)
        value.backward()
        assert value.item() == 0.0 and torch.equal(theta.grad, torch.zeros(2, dtype=torch.float64))
        assert torch.equal(land.grad(theta.detach()), torch.zeros(2, dtype=torch.float64))


def test_written_out_gradients_match_autograd():
    theta = (torch.rand(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 0.5) * 6
    for land in vo.LANDSCAPES.values():
        x = theta.clone().requires_grad_(True)
        land.f(x).sum().backward()
        torch.testing.assert_close(land.grad(theta), x.grad, rtol=1e-12, atol=1e-9)
    start, g = _grad_at_start("rosenbrock")   # lesson 06, exercise 3: about (−155, −50) at the start
    np.testing.assert_allclose(g, [-155.0, -50.0], rtol=0, atol=1e-9)


def test_first_steps_are_the_textbook_ones():
    start, g = _grad_at_start("rosenbrock")  # noise-free landscape
    for name in ("Adam", "Adan"):
        path = vo.trajectory("rosenbrock", name, steps=1, lr=0.05)
        np.testing.assert_allclose(path[1], start - 0.05 * np.sign(g), rtol=0, atol=1e-9)  # sign step of size lr
        assert path.shape == (2, 2)
    sgd = vo.trajectory("rosenbrock", "SGD momentum", steps=1, lr=1e-3)
    np.testing.assert_allclose(sgd[1], start - 1e-3 * g, rtol=0, atol=1e-12)           # plain gradient step


@pytest.mark.parametrize("landscape", list(vo.LANDSCAPES))
def test_adan_without_difference_term_retraces_adam(landscape):
    for lr, b1, b3 in ((0.03, 0.9, 0.999), (0.3, 0.98, 0.99), (1.0, 0.5, 0.9)):
        adam = vo.trajectory(landscape, "Adam", 200, lr, beta1=b1, beta3=b3, seed=3)
        adan0 = vo.trajectory(landscape, "Adan", 200, lr, beta1=b1, beta2=0.0, beta3=b3, seed=3)
        adan = vo.trajectory(landscape, "Adan", 200, lr, beta1=b1, beta2=0.92, beta3=b3, seed=3)
        assert adam.shape == adan0.shape == (201, 2)
        assert np.abs(adam - adan0).max() <= 1e-12                # β2 = 0: Adam, step for step
        assert np.abs(adam - adan).max() > 1e-3                   # β2 on: a different path
        assert vo.trajectory(landscape, "Adam", 200, lr, beta1=b1, beta2=0.5, beta3=b3, seed=3).tolist() \
            == adam.tolist()                                      # Adam ignores β2


def test_at_the_widget_defaults_adam_zigzags_across_the_valley_floor_and_adan_does_not():
    """Lesson 06's description of the widget's first picture (Rosenbrock, lr 0.1, betas (0.98, 0.92, 0.99))."""
    adam, adan = (vo.trajectory("rosenbrock", name) for name in ("Adam", "Adan"))
    crossings = [int((np.diff(np.sign(p[:, 1] - p[:, 0] ** 2)) != 0).sum()) for p in (adam, adan)]
    assert crossings[0] > 3 * crossings[1]                     # y = x² is the valley floor
    assert np.abs(adan[-1] - 1).max() < 0.25 < np.abs(adam[-1] - 1).max()   # Adan near (1, 1), Adam on the way


def test_paths_are_deterministic_and_noise_is_shared():
    a = vo.trajectory("noisy valley", "Adam", steps=40, lr=0.05)
    b = vo.trajectory("noisy valley", "Adam", steps=40, lr=0.05)
    c = vo.trajectory("noisy valley", "Adam", steps=40, lr=0.05, seed=1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_diverging_path_is_cut_and_has_infinite_final_loss():
    path = vo.trajectory("rosenbrock", "SGD momentum", steps=300, lr=0.01)
    assert len(path) == 5                                      # lesson 06, exercise 3: cut after 4 steps
    assert not np.isfinite(path[-1]).all() or np.abs(path[-1]).max() > vo.ESCAPE
    assert vo.final_loss("rosenbrock", path, 300) == float("inf")


def test_final_loss_is_the_mean_over_the_last_steps():
    path = vo.trajectory("noisy valley", "Adan", steps=120, lr=0.1)
    values = vo.valley(torch.from_numpy(path)).numpy()
    assert vo.final_loss("noisy valley", path, 120) == pytest.approx(values[-vo.TAIL:].mean(), rel=1e-12)


def test_no_lr_on_the_slider_makes_adam_or_adan_diverge_at_default_betas():
    """Lesson 06, exercise 3: no path is cut on Rosenbrock, and no coordinate moves more than lr per step."""
    lrs = _slider_lrs()
    assert len(lrs) == 31 and lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1.0)
    for lr in lrs:
        for name in ("Adam", "Adan"):
            path = vo.trajectory("rosenbrock", name, 300, lr)
            assert path.shape == (301, 2), (name, lr)
            assert np.abs(np.diff(path, axis=0)).max() <= lr, (name, lr)


def test_unknown_names_raise_value_error():
    with pytest.raises(ValueError, match="landscape"):
        vo.trajectory("himmelblau", "Adan")
    with pytest.raises(ValueError, match="optimizer"):
        vo.trajectory("rosenbrock", "Lion")


def test_render_shows_three_contenders_and_the_gap():
    fig = vo.render_difference_term("noisy valley", lr=0.1, adan_beta2=0.5, steps=80)
    ax, ax_loss = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "Adam (β1, β3)", "Adan, β2 = 0 (difference term off)", "Adan, β2 = 0.50 (difference term on)"]
    assert "max |θ_Adan,β2=0 − θ_Adam| = 0" in ax_loss.get_title()
    assert len(ax_loss.get_lines()) == 3
    assert figure_to_array(fig).std() > 0


def test_widget_redraws_when_any_control_moves():
    w = vo.trajectory_widget(static=False)
    assert isinstance(w, FigureWidget)
    assert set(w.controls) == {"landscape", "lr", "beta1", "beta3", "adan_beta2", "steps"}
    assert w.state() == {"landscape": "rosenbrock", "lr": pytest.approx(0.1), "beta1": 0.98, "beta3": 0.99,
                         "adan_beta2": 0.92, "steps": 300}
    w.controls["steps"].value = 60
    before, count = _pixels(w.last_figure), w.draw_count
    for key, value in (("lr", 0.2), ("beta1", 0.9), ("beta3", 0.999), ("adan_beta2", 0.5),
                       ("landscape", "noisy valley"), ("steps", 100)):
        w.controls[key].value = value
        count += 1
        assert w.state()[key] == pytest.approx(value) if key != "landscape" else w.state()[key] == value
        assert w.draw_count == count, key
        after = _pixels(w.last_figure)
        assert not np.array_equal(before, after), f"moving {key} did not change the figure"
        before = after


def test_static_mode_returns_one_figure():
    fig = vo.trajectory_widget(static=True)
    assert isinstance(fig, Figure)
    assert figure_to_array(fig).std() > 0


def test_moving_adan_beta2_recomputes_only_the_path_it_changes(monkeypatch):
    """The widget remembers paths (`cached_trajectory`): β2 moves only Adan-with-β2's path; a path comes back
    read-only and equal to `trajectory`'s."""
    vo.cached_trajectory.cache_clear()
    computed = []
    real = vo.trajectory
    monkeypatch.setattr(vo, "trajectory", lambda *a, **k: computed.append(a[:2] + a[5:6]) or real(*a, **k))
    vo.render_difference_term(steps=60, adan_beta2=0.5)
    assert sorted(computed) == [("rosenbrock", "Adam", 0.0), ("rosenbrock", "Adan", 0.0), ("rosenbrock", "Adan", 0.5)]
    vo.render_difference_term(steps=60, adan_beta2=0.7)
    assert computed[3:] == [("rosenbrock", "Adan", 0.7)]
    path = vo.cached_trajectory("rosenbrock", "Adan", 60, 0.1, 0.98, 0.7, 0.99)
    assert not path.flags.writeable and np.array_equal(path, real("rosenbrock", "Adan", 60, 0.1, 0.98, 0.7, 0.99))
