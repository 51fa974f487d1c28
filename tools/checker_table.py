"""What the checker passes: the table of docs/smileys.md, measured, written to data/checker_table.json.

    .venv/bin/python tools/checker_table.py [--n 1000] [--out data/checker_table.json]

For each world, on n faces (seed 11): real faces, real faces with pixel noise, the oracle painter (the left
eye mirrored), every relation-blind painter, every painter with one attribute wrong, every corruption; and
for each row the two-eyes verdict, `pair_agreement` and each pair test's rate. tests/test_checker.py asserts
the bounds on the same rows; this tool records the numbers the docs quote, with the commit it ran at.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mdt_teach.checker import two_eyes
from mdt_teach.checkpoint import write_json
from mdt_teach.data import CORRUPTIONS, WORLDS, corrupted_smileys, render_meta, smileys_batch
from mdt_teach.painters import ATTRIBUTES, BLIND_PAINTERS, mirror, one_wrong, paint
from provenance import provenance

ROOT = Path(__file__).resolve().parent.parent


def rows(world: str, n: int) -> dict:
    """{row name: {"two_eyes", "pair_agreement", "pair_tests"}} for one world."""
    x, y, meta = smileys_batch(n, seed=11, world=world, meta=True)
    g = torch.Generator().manual_seed(0)
    images = {"real": x, "real + noise 0.05": (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(-1, 1),
              "real + noise 0.1": (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(-1, 1),
              "oracle (mirror)": render_meta(mirror(meta))}
    images.update({f"blind: {p}": render_meta(paint(meta, p, world)) for p in BLIND_PAINTERS})
    images.update({f"wrong {a}": render_meta(one_wrong(meta, a)) for a in ATTRIBUTES})
    images.update({f"corruption: {k}": corrupted_smileys(k, n, seed=11, world=world)[0] for k in CORRUPTIONS})
    out = {}
    for name, batch in images.items():
        r = two_eyes(batch, y)
        out[name] = {"two_eyes": round(r.score, 4), "pair_agreement": round(r.pair_score, 4),
                     "pair_tests": {k: round(v, 4) for k, v in r.pair_tests.items()}}
    return out


ROWS = ("real", "real + noise 0.1", "oracle (mirror)", *(f"blind: {p}" for p in BLIND_PAINTERS),
        *(f"wrong {a}" for a in ATTRIBUTES), *(f"corruption: {k}" for k in CORRUPTIONS))


def markdown(record: dict, world: str = "smileys") -> str:
    """docs/smileys.md's table: one row per kind of face, the two-eyes verdict, pair agreement, each test."""
    tests = list(next(iter(record["worlds"][world].values()))["pair_tests"])
    lines = ["| faces | two-eyes verdict | **pair agreement** | " + " | ".join(t.replace("_", " ") for t in tests) + " |",
             "|---|---|---|" + "---|" * len(tests)]
    for name in ROWS:
        r = record["worlds"][world][name]
        lines.append(f"| {name} | {r['two_eyes']:.1%} | **{r['pair_agreement']:.1%}** | "
                     + " | ".join(f"{r['pair_tests'][t]:.0%}" for t in tests) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "checker_table.json")
    args = parser.parse_args(argv)
    made = provenance(__file__, argv)
    table = {world: rows(world, args.n) for world in WORLDS}
    write_json(args.out, {**made, "faces": args.n, "seed": 11, "worlds": table})
    for world, rs in table.items():
        print(world)
        for name, r in rs.items():
            print(f"  {name:28s} two-eyes {r['two_eyes']:6.1%}  pair {r['pair_agreement']:6.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
