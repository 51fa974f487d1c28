"""What the deterministic relative-bias gather costs: one MDTv2 training step (both passes, fwd + bwd) with the
bias gathered by `index_select` (what the library does, deterministic) against advanced indexing
`table[index]` (the same numbers forward, but a backward that adds with atomics across CPU threads) and
against advanced indexing under `torch.use_deterministic_algorithms(True)`. Prints ratios and how often a
repeated backward pass gives bit-identical gradients (advanced indexing's atomic adds differ now and then).

    python benchmarks/bench_determinism.py [--threads 2] [--reps 20] [--model MDTv2-T/4] [--batch 32]
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from mdt_teach.diffusion import GaussianDiffusion, training_loss
from mdt_teach.layers import RelativePositionBias
from mdt_teach.models import build_model

LIBRARY_FORWARD = RelativePositionBias.forward


def advanced_index_forward(self, ids_keep=None):
    """The gather written as table[index] (its backward is index_put_ with accumulate=True)."""
    index = self.relative_position_index
    if ids_keep is not None:
        index = index[ids_keep[:, :, None], ids_keep[:, None, :]]   # (B, K, K)
    return self.relative_position_bias_table[index].movedim(-1, -3)  # (..., H, K, K)


@contextlib.contextmanager
def variant(name: str):
    """Patch the gather (and the deterministic-algorithms flag) for one measurement."""
    RelativePositionBias.forward = LIBRARY_FORWARD if name == "index_select" else advanced_index_forward
    torch.use_deterministic_algorithms(name == "table[index] + deterministic mode")
    try:
        yield
    finally:
        RelativePositionBias.forward = LIBRARY_FORWARD
        torch.use_deterministic_algorithms(False)


def step_fn(model, x0, y, diffusion):
    """One training step's forward + backward (both MDT passes), seeded so every call draws the same."""
    def step():
        torch.manual_seed(0)
        model.zero_grad(set_to_none=True)
        training_loss(model, x0, y, diffusion, weighting="min_snr")["loss"].backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return step


def gather_backward_repeats(name: str, batch: int, grid: int, heads: int, keep: int, repeats: int) -> int:
    """How many of `repeats` backward passes of the masked pass's bias gather alone (random upstream gradient)
    give the table gradient of the first one bit for bit."""
    torch.manual_seed(0)
    rel = RelativePositionBias(grid, heads)
    ids_keep = torch.stack([torch.randperm(grid * grid)[:keep] for _ in range(batch)])   # (B, K)
    upstream = torch.randn(batch, heads, keep, keep)                                    # (B, H, K, K)
    grads = []
    with variant(name):
        for _ in range(repeats + 1):
            rel.zero_grad(set_to_none=True)
            (rel(ids_keep) * upstream).sum().backward()
            grads.append(rel.relative_position_bias_table.grad.clone())
    return sum(torch.equal(grads[0], g) for g in grads[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--model", default="MDTv2-T/4")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=12, help="backward passes compared with the first (default 12)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.model)
    with torch.no_grad():   # leave adaLN-Zero's zero init: with zero gates no gradient reaches the attention at all
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    x0 = torch.randn(args.batch, model.in_channels, model.input_size, model.input_size)
    y = torch.randint(0, model.num_classes, (args.batch,))
    step = step_fn(model, x0, y, GaussianDiffusion())
    names = ["index_select", "table[index]", "table[index] + deterministic mode"]
    times = {n: [] for n in names}
    identical = {}
    for n in names:
        with variant(n):
            step()  # warm-up
            first = step()
            identical[n] = sum(torch.equal(first, step()) for _ in range(args.repeats))
    for _ in range(args.reps):  # interleaved, so machine load hits every variant alike
        for n in names:
            with variant(n):
                began = time.perf_counter()
                step()
                times[n].append(time.perf_counter() - began)
    print(f"the masked pass's bias gather alone, {args.threads} threads: backward passes whose table gradient equals "
          f"the first one's bit for bit, of {args.repeats}")
    for label, shape in {"tiny (B 32, 8×8 grid, 4 heads, keep 38)": (32, 8, 4, 38),
                         "S/2 (B 4, 16×16 grid, 6 heads, keep 154)": (4, 16, 6, 154)}.items():
        counts = {n: gather_backward_repeats(n, *shape, args.repeats) for n in names}
        print(f"  {label}: " + ", ".join(f"{n} {c}/{args.repeats}" for n, c in counts.items()))
    base = statistics.median(times["table[index]"])
    print(f"one training step (both passes, fwd + bwd), {args.model}, batch {args.batch}, {args.threads} threads, "
          f"median of {args.reps} interleaved steps")
    for n in names:
        t = statistics.median(times[n])
        print(f"  {n:34s} {t * 1000:7.1f} ms/step   ratio to table[index] {t / base:5.3f}   "
              f"gradients bit-identical to the first in {identical[n]}/{args.repeats} repeats")


if __name__ == "__main__":
    main()
