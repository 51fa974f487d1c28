"""`mdt-teach probe --ckpt PATH`: the missing-eye probe of a smileys checkpoint (`probe.missing_eye_probe`):
hide the right eye of held-out faces, let the model draw it back, count the eyes that agree with the visible
one in every shared attribute; beside it the chance line (relation-blind painters on the same faces) and the
follow test; with the controls (cheek hidden, nothing hidden) and 95% intervals. Optionally the eye-to-eye
attention."""
from __future__ import annotations

import argparse

from ..checkpoint import write_json
from ..compat import load_model, recorded_world
from ..data import DEFAULT_WORLD, WORLDS
from ..probe import PROBE_FACES, REGIONS, eye_to_eye_attention, missing_eye_probe
from ..sampling import space_timesteps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `mdt-teach probe`."""
    parser.add_argument("--ckpt", required=True, help="a smileys checkpoint (ckpt_*.pt of a run, or a lesson file)")
    parser.add_argument("--n", type=int, default=PROBE_FACES, help="faces drawn from the probe's world (about "
                        f"47%% are usable for the eye region at patch 4; default {PROBE_FACES})")
    parser.add_argument("--world", default=None, choices=WORLDS,
                        help="the smileys world of the faces (default: the one the checkpoint was trained on)")
    parser.add_argument("--regions", default="eye,cheek,none", help="comma-separated: eye, cheek, none")
    parser.add_argument("--steps", default="50", help="respaced sampling steps (default 50)")
    parser.add_argument("--jump-length", type=int, default=5, help="RePaint jump length (default 5)")
    parser.add_argument("--resamples", type=int, default=3, help="RePaint resamplings per jump; 1 = plain "
                                                                 "replacement (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--attention", action="store_true", help="also the eye-to-eye attention per layer")
    parser.add_argument("--json", default=None, help="also write the rates to this JSON file")


def run(args: argparse.Namespace) -> int:
    """Check, load, probe, print (and write JSON)."""
    regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    bad = [r for r in regions if r not in REGIONS]
    if bad or not regions:
        raise ValueError(f"--regions {args.regions!r}: choose from {', '.join(REGIONS)}")
    if args.n < 1:
        raise ValueError(f"--n must be at least 1, got {args.n}")
    space_timesteps(1000, args.steps)
    model, info = load_model(args.ckpt)
    world = args.world or recorded_world(args.ckpt) or DEFAULT_WORLD
    if model.in_channels != 3 or model.input_size != 32:
        raise ValueError(f"{args.ckpt} is not a 32×32 pixel model; the probe needs a smileys checkpoint")
    print(f"{info}: missing-eye probe on {world}, {args.steps} steps, RePaint jump {args.jump_length} × "
          f"{args.resamples}")
    record = {"ckpt": str(args.ckpt), "world": world, "steps": args.steps, "jump_length": args.jump_length,
              "resamples": args.resamples, "regions": {}}
    for region in regions:
        r = missing_eye_probe(model, region, args.n, args.steps, args.jump_length, args.resamples, args.seed,
                              world=world)
        print("  " + r.summary())
        if region == "eye":
            print("    chance line (relation-blind painters, same faces): "
                  + ", ".join(f"{k} {v:.1%}" for k, v in r.chance.items()))
            print("    follow chance: " + ", ".join(f"{k} {v:.1%}" for k, v in r.follow_chance.items()))
        record["regions"][region] = r.record()
    if args.attention:
        att = eye_to_eye_attention(model)
        for t, parts in att.items():
            print(f"  attention at t={t}: left eye → right eye per token "
                  + " ".join(f"{v:.3f}" for v in parts["other_eye"].tolist()) + " | → skin at the same distance "
                  + " ".join(f"{v:.3f}" for v in parts["skin"].tolist()))
        record["attention"] = {str(t): {k: v.tolist() for k, v in parts.items()} for t, parts in att.items()}
    if args.json:
        write_json(args.json, record)
    return 0
