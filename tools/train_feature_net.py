"""Train the small feature CNN behind FD-smileys and write data/feature_net.pt (CPU: about 0.5 CPU-s per step).

    .venv/bin/python tools/train_feature_net.py            # writes data/feature_net.pt
    .venv/bin/python tools/train_feature_net.py --out /tmp/fn.pt --steps 200
    .venv/bin/python tools/train_feature_net.py --out /tmp/fn.pt --steps 2 --n-smileys 16 --held-out 16   # tests

Task: one 18-way classifier — for smileys, the expression (4 classes) *and* whether the two eyes agree
(real faces: classes 0–3; faces whose right eye a relation-blind painter redrew, `painters.paint`:
classes 4–7), on the relational world and its varied version; and scikit-learn digits (classes 8–17,
shifted by up to 2 px). A net that only read expressions would put a face with mismatched eyes next to a
real one, and FD-smileys could not see the relation; this one must tell them apart. The 128-d
penultimate layer (`FeatureNet.features`) is the space FD-smileys measures in. Training smileys use seeds
10_000 and 10_001, so the metric's own tests (seed 0, 1, ...) never see training images.

The classic world's net (data/feature_net_classic.pt: 14 classes, expressions of the classic world and its
old varied version, and digits) was made by this tool before the relational world (git history,
commit 12e1ee2); it stays so that classic-world numbers can be reproduced.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mdt_teach.checkpoint import atomic_save
from mdt_teach.data import SMILEY_CLASSES, Digits, render_meta, smileys_batch
from mdt_teach.metrics import FEATURE_CLASSES, FeatureNet
from mdt_teach.painters import paint
from provenance import provenance

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SEEDS = {"smileys": 10_000, "smileys-varied": 10_001}
K = len(SMILEY_CLASSES)


def faces(n: int, world: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n real faces (labels 0..K-1) and n faces with a painted right eye (labels K..2K-1), half each painter
    that draws from the world's own eyes (independent, transplant)."""
    x, y, meta = smileys_batch(n, seed=seed, world=world, meta=True)
    half = {k: v[: n // 2] for k, v in meta.items()}
    rest = {k: v[n // 2:] for k, v in meta.items()}
    painted = torch.cat([render_meta(paint(half, "independent", world, seed)),
                         render_meta(paint(rest, "transplant", world, seed))])
    return torch.cat([x, painted]), torch.cat([y, y + K])


def training_set(n_smileys: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smileys of both relational worlds (labels 0..2K-1) and digits (labels 2K..2K+9), as one tensor pair."""
    parts = [faces(n_smileys, world, seed) for world, seed in TRAIN_SEEDS.items()]
    digits = Digits()
    x = torch.cat([p[0] for p in parts] + [digits.images])                     # (N, 3, 32, 32)
    y = torch.cat([p[1] for p in parts] + [digits.labels + 2 * K])
    return x, y


def shift_digits(x: torch.Tensor, y: torch.Tensor, g: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Move each digit by up to ±max_shift px (white paper fills in): cheap augmentation for 1,797 digits."""
    is_digit = y >= 2 * K
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
    net = FeatureNet(num_classes=len(FEATURE_CLASSES))
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
def held_out_accuracy(net: FeatureNet, n: int = 1000) -> dict:
    """Accuracy on n fresh smileys per world (seed 1; real and painted) and on all digits (seen in training)."""
    out = {}
    for world in TRAIN_SEEDS:
        x, y = faces(n, world, seed=1)
        out[world] = float((net(x).argmax(1) == y).float().mean())
    d = Digits()
    out["digits_train"] = float((net(d.images).argmax(1) == d.labels + 2 * K).float().mean())
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "feature_net.pt")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--n-smileys", type=int, default=8000, help="training smileys per world")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held-out", type=int, default=1000, help="held-out smileys per world for the accuracy")
    args = parser.parse_args(argv)
    made = provenance(__file__, argv)
    net, report = train(args.steps, args.batch_size, args.n_smileys, args.lr, args.seed)
    report["accuracy"] = held_out_accuracy(net, args.held_out)
    print(report)
    config = {"num_classes": net.head[-1].out_features, "width": net.embed.in_features // 8,
              "feature_dim": net.embed.out_features}
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({"config": config, "state_dict": state, "classes": list(FEATURE_CLASSES), "report": report,
                 "world": "smileys@2", **made}, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
