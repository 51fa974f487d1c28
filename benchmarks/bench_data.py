"""Speed of the data side: smileys generation, the two-eyes checker, FD-smileys (best of --reps).

    .venv/bin/python benchmarks/bench_data.py [--reps 3] [--threads 2]

Prints rates and each against its budget (10k smileys ≤ 2 s on 2 cores; 512 checks ≤ 1 s).
"""
from __future__ import annotations

import argparse
import time

import torch

from mdt_teach.data import corrupted_smileys, smileys_batch
from mdt_teach.metrics import fd_smileys, load_feature_net, two_eyes


def best_of(fn, reps: int) -> float:
    """Shortest wall time of `reps` calls (the least disturbed by other processes)."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for varied in (False, True):
        t = best_of(lambda: smileys_batch(10_000, seed=0, varied=varied), args.reps)
        rows.append((f"smileys_batch 10k ({'varied' if varied else 'default'})", t, 2.0, 10_000 / t, "img/s"))
    real, labels = smileys_batch(512, seed=1)
    noise, _ = corrupted_smileys("noise", 512, seed=1)
    for name, x in (("real", real), ("noise", noise)):
        t = best_of(lambda: two_eyes(x, labels), args.reps)
        rows.append((f"two_eyes 512 ({name})", t, 1.0, 512 / t, "img/s"))
    other, _ = smileys_batch(1000, seed=2)
    first, _ = smileys_batch(1000, seed=3)
    load_feature_net()
    t = best_of(lambda: fd_smileys(first, other), args.reps)
    rows.append(("fd_smileys 1k vs 1k", t, None, 2000 / t, "img/s"))
    print(f"{'benchmark':34s} {'seconds':>8s} {'budget':>7s} {'ratio':>6s} {'rate':>12s}")
    for name, t, budget, rate, unit in rows:
        ratio = f"{t / budget:6.2f}" if budget else "     -"
        print(f"{name:34s} {t:8.3f} {budget or '-':>7} {ratio} {rate:9.0f} {unit}")


if __name__ == "__main__":
    main()
