"""Adan against fixed test vectors, against pytorch-optimizer's Adan, and against itself (paths, resume).

The vectors below were computed in float64 with sail-sg/Adan's official `adan.py` and `timm.optim.Adan`,
which agree to 6 decimals; every run uses lr 0.1 and starts from θ0 = [0.5, -1, 2]. Hand checks: step 1
of A is θ0 − 0.1·sign(g1); B divides that by 1 + lr·wd; F's step 4 (right after a restart) is a sign step.
"""
import copy
import io

import pytest
import torch

from mdt_teach.optim import Adan, adan_step_foreach, adan_step_single, state_bytes

THETA0 = [0.5, -1.0, 2.0]
GRADS_P1 = [[0.1, -0.2, 0.3], [0.2, -0.1, 0.0], [-0.3, 0.4, 0.1], [0.05, 0.05, -0.2], [0.0, -0.3, 0.25]]
CONFIGS = {
    "A": {},
    "B": dict(weight_decay=0.05),
    "C": dict(weight_decay=0.05, no_prox=True),
    "D": dict(betas=(0.9, 0.9, 0.999), eps=1e-6),
    "E": dict(max_grad_norm=0.25),
    "F": {},  # A with restart() just before step 4
}
# Problem 1 (scripted gradients): θ after steps 1..5 (float64, 6 decimals)
P1 = {
    "A": [[0.400000, -0.900000, 1.900000], [0.309264, -0.828050, 1.898357], [0.338363, -0.873796, 1.870081],
          [0.337413, -0.893478, 1.892432], [0.339203, -0.880033, 1.869958]],
    "B": [[0.398010, -0.895522, 1.890547], [0.305745, -0.819475, 1.879507], [0.333178, -0.860916, 1.842020],
          [0.330575, -0.876217, 1.855096], [0.330712, -0.858480, 1.823504]],
    "C": [[0.397500, -0.895000, 1.890000], [0.304777, -0.818575, 1.878907], [0.332351, -0.860228, 1.841236],
          [0.329740, -0.875609, 1.854381], [0.329881, -0.857786, 1.822635]],
    "D": [[0.400001, -0.900000, 1.900000], [0.307815, -0.829361, 1.900000], [0.339983, -0.879034, 1.872775],
          [0.340127, -0.901084, 1.899604], [0.343010, -0.886029, 1.876745]],
    "E": [[0.400000, -0.900000, 1.900000], [0.315226, -0.805346, 1.898357], [0.326178, -0.839867, 1.876003],
          [0.313549, -0.858027, 1.909727], [0.306260, -0.838347, 1.895901]],
    "F": [[0.400000, -0.900000, 1.900000], [0.309264, -0.828050, 1.898357], [0.338363, -0.873796, 1.870081],
          [0.238363, -0.973796, 1.970081], [0.236720, -0.907223, 1.920649]],
}
# Problem 2 (closed-loop quadratic + quartic): θ after steps 1..5
P2 = {
    "A": [[0.600000, -0.900000, 1.900000], [0.691716, -0.801259, 1.800279], [0.771121, -0.703367, 1.700710],
          [0.830446, -0.606473, 1.601295], [0.866503, -0.510857, 1.502058]],
    "B": [[0.597015, -0.895522, 1.890547], [0.685907, -0.792928, 1.781960], [0.763340, -0.691760, 1.674088],
          [0.822287, -0.592168, 1.566928], [0.859110, -0.494439, 1.460500]],
    "C": [[0.597500, -0.895000, 1.890000], [0.686738, -0.791908, 1.780876], [0.764298, -0.690263, 1.672474],
          [0.823076, -0.590216, 1.564792], [0.859536, -0.492060, 1.457849]],
    "D": [[0.600000, -0.900000, 1.900000], [0.690748, -0.801671, 1.800454], [0.767590, -0.704807, 1.701305],
          [0.822785, -0.609792, 1.602639], [0.853681, -0.517148, 1.504563]],
    "E": [[0.600000, -0.900000, 1.900000], [0.694232, -0.800452, 1.799996], [0.777074, -0.701247, 1.699991],
          [0.836647, -0.602501, 1.599985], [0.867427, -0.504421, 1.499979]],
}
STATE_A = dict(exp_avg=[0.000827, -0.002909, 0.008535], exp_avg_sq=[0.007976, 0.012235, 0.008617],
               exp_avg_diff=[-0.005866, -0.013674, 0.002003], neg_pre_grad=[0.0, 0.3, -0.25])
TOL6 = dict(rtol=0, atol=6e-7)  # the tables are rounded to 6 decimals



def f64(values):
    return torch.tensor(values, dtype=torch.float64)


def quad_quartic_loss(theta):
    """Problem 2's loss: Σ ½·a·(θ − c)² + 0.1·Σ θ⁴."""
    a, c = f64([1.0, 2.0, 4.0]), f64([1.0, 0.0, -1.0])
    return (0.5 * a * (theta - c) ** 2).sum() + 0.1 * (theta ** 4).sum()


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("name", list(P1))
def test_problem1_scripted_gradients(name, foreach):
    theta = torch.nn.Parameter(f64(THETA0))
    opt = Adan([theta], lr=0.1, foreach=foreach, **CONFIGS[name])
    for k, (g, expected) in enumerate(zip(GRADS_P1, P1[name]), start=1):
        if name == "F" and k == 4:
            opt.restart()
        theta.grad = f64(g)
        opt.step()
        torch.testing.assert_close(theta.detach(), f64(expected), **TOL6)


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("name", list(P2))
def test_problem2_closed_loop(name, foreach):
    theta = torch.nn.Parameter(f64(THETA0))
    opt = Adan([theta], lr=0.1, foreach=foreach, **CONFIGS[name])
    for expected in P2[name]:
        opt.zero_grad()
        quad_quartic_loss(theta).backward()
        opt.step()
        torch.testing.assert_close(theta.detach(), f64(expected), **TOL6)


@pytest.mark.parametrize("foreach", [False, True])
def test_state_after_five_steps_config_a(foreach):
    theta = torch.nn.Parameter(f64(THETA0))
    opt = Adan([theta], lr=0.1, foreach=foreach)
    for g in GRADS_P1:
        theta.grad = f64(g)
        opt.step()
    state = opt.state[theta]
    assert sorted(state) == sorted(STATE_A)
    for key, expected in STATE_A.items():
        torch.testing.assert_close(state[key], f64(expected), **TOL6)
    assert opt.param_groups[0]["step"] == 5


def test_first_step_is_a_sign_step():
    theta = torch.nn.Parameter(torch.randn(50, dtype=torch.float64))
    theta0, g = theta.detach().clone(), torch.randn(50, dtype=torch.float64)
    theta.grad = g.clone()
    Adan([theta], lr=0.1, eps=0.0).step()
    torch.testing.assert_close(theta.detach(), theta0 - 0.1 * g.sign(), rtol=0, atol=1e-12)


# --- against pytorch-optimizer's Adan (same betas, clipping and prox decay as the official adan.py) ----

def small_mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16),
                               torch.nn.Tanh(), torch.nn.Linear(16, 3))


def batches(steps, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(32, 6, generator=gen), torch.randn(32, 3, generator=gen)) for _ in range(steps)]


def train(model, opt, data):
    """zero_grad → MSE backward → step for every batch; returns the list of losses."""
    losses = []
    for x, y in data:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


REFERENCE_CONFIGS = {
    "defaults": {},
    "wd_prox": dict(weight_decay=0.05),
    "wd_no_prox": dict(weight_decay=0.05, no_prox=True),
    "other_betas": dict(betas=(0.9, 0.95, 0.999), eps=1e-6),
    "clipping": dict(max_grad_norm=0.05),
    "clip_wd_betas": dict(max_grad_norm=0.1, weight_decay=0.02, betas=(0.95, 0.9, 0.995)),
}


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("name", list(REFERENCE_CONFIGS))
def test_matches_pytorch_optimizer_adan(name, foreach):
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
    kwargs = REFERENCE_CONFIGS[name]
    ours, ref = small_mlp(), small_mlp()
    ref_kwargs = {("weight_decouple" if k == "no_prox" else k): v for k, v in kwargs.items()}
    opt_ref = pytorch_optimizer.Adan(ref.parameters(), lr=1e-2, foreach=False, **ref_kwargs)
    opt_ours = Adan(ours.parameters(), lr=1e-2, foreach=foreach, **kwargs)
    data = batches(20)
    train(ours, opt_ours, data)
    train(ref, opt_ref, data)
    for p, q in zip(ours.parameters(), ref.parameters()):
        assert (p.detach() - q.detach()).abs().max().item() <= 2e-6
    moved = max((p - q).abs().max().item() for p, q in zip(ours.parameters(), small_mlp().parameters()))
    assert moved > 1e-2  # the comparison is not vacuous


# --- our two paths, clipping, resume ----------------------------------------------------------------

def test_foreach_path_equals_single_tensor_path_bitwise():
    data = batches(20)
    models = [small_mlp() for _ in range(3)]
    opts = [Adan(models[0].parameters(), lr=1e-2, weight_decay=0.01, max_grad_norm=0.5, foreach=False),
            Adan(models[1].parameters(), lr=1e-2, weight_decay=0.01, max_grad_norm=0.5, foreach=True),
            Adan(models[2].parameters(), lr=1e-2, weight_decay=0.01, max_grad_norm=0.5, foreach=True)]
    opts[2].cpu_wave_numel = 40  # cut the 16x16 weights into flat views, many waves per step
    for model, opt in zip(models, opts):
        train(model, opt, data)
    for p, q, r in zip(*(m.parameters() for m in models)):
        assert torch.equal(p, q) and torch.equal(p, r)
    for key in ("exp_avg", "exp_avg_diff", "exp_avg_sq", "neg_pre_grad"):
        for p, q in zip(models[0].parameters(), models[1].parameters()):
            assert torch.equal(opts[0].state[p][key], opts[1].state[q][key])


def test_step_functions_agree_on_mixed_dtypes():
    torch.manual_seed(0)
    shapes = [(5, 3), (7,), (2, 2, 2)]
    rows = [[torch.randn(s, dtype=torch.float64) for _ in range(6)] for s in shapes]
    rows[1] = [t.float() for t in rows[1]]
    for t in rows:
        t[4].abs_()  # n ≥ 0
    twin = copy.deepcopy(rows)
    kwargs = dict(step=3, lr=0.05, betas=(0.98, 0.92, 0.99), eps=1e-8, weight_decay=0.1, no_prox=False)
    for row in rows:
        adan_step_single(*row, **kwargs)
    adan_step_foreach(*map(list, zip(*twin)), **kwargs)
    for row, other in zip(rows, twin):
        for a, b in zip(row, other):
            assert torch.equal(a, b)


def test_clipping_equals_clip_grad_norm_then_unclipped_step():
    data = batches(12)
    clipped, plain = small_mlp(), small_mlp()
    # same eps on both sides so the clip factor max/(‖g‖ + eps) is computed identically
    opt_in = Adan(clipped.parameters(), lr=1e-2, eps=1e-6, max_grad_norm=0.05)
    opt_out = Adan(plain.parameters(), lr=1e-2, eps=1e-6)
    for x, y in data:
        for model, opt in ((clipped, opt_in), (plain, opt_out)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
        norm = torch.nn.utils.clip_grad_norm_(plain.parameters(), max_norm=0.05)
        assert norm > 0.05  # clipping is active on every step
        opt_in.step()
        opt_out.step()
        for p, q in zip(clipped.parameters(), plain.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=0)  # scaled in place, like official
    for p, q in zip(clipped.parameters(), plain.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


@pytest.mark.parametrize("foreach", [False, True])
def test_state_dict_round_trip_continues_bitwise(foreach):
    data = batches(15)
    model = small_mlp()
    opt = Adan(model.parameters(), lr=1e-2, weight_decay=0.02, max_grad_norm=0.5, foreach=foreach)
    train(model, opt, data[:7])
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    resumed = small_mlp(seed=123)
    resumed.load_state_dict(saved["model"])
    opt2 = Adan(resumed.parameters(), lr=1.0)  # hyper-parameters come back from the state dict
    opt2.load_state_dict(saved["opt"])
    assert opt2.param_groups[0]["step"] == 7 and opt2.param_groups[0]["lr"] == 1e-2
    train(model, opt, data[7:])
    train(resumed, opt2, data[7:])
    for p, q in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_param_groups_have_their_own_settings_and_step_counter():
    data = batches(10)
    grouped, split = small_mlp(), small_mlp()
    first, rest = list(grouped[0].parameters()), [p for m in list(grouped)[1:] for p in m.parameters()]
    opt = Adan([{"params": first, "lr": 3e-2, "weight_decay": 0.1}, {"params": rest}], lr=1e-2)
    s_first, s_rest = list(split[0].parameters()), [p for m in list(split)[1:] for p in m.parameters()]
    opt_a = Adan(s_first, lr=3e-2, weight_decay=0.1)
    opt_b = Adan(s_rest, lr=1e-2)
    for x, y in data:
        for model in (grouped, split):
            model.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        opt_a.step()
        opt_b.step()
    for p, q in zip(grouped.parameters(), split.parameters()):
        assert torch.equal(p, q)
    assert [g["step"] for g in opt.param_groups] == [10, 10]


def test_closure_is_called_and_its_loss_returned():
    model, data = small_mlp(), batches(1)
    opt = Adan(model.parameters(), lr=1e-2)
    x, y = data[0]

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    before = [p.detach().clone() for p in model.parameters()]
    loss = opt.step(closure)
    assert loss.item() == pytest.approx(torch.nn.functional.mse_loss(small_mlp()(x), y).item())
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_state_bytes_four_buffers_vs_adamw_two():
    model = small_mlp()
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    adan = Adan(model.parameters())
    adamw = torch.optim.AdamW(model.parameters())
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    adan.step()
    adamw.step()
    assert state_bytes(adan) == 4 * n_bytes
    n_tensors = len(list(model.parameters()))
    assert state_bytes(adamw) == 2 * n_bytes + n_tensors * 4  # + one float32 step scalar per tensor


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(lr=-1e-3), "lr"),
    (dict(betas=(1.0, 0.92, 0.99)), "betas[0]"),
    (dict(betas=(0.98, -0.1, 0.99)), "betas[1]"),
    (dict(betas=(0.98, 0.92, 1.5)), "betas[2]"),
    (dict(betas=(0.9, 0.999)), "three betas"),
    (dict(eps=-1e-8), "eps"),
    (dict(weight_decay=-0.1), "weight_decay"),
    (dict(max_grad_norm=-1.0), "max_grad_norm"),
    (dict(lr=float("nan")), "lr"),
])
def test_bad_arguments_raise_value_error(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        Adan(small_mlp().parameters(), **kwargs)


def test_sparse_gradient_raises_value_error():
    emb = torch.nn.Embedding(10, 4, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(ValueError, match="sparse"):
        Adan(emb.parameters()).step()
