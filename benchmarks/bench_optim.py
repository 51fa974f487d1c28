"""Adan step time relative to torch AdamW (both foreach), and the optimizer state each keeps.

    python benchmarks/bench_optim.py [--rounds 9] [--device cpu] [--threads N] [--only mlp|mdt]

Two parameter sets: a 10M-parameter MLP and MDTv2-S/2's parameters (from `build_model`, or the shapes of
the official MDTv2-S/2 state_dict when `mdt_teach.models` is missing). The optimizers take turns, one
step each per round, so load from other processes hits all of them alike; the median per optimizer is
reported.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from mdt_teach.optim import Adan, state_bytes


def mlp_shapes(width: int = 1600, layers: int = 4) -> list[tuple]:
    """A 10.25M-parameter MLP: `layers` Linear(width, width)."""
    return [s for _ in range(layers) for s in ((width, width), (width,))]


def mdtv2_s2_shapes() -> list[tuple]:
    """MDTv2-S/2's trainable parameter shapes (the model itself, else the official layout with dl = 6)."""
    try:
        from mdt_teach.models import build_model
        return [tuple(p.shape) for p in build_model("MDTv2-S/2").parameters() if p.requires_grad]
    except ImportError:
        return _official_shapes(D=384, heads=6, half=3, decode=6)


def _official_shapes(D: int, heads: int, half: int, decode: int) -> list[tuple]:
    """Shapes of the official MDTv2 state_dict, in key order (`masked_diffusion/models.py: MDTv2`;
    C = 4, p = 2, 1000 classes, G = 16)."""
    block = [(3 * D, D), (3 * D,), (D, D), (D,), (31 * 31 + 3, heads), (4 * D, D), (4 * D,), (D, 4 * D), (D,),
             (6 * D, D), (6 * D,)]
    skip = [(D, 2 * D), (D,)]
    shapes = [(1, 256, D), (1, 256, D), (1, 1, D), (D, 4, 2, 2), (D,), (D, 256), (D,), (D, D), (D,), (1001, D)]
    shapes += block * half + (block + skip) * (half + decode) + block   # in, out, decoder, side blocks
    return shapes + [(32, D), (32,), (2 * D, D), (2 * D,)]


def make_params(shapes: list[tuple], device: str, seed: int = 0) -> list[torch.nn.Parameter]:
    """Fresh parameters with fixed random gradients."""
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen).to(device)) for s in shapes]
    for p in params:
        p.grad = (torch.randn(p.shape, generator=gen) * 1e-3).to(device)
    return params


def optimizers(shapes: list[tuple], device: str) -> dict:
    """The contenders, each on its own copy of the parameters."""
    adan_no_waves = Adan(make_params(shapes, device), lr=1e-4)
    adan_no_waves.cpu_wave_numel = 2 ** 62
    return {
        "AdamW foreach": torch.optim.AdamW(make_params(shapes, device), lr=1e-4, weight_decay=0.0, foreach=True),
        "Adan foreach": Adan(make_params(shapes, device), lr=1e-4, foreach=True),
        "Adan foreach, no waves": adan_no_waves,
        "Adan single-tensor": Adan(make_params(shapes, device), lr=1e-4, foreach=False),
    }


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(opts: dict, rounds: int, device: str) -> dict:
    """Seconds per step of each optimizer in every round, taking turns round by round."""
    for opt in opts.values():   # warm-up: state creation, first-step seeding
        opt.step(), opt.step()
    times = {name: [] for name in opts}
    for _ in range(rounds):
        for name, opt in opts.items():
            sync(device)
            t0 = time.perf_counter()
            opt.step()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def report(label: str, shapes: list[tuple], device: str, rounds: int) -> None:
    numel = sum(torch.Size(s).numel() for s in shapes)
    opts = optimizers(shapes, device)
    times = time_steps(opts, rounds, device)
    base = times["AdamW foreach"]
    print(f"\n{label}: {numel / 1e6:.2f}M parameters in {len(shapes)} tensors, {device}, "
          f"{torch.get_num_threads()} threads, median of {rounds} rounds")
    for name, ts in times.items():
        ratio = statistics.median(t / b for t, b in zip(ts, base))  # same-round ratios ride out load changes
        print(f"  {name:24s} {statistics.median(ts) * 1e3:8.1f} ms/step  {ratio:5.2f}x AdamW  "
              f"state {state_bytes(opts[name]) / 2 ** 20:7.1f} MiB")
    ratio = statistics.median(t / b for t, b in zip(times["Adan foreach"], base))
    print(f"  Adan(foreach) / AdamW(foreach) step time: {ratio:.2f}x (goal <= 1.5x); state bytes "
          f"{state_bytes(opts['Adan foreach']) / state_bytes(opts['AdamW foreach']):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", choices=("mlp", "mdt"), default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.only in (None, "mlp"):
        report("MLP 4 x Linear(1600, 1600)", mlp_shapes(), args.device, args.rounds)
    if args.only in (None, "mdt"):
        report("MDTv2-S/2 parameters", mdtv2_s2_shapes(), args.device, args.rounds)


if __name__ == "__main__":
    main()
