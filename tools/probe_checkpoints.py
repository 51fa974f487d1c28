"""Lesson 11's numbers: the missing-eye probe (with its controls), the eye-to-eye attention and the two-eyes
score of free samples, for every checkpoint in data/probe/ (made by tools/make_probe_checkpoints.py), plus
how the probe's rate depends on RePaint's resampling for the last MDTv2 checkpoint.

    python tools/probe_checkpoints.py [--n 128] [--out data/probe/results.json]

Writes one JSON; lesson 11 shows it as a cited result (the lesson itself re-runs a small probe live).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mdt_teach.checkpoint import write_json
from mdt_teach.lessons import load_lesson_checkpoint
from mdt_teach.metrics import score_smileys
from mdt_teach.probe import eye_to_eye_attention, missing_eye_probe
from mdt_teach.sampling import generate

ROOT = Path(__file__).resolve().parent.parent
STEPS, JUMP, RESAMPLES = "50", 5, 3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=128, help="probe faces drawn (about 45%% usable)")
    parser.add_argument("--samples", type=int, default=256, help="free samples for the two-eyes score")
    parser.add_argument("--out", default=str(ROOT / "data" / "probe" / "results.json"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    index = json.loads((ROOT / "data" / "probe" / "index.json").read_text())
    rows = []
    for name, info in sorted(index.items(), key=lambda kv: (kv[0].split("_0")[0], kv[1]["steps"])):
        model, _ = load_lesson_checkpoint(f"probe/{name}")
        began = time.time()
        row = {"checkpoint": name, "model": name.rsplit("_", 1)[0], "steps": info["steps"],
               "train_seconds": info["train_seconds"]}
        images, labels = generate(model, args.samples, steps="50", seed=12345)
        row["two_eyes"] = round(score_smileys(images, labels)["two_eyes"], 4)
        for region in ("eye", "cheek", "none"):
            r = missing_eye_probe(model, region, args.n, STEPS, JUMP, RESAMPLES)
            row[region] = {"faces": r.faces, "completed": round(r.completed, 4),
                           "completed_ci": [round(v, 4) for v in r.completed_ci],
                           "eye_in_region": round(r.eye_in_region, 4),
                           "eye_in_region_ci": [round(v, 4) for v in r.eye_in_region_ci]}
        att = eye_to_eye_attention(model, t_values=(100, 400), n=32)
        row["attention"] = {str(t): {k: [round(x, 5) for x in v.tolist()] for k, v in parts.items()}
                            for t, parts in att.items()}
        row["seconds"] = round(time.time() - began, 1)
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("checkpoint", "two_eyes", "eye", "cheek", "seconds")}), flush=True)
    last = max((r for r in rows if r["model"] == "mdtv2"), key=lambda r: r["steps"])
    model, _ = load_lesson_checkpoint(f"probe/{last['checkpoint']}")
    jumps = []
    for resamples in (1, 2, 3, 5):
        r = missing_eye_probe(model, "eye", args.n, STEPS, JUMP, resamples)
        jumps.append({"resamples": resamples, "completed": round(r.completed, 4),
                      "completed_ci": [round(v, 4) for v in r.completed_ci], "faces": r.faces})
        print(json.dumps(jumps[-1]), flush=True)
    write_json(Path(args.out), {"made_by": "tools/probe_checkpoints.py", "probe": {"n": args.n, "steps": STEPS,
                                "jump_length": JUMP, "resamples": RESAMPLES}, "free_samples": args.samples,
                                "rows": rows, "resampling": {"checkpoint": last["checkpoint"], "rows": jumps}})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
