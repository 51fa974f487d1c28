"""Lesson 11's numbers: the missing-eye probe (its chance line, follow test and controls), the eye-to-eye
attention and the pair agreement of free samples, for every checkpoint in data/probe/ (made by
tools/make_probe_checkpoints.py), plus how the probe's rate depends on RePaint's resampling for the last
MDTv2 checkpoint.

    python tools/probe_checkpoints.py [--n 512] [--out data/probe/results.json] [--probe-dir data/probe]

Writes one JSON; lesson 11 shows it as a cited result (the lesson itself re-runs a small probe live).
tests/test_tools.py runs it with `--n 8 --samples 4 --steps 10` on make_probe_checkpoints.py's miniature.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mdt_teach.checker import two_eyes
from mdt_teach.checkpoint import write_json
from mdt_teach.lessons import load_lesson_checkpoint
from mdt_teach.painters import blind_rates
from mdt_teach.probe import PROBE_FACES, eye_to_eye_attention, missing_eye_probe
from mdt_teach.sampling import generate
from provenance import provenance

ROOT = Path(__file__).resolve().parent.parent
STEPS, JUMP, RESAMPLES = "50", 5, 3


def rounded(value):
    """Floats to 4 decimals, through dicts, lists and tuples (the JSON stays readable)."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v) for v in value]
    return value


LABELS = {"dit": "DiT", "mdtv2": "MDTv2", "mdtv2_mask0": "MDTv2, mask ratio 0"}


def markdown(results: dict) -> str:
    """docs/masked_pass.md's table: per checkpoint, the probe (95% interval) over its chance line, the follow
    test over its chance line, the free samples' pair agreement and the eye-to-eye attention ratio."""
    lines = ["| model | steps | probe: the eye pair agrees | chance | follows the visible eye | chance "
             "| free samples: pair agreement | eye → eye / eye → skin |", "|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        e, att = r["eye"], r["attention"]["100"]
        ratio = sum(att["other_eye"]) / sum(att["skin"])
        lines.append(f"| {LABELS.get(r['model'], r['model'])} | {r['steps']} | {e['completed']:.1%} "
                     f"[{e['completed_ci'][0]:.0%}, {e['completed_ci'][1]:.0%}] of {e['faces']} | "
                     f"≤ {max(e['chance'].values()):.1%} | {e['follow']:.1%} | ≤ {max(e['follow_chance'].values()):.1%} | "
                     f"{r['pair_agreement']:.1%} | {ratio:.2f} |")
    return "\n".join(lines)


def sentence(results: dict) -> str:
    """The README's account of the probe at the last committed stage: each model's rate beside the chance line."""
    last = max(r["steps"] for r in results["rows"])
    rows = {r["model"]: r["eye"] for r in results["rows"] if r["steps"] == last}
    chance = max(max(e["chance"].values()) for e in rows.values())
    faces = rows["mdtv2"]["faces"]
    rate = lambda m: f"{rows[m]['completed']:.0%} [{rows[m]['completed_ci'][0]:.0%}, {rows[m]['completed_ci'][1]:.0%}]"  # noqa: E731
    return (f"after {last:,} steps a small MDTv2 draws a hidden eye that agrees with the visible one on {rate('mdtv2')} "
            f"of {faces} held-out faces, MDTv2 with mask ratio 0 on {rate('mdtv2_mask0')} and DiT on {rate('dit')}, "
            f"where painters that never look at the visible eye score at most {chance:.0%}; recolour the visible eye "
            f"and MDTv2's drawn eye follows it on {rows['mdtv2']['follow']:.0%} of the faces "
            f"(mask 0: {rows['mdtv2_mask0']['follow']:.0%}, DiT: {rows['dit']['follow']:.0%})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=PROBE_FACES, help="probe faces drawn (about 47%% usable)")
    parser.add_argument("--samples", type=int, default=256, help="free samples for the pair agreement")
    parser.add_argument("--out", default=str(ROOT / "data" / "probe" / "results.json"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", default=STEPS, help="the probe's respacing (RePaint: jumps of 5, 3 resamples)")
    parser.add_argument("--probe-dir", type=Path, default=ROOT / "data" / "probe",
                        help="the checkpoints and their index.json (make_probe_checkpoints.py --out)")
    args = parser.parse_args(argv)
    made = provenance(__file__, argv)
    torch.set_num_threads(args.threads)
    probe_dir = args.probe_dir.resolve()        # absolute: load_lesson_checkpoint then reads it as it is
    index = json.loads((probe_dir / "index.json").read_text())
    worlds = {info["world"] for info in index.values()}
    if len(worlds) != 1:
        raise SystemExit(f"{probe_dir / 'index.json'} mixes worlds {sorted(worlds)}: remake the checkpoints together")
    world = worlds.pop().split("@")[0]
    rows = []
    for name, info in sorted(index.items(), key=lambda kv: (kv[0].split("_0")[0], kv[1]["steps"])):
        model, _ = load_lesson_checkpoint(str(probe_dir / name))
        began = time.time()
        row = {"checkpoint": name, "model": name.rsplit("_", 1)[0], "steps": info["steps"],
               "train_seconds": info["train_seconds"]}
        images, labels = generate(model, args.samples, steps="50", seed=12345)
        free = two_eyes(images, labels)
        row["pair_agreement"], row["two_eyes"] = free.pair_score, float(free.score)
        for region in ("eye", "cheek", "none"):
            row[region] = missing_eye_probe(model, region, args.n, args.steps, JUMP, RESAMPLES, world=world).record()
        att = eye_to_eye_attention(model, t_values=(100, 400), n=32)
        row["attention"] = {str(t): {k: v.tolist() for k, v in parts.items()} for t, parts in att.items()}
        row["seconds"] = time.time() - began
        rows.append(rounded(row))
        print(json.dumps({k: rows[-1][k] for k in ("checkpoint", "pair_agreement", "seconds")}),
              json.dumps({k: rows[-1]["eye"][k] for k in ("faces", "completed", "follow")}), flush=True)
    last = max((r for r in rows if r["model"] == "mdtv2"), key=lambda r: r["steps"])
    model, _ = load_lesson_checkpoint(str(probe_dir / last["checkpoint"]))
    jumps = []
    for resamples in (1, 2, 3, 5):
        r = missing_eye_probe(model, "eye", args.n, args.steps, JUMP, resamples, world=world, follow=False)
        jumps.append(rounded({"resamples": resamples, "completed": r.completed, "completed_ci": r.completed_ci,
                              "faces": r.faces}))
        print(json.dumps(jumps[-1]), flush=True)
    write_json(Path(args.out), {
        **made, "world": world,
        "probe": {"n": args.n, "steps": args.steps, "jump_length": JUMP, "resamples": RESAMPLES},
        "free_samples": args.samples, "free_chance": blind_rates(world),
        "rows": rows, "resampling": {"checkpoint": last["checkpoint"], "rows": jumps}})
    print(f"wrote {args.out}")
    print(markdown(json.loads(Path(args.out).read_text())))
    print(sentence(json.loads(Path(args.out).read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
