"""Train the small feature CNN behind FD-smileys and write data/feature_net.pt (CPU: 0.41 CPU-s per step, 800 steps).

    .venv/bin/python tools/train_feature_net.py            # writes data/feature_net.pt
    .venv/bin/python tools/train_feature_net.py --out /tmp/fn.pt --steps 200

Task: one 14-way classifier — smiley expression (4 classes: default and varied worlds) and
scikit-learn digit (10 classes, shifted by up to 2 px). The 128-d penultimate layer
(`FeatureNet.features`) is the space FD-smileys measures in. Training smileys use seeds 10_000 and
10_001, so the metric's own tests (seed 0, 1, ...) never see training images.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mdt_teach.checkpoint import atomic_save
from mdt_teach.data import SMILEY_CLASSES, Digits, smileys_batch
from mdt_teach.metrics import FeatureNet

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SEEDS = (10_000, 10_001)     # (default world, varied world)


def training_set(n_smileys: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smileys (both worlds, labels 0-3) and digits (labels 4-13), as one tensor pair."""
    default, y_default = smileys_batch(n_smileys, seed=TRAIN_SEEDS[0])
    varied, y_varied = smileys_batch(n_smileys, seed=TRAIN_SEEDS[1], varied=True)
    digits = Digits()
    x = torch.cat([default, varied, digits.images])                          # (N, 3, 32, 32)
    y = torch.cat([y_default, y_varied, digits.labels + len(SMILEY_CLASSES)])
    return x, y


def shift_digits(x: torch.Tensor, y: torch.Tensor, g: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Move each digit by up to ±max_shift px (white paper fills in): cheap augmentation for 1,797 digits."""
    is_digit = y >= len(SMILEY_CLASSES)
    if not is_digit.any():
        return x
    pad = F.pad(x[is_digit], [max_shift] * 4, value=1.0)                     # (n, 3, 36, 36)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2,), generator=g).tolist()
    x = x.clone()
    x[is_digit] = pad[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]
    return x


def train(steps: int, batch_size: int, n_smileys: int, lr: float, seed: int) -> tuple[FeatureNet, dict]:
    """Adam on cross-entropy with a cosine learning rate; returns the net and a small report."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = training_set(n_smileys)
    net = FeatureNet(num_classes=len(SMILEY_CLASSES) + 10)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    start = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, len(x), (batch_size,), generator=g)
        xb, yb = shift_digits(x[idx], y[idx], g), y[idx]
        loss = F.cross_entropy(net(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  {time.perf_counter() - start:.0f}s", flush=True)
    return net.eval(), {"steps": steps, "batch_size": batch_size, "n_smileys_per_world": n_smileys,
                        "lr": lr, "seed": seed, "seconds": round(time.perf_counter() - start, 1)}


@torch.no_grad()
def held_out_accuracy(net: FeatureNet) -> dict:
    """Accuracy on fresh smileys (seed 1, both worlds) and on all digits (seen in training)."""
    out = {}
    for name, varied in (("smileys", False), ("smileys_varied", True)):
        x, y = smileys_batch(1000, seed=1, varied=varied)
        out[name] = float((net(x).argmax(1) == y).float().mean())
    d = Digits()
    out["digits_train"] = float((net(d.images).argmax(1) == d.labels + len(SMILEY_CLASSES)).float().mean())
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "feature_net.pt")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--n-smileys", type=int, default=8000, help="training smileys per world")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    net, report = train(args.steps, args.batch_size, args.n_smileys, args.lr, args.seed)
    report["accuracy"] = held_out_accuracy(net)
    print(report)
    config = {"num_classes": net.head[-1].out_features, "width": net.embed.in_features // 8,
              "feature_dim": net.embed.out_features}
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({"config": config, "state_dict": state, "classes": list(SMILEY_CLASSES) + list("0123456789"),
                 "report": report, "made_by": "tools/train_feature_net.py"}, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
