"""Adan, the optimizer MDTv2 trains with: Adaptive Nesterov momentum (Xie et al. 2022, official `adan.py`).

Per element, on step k of a param group, with the (optionally clipped) gradient g, as sail-sg/Adan's
`adan.py: Adan.step` / `_single_tensor_adan` compute it (paper: arXiv 2208.06677, Algorithm 1):

    d = g_k − g_{k−1}                      m ← β1·m + (1−β1)·g          (exp_avg)
    z = g + β2·d                           v ← β2·v + (1−β2)·d          (exp_avg_diff)
                                           n ← β3·n + (1−β3)·z²         (exp_avg_sq)
    denom = sqrt(n / (1−β3^k)) + eps       θ ← θ − η·m/(1−β1^k)/denom − η·β2·v/(1−β2^k)/denom

followed (default) by the proximal weight decay θ ← θ / (1 + η·λ), or with `no_prox=True` preceded by
the AdamW-style θ ← θ·(1 − η·λ). The code's betas are 1 − the paper's betas; eps sits outside the root.

Two paths with the same numbers: `adan_step_single` (the readable one lesson 06 shows) and
`adan_step_foreach` (the same ops on lists, `torch._foreach_*`). `foreach=None` picks the foreach path
on every device: on CUDA it is the fast path; on CPU the lists are fed in cache-sized "waves" of at most
`Adan.cpu_wave_numel` elements (big tensors are cut into flat views), so the ~15 elementwise passes of
one wave run while its six buffers and the denominator sit in cache (benchmarks/bench_optim.py
measures the gain).
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Callable, Iterable

import torch
from torch.optim import Optimizer

STATE_KEYS = ("exp_avg", "exp_avg_diff", "exp_avg_sq", "neg_pre_grad")  # m, v, n, −g_{k−1} (official names)


def adan_step_single(theta, g, m, v, n, neg_g_prev, *, step: int, lr: float, betas, eps: float,
                     weight_decay: float = 0.0, no_prox: bool = False) -> None:
    """One Adan step on one tensor, in place (official sail-sg/Adan `adan.py: _single_tensor_adan`)."""
    beta1, beta2, beta3 = betas
    d = neg_g_prev.add_(g)                            # d = g_k − g_{k−1} (the buffer held −g_{k−1})
    m.lerp_(g, 1 - beta1)                             # m ← β1·m + (1−β1)·g
    v.lerp_(d, 1 - beta2)                             # v ← β2·v + (1−β2)·d
    z = d.mul_(beta2).add_(g)                         # z = g + β2·d, the Nesterov-corrected gradient
    n.mul_(beta3).addcmul_(z, z, value=1 - beta3)     # n ← β3·n + (1−β3)·z²
    denom = n.sqrt().div_(math.sqrt(1 - beta3 ** step)).add_(eps)  # sqrt(n̂) + eps, eps outside the root
    if no_prox and weight_decay:
        theta.mul_(1 - lr * weight_decay)             # AdamW-style decay, before the step
    theta.addcdiv_(m, denom, value=-lr / (1 - beta1 ** step))           # − η·m̂ / denom
    theta.addcdiv_(v, denom, value=-lr * beta2 / (1 - beta2 ** step))   # − η·β2·v̂ / denom
    if not no_prox and weight_decay:
        theta.div_(1 + lr * weight_decay)             # proximal decay (paper Algorithm 1), after the step
    neg_g_prev.copy_(g).neg_()                        # keep −g_k for the next difference


def adan_step_foreach(thetas, grads, ms, vs, ns, neg_g_prevs, *, step: int, lr: float, betas, eps: float,
                      weight_decay: float = 0.0, no_prox: bool = False) -> None:
    """`adan_step_single` on lists with torch._foreach_* ops (official `_multi_tensor_adan`), same numbers."""
    beta1, beta2, beta3 = betas
    ds = neg_g_prevs
    torch._foreach_add_(ds, grads)                    # d = g_k − g_{k−1}
    torch._foreach_lerp_(ms, grads, 1 - beta1)        # m
    torch._foreach_lerp_(vs, ds, 1 - beta2)           # v
    torch._foreach_mul_(ds, beta2)
    torch._foreach_add_(ds, grads)                    # z = g + β2·d
    torch._foreach_mul_(ns, beta3)
    torch._foreach_addcmul_(ns, ds, ds, value=1 - beta3)  # n
    denoms = torch._foreach_sqrt(ns)
    torch._foreach_div_(denoms, math.sqrt(1 - beta3 ** step))
    torch._foreach_add_(denoms, eps)
    if no_prox and weight_decay:
        torch._foreach_mul_(thetas, 1 - lr * weight_decay)
    torch._foreach_addcdiv_(thetas, ms, denoms, value=-lr / (1 - beta1 ** step))
    torch._foreach_addcdiv_(thetas, vs, denoms, value=-lr * beta2 / (1 - beta2 ** step))
    if not no_prox and weight_decay:
        torch._foreach_div_(thetas, 1 + lr * weight_decay)
    torch._foreach_copy_(neg_g_prevs, grads)
    torch._foreach_neg_(neg_g_prevs)


@torch.no_grad()
def clip_grads_(grads: list, max_grad_norm: float, eps: float) -> torch.Tensor:
    """Official in-step clipping: scale every g by c = min(1, max_norm / (‖g‖₂ + eps)), in place; returns c."""
    groups = _group_by_device_dtype(grads)
    device, dtype = grads[0].device, torch.float32
    norms = []
    for (_, dt), idx in groups.items():
        acc = torch.promote_types(dt, torch.float32)   # fp16/bf16 gradients are summed in fp32
        norms += torch._foreach_norm([grads[i] for i in idx], 2, dtype=acc)
        dtype = torch.promote_types(dtype, acc)
    total = torch.linalg.vector_norm(torch.stack([x.to(device, dtype) for x in norms]))  # no host sync
    scale = (max_grad_norm / (total + eps)).clamp(max=1.0)
    for (dev, _), idx in groups.items():
        torch._foreach_mul_([grads[i] for i in idx], scale.to(dev))
    return scale


def state_bytes(optimizer: Optimizer) -> int:
    """Bytes held by an optimizer's state tensors (Adan: 4 parameter-sized buffers, AdamW: 2)."""
    return sum(t.numel() * t.element_size() for s in optimizer.state.values()
               for t in s.values() if torch.is_tensor(t))


def _group_by_device_dtype(tensors: list) -> dict:
    """Indices of `tensors` grouped by (device, dtype): foreach kernels want one of each per call."""
    groups = defaultdict(list)
    for i, t in enumerate(tensors):
        groups[(t.device, t.dtype)].append(i)
    return groups


def _waves(rows: list, max_numel: int):
    """Cut rows of matching tensors into lists of ≤ max_numel elements, big tensors into flat views."""
    wave, size = [[] for _ in range(6)], 0
    for row in rows:                                   # row = (θ, g, m, v, n, −g_prev), equal shapes
        split = row[0].numel() > max_numel and all(t.is_contiguous() for t in row)
        pieces = zip(*(t.view(-1).split(max_numel) for t in row)) if split else [row]  # (≤ max_numel,) views
        for piece in pieces:
            if size and size + piece[0].numel() > max_numel:
                yield wave
                wave, size = [[] for _ in range(6)], 0
            for column, t in zip(wave, piece):
                column.append(t)
            size += piece[0].numel()
    if size:
        yield wave


class Adan(Optimizer):
    """Adan (official sail-sg/Adan `adan.py: Adan` semantics): three moments, bias corrections, prox decay, clipping."""

    cpu_wave_numel = 2 ** 19   # elements per foreach wave on CPU: 7 fp32 buffers ≈ 14 MiB stay in L3

    def __init__(self, params: Iterable, lr: float = 1e-3, betas=(0.98, 0.92, 0.99), eps: float = 1e-8,
                 weight_decay: float = 0.0, max_grad_norm: float = 0.0, no_prox: bool = False,
                 foreach: bool | None = None):
        _validate(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, max_grad_norm=max_grad_norm)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        max_grad_norm=max_grad_norm, no_prox=no_prox, foreach=foreach)
        super().__init__(params, defaults)

    def __setstate__(self, state):
        """Fill keys that older or official state dicts may lack."""
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("no_prox", False)
            group.setdefault("foreach", None)

    @torch.no_grad()
    def restart(self) -> None:
        """Official `restart_opt`: step 0 and m = v = n = 0; −g_prev is re-seeded on the next step."""
        for group in self.param_groups:
            group["step"] = 0
            for p in group["params"]:
                for key in STATE_KEYS[:3]:
                    if key in self.state[p]:
                        self.state[p][key].zero_()

    restart_opt = restart  # the official name

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        """Clip all gradients (if max_grad_norm > 0), then one Adan step per param group."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.defaults["max_grad_norm"] > 0:  # official: the optimizer-wide value and the last group's eps
            grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
            if grads:
                clip_grads_(grads, self.defaults["max_grad_norm"], self.param_groups[-1]["eps"])
        for group in self.param_groups:
            group["step"] = group.get("step", 0) + 1
            rows = self._rows(group)
            if rows:
                self._update(group, rows)
        return loss

    def _rows(self, group: dict) -> list:
        """(θ, g, m, v, n, −g_prev) per parameter with a gradient; creates state lazily like the official code."""
        rows = []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise ValueError("Adan does not support sparse gradients; use dense embeddings (sparse=False).")
            state = self.state[p]
            if "exp_avg" not in state:
                for key in STATE_KEYS[:3]:
                    state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if "neg_pre_grad" not in state or group["step"] == 1:
                state["neg_pre_grad"] = p.grad.neg()   # first step: d = 0
            rows.append((p, p.grad, *(state[key] for key in STATE_KEYS)))
        return rows

    def _update(self, group: dict, rows: list) -> None:
        """Run the single-tensor or the foreach path on one group's rows."""
        kwargs = dict(step=group["step"], lr=group["lr"], betas=group["betas"], eps=group["eps"],
                      weight_decay=group["weight_decay"], no_prox=group["no_prox"])
        if group["foreach"] is False:
            for row in rows:
                adan_step_single(*row, **kwargs)
            return
        for (device, _), idx in _group_by_device_dtype([r[0] for r in rows]).items():
            same = [rows[i] for i in idx]
            if device.type == "cpu":
                for wave in _waves(same, self.cpu_wave_numel):
                    adan_step_foreach(*wave, **kwargs)
            else:
                adan_step_foreach(*map(list, zip(*same)), **kwargs)


def _validate(lr, betas, eps, weight_decay, max_grad_norm) -> None:
    """Reject settings the official code rejects, plus negative weight decay, with one sentence each."""
    if not lr >= 0:
        raise ValueError(f"Adan lr must be >= 0, got {lr}; pass a non-negative learning rate such as 1e-3.")
    if len(tuple(betas)) != 3:
        raise ValueError(f"Adan takes three betas (β1, β2, β3), got {betas!r}; the default is (0.98, 0.92, 0.99).")
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Adan betas[{i}] must be in [0, 1), got {beta}; these are the code's betas "
                             "(1 − the paper's), e.g. (0.98, 0.92, 0.99).")
    for name, value in (("eps", eps), ("weight_decay", weight_decay), ("max_grad_norm", max_grad_norm)):
        if not value >= 0:
            raise ValueError(f"Adan {name} must be >= 0, got {value}; use 0 to switch it off.")
