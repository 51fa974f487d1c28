"""The race's tables: how long each variant takes to reach a score, over its seeds; how many times faster than
DiT that is; and what each ingredient buys, as the ratio between two variants that differ by it.

Targets on the headline metric (pair agreement on the relational world, two-eyes on the classic one): 25%, 50%
and 75%, and — because DiT may reach none of those — half of DiT's own final score and all of it (the mean over
DiT's seeds of the last evaluation), when half of it is above the chance line (the best relation-blind
painter's score); and DiT's final FD-smileys. A target that some untrained model (a step-0
evaluation) already meets measures nothing and is left out. A run reaches a target at the step where its
curve first crosses it, linearly interpolated between the two evaluations around the crossing:

    step* = s₀ + (target − v₀) / (v₁ − v₀) · (s₁ − s₀)        (v₀ short of the target at s₀, v₁ past it at s₁)

and in calibrated seconds step* × (the variant's seconds per step). A run that never crosses is *censored*:
it counts as its whole budget, and everything computed from it is a bound ("> budget" when no seed got
there, "≥"/"≤" on a ratio). Ratios pair runs of the same seed (the same data order and initial noise), over
the seeds both sides ran: A's time / B's time per seed, and the ratio of the mean times over those seeds,
with the per-seed ratios' range as its spread. The contrasts (CONTRASTS) are computed over the seeds their
whole group shares, so that contrasts of one group are compared over one seed set; along the main chain
(DiT → + Min-SNR → architecture → second pass → masking) the ratios multiply to DiT → MDTv2, and each
ingredient's share of the speed-up is log(its ratio) / log(the product).
"""
from __future__ import annotations

import math

import numpy as np

TARGET_LEVELS = (0.25, 0.5, 0.75)
FINAL_KEYS = ("pair_agreement", "two_eyes", "fd_smileys", "funnel_face_found", "funnel_two_eyes", "funnel_passed",
              "probe_eye", "probe_chance", "probe_follow", "probe_follow_chance")
BASELINE = "dit"
HEADLINES = {"smileys-classic": "two_eyes"}       # the headline metric of a world (default: pair_agreement)
CHAIN = ("dit", "dit_minsnr", "mdtv2_one_pass", "mdtv2_mask0", "mdtv2")
SQUARE = ("mdtv2_mask0_no_minsnr", "mdtv2_no_minsnr", "mdtv2_mask0", "mdtv2")    # masking × weighting
CONTRASTS = {  # name → (from, to, what the change isolates, the group whose shared seeds it is computed over)
    "weighting": ("dit", "dit_minsnr", "Min-SNR-5 (on DiT)", CHAIN),
    "architecture": ("dit_minsnr", "mdtv2_one_pass", "MDTv2's architecture (one pass, Min-SNR both)", CHAIN),
    "second_pass": ("mdtv2_one_pass", "mdtv2_mask0", "the second pass (nothing hidden)", CHAIN),
    "masking": ("mdtv2_mask0", "mdtv2", "masking (with Min-SNR)", CHAIN),
    "masking_without_minsnr": ("mdtv2_mask0_no_minsnr", "mdtv2_no_minsnr", "masking (without Min-SNR)", SQUARE),
    "masking_with_minsnr": ("mdtv2_mask0", "mdtv2", "masking (with Min-SNR)", SQUARE),
    "minsnr_without_masking": ("mdtv2_mask0_no_minsnr", "mdtv2_mask0", "Min-SNR (mask ratio 0)", SQUARE),
    "minsnr_with_masking": ("mdtv2_no_minsnr", "mdtv2", "Min-SNR (with masking)", SQUARE),
    "mdt_v1_to_v2": ("mdt", "mdtv2", "MDT v1 → MDTv2 (shortcuts, ratio, Min-SNR)", ("mdt", "mdtv2")),
}


def headline_of(world: str | None) -> str:
    """The metric a race on `world` (e.g. "smileys@2") is headed by."""
    return HEADLINES.get((world or "smileys-classic@1").split("@")[0], "pair_agreement")


def crossing(curve: list[dict], key: str, target: float, higher: bool = True) -> float | None:
    """The (interpolated) step at which `key` first reaches `target` along `curve`; None if it never does."""
    before = None
    for point in curve:
        value = point.get(key)
        if value is None:
            continue
        if (value >= target) if higher else (value <= target):
            if before is None:
                return float(point["step"])
            s0, v0 = before
            return s0 + (target - v0) / (value - v0) * (point["step"] - s0)
        before = (point["step"], value)
    return None


def spread(values: list[float | None]) -> dict:
    """Mean, standard deviation (n − 1), min and max of the values that exist, and the per-seed list."""
    xs = [v for v in values if v is not None]
    rnd = lambda v: None if v is None else round(float(v), 4)    # noqa: E731
    return {"mean": rnd(np.mean(xs)) if xs else None, "std": rnd(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0,
            "min": rnd(min(xs)) if xs else None, "max": rnd(max(xs)) if xs else None,
            "per_seed": [rnd(v) for v in values]}


def time_to(record: dict, key: str, target: float, higher: bool) -> dict:
    """One run's steps and calibrated seconds to `target`, or its budget with `censored` when it never got there."""
    step = crossing(record["curve"], key, target, higher)
    censored = step is None
    step = float(record["steps"]) if censored else step
    return {"steps": step, "seconds": step * record["cal_seconds_per_step"], "censored": censored}


def ratio(base: float, base_censored: bool, other: float, other_censored: bool) -> dict | None:
    """base / other with its bound: "≥" when the baseline never arrived, "≤" when the other never did."""
    if base_censored and other_censored:
        return None
    bound = "≥" if base_censored else "≤" if other_censored else "="
    return {"value": round(base / other, 3) if other > 0 else None, "bound": bound}


def target_row(runs: dict[int, dict], base_runs: dict[int, dict], key: str, target: float, higher: bool) -> dict:
    """Times to one target over a variant's seeds, and the ratios base / variant over the seeds both ran."""
    times = {s: time_to(r, key, target, higher) for s, r in sorted(runs.items())}
    base = {s: time_to(r, key, target, higher) for s, r in sorted(base_runs.items())}
    shared = [s for s in times if s in base]
    row = {"reached": sum(not t["censored"] for t in times.values()), "runs": len(times)}
    for axis in ("steps", "seconds"):
        row[axis] = spread([t[axis] for t in times.values()])
        row[f"speedup_{axis}"] = paired_ratio([base[s] for s in shared], [times[s] for s in shared], axis)
    return row


def paired_ratio(before: list[dict], after: list[dict], axis: str) -> dict | None:
    """before / after for runs paired by seed (lists in seed order): the ratio of the mean times with its bound,
    the per-seed ratios and their range; None without a pair."""
    if not before:
        return None
    agg = ratio(float(np.mean([b[axis] for b in before])), any(b["censored"] for b in before),
                float(np.mean([a[axis] for a in after])), any(a["censored"] for a in after))
    paired = [ratio(b[axis], b["censored"], a[axis], a["censored"]) for b, a in zip(before, after)]
    exact = [p["value"] for p in paired if p is not None and p["value"] is not None]
    return None if agg is None else {**agg, "min": min(exact) if exact else None,
                                     "max": max(exact) if exact else None, "per_seed": paired}


def targets(records: dict[str, dict], baseline: str = BASELINE, headline: str = "pair_agreement",
            chance: float = 0.0) -> dict[str, tuple[str, float, bool]]:
    """The targets: name → (metric, value, higher is better). DiT's own levels only when its final score is
    above `chance`, the relation-blind painters' score: below it they would measure nothing."""
    out = {f"{headline}_{round(100 * t)}": (headline, t, True) for t in TARGET_LEVELS}
    base = [r["curve"][-1] for r in records.values() if r["name"] == baseline]
    if base and headline != "two_eyes":    # the classic race's table had none (DiT reached its two-eyes levels)
        final = round(float(np.mean([p[headline] for p in base])), 4)
        if final / 2 > chance:
            out[f"{headline}_dit_half"] = (headline, round(final / 2, 4), True)
            out[f"{headline}_dit_final"] = (headline, final, True)
    if base:
        out["fd_dit_final"] = ("fd_smileys", round(float(np.mean([p["fd_smileys"] for p in base])), 4), False)
    return {k: g for k, g in out.items() if not met_at_start(records, *g)}


def met_at_start(records: dict[str, dict], key: str, target: float, higher: bool) -> bool:
    """True when some run's untrained model (its step-0 evaluation) already meets the target: such a target
    measures nothing (e.g. DiT's final FD after a few seconds of a live race), and is left out."""
    starts = [r["curve"][0].get(key) for r in records.values() if r["curve"] and r["curve"][0]["step"] == 0]
    return any(v is not None and ((v >= target) if higher else (v <= target)) for v in starts)


def summarize(records: dict[str, dict], baseline: str = BASELINE, headline: str = "pair_agreement",
              chance: float = 0.0) -> dict:
    """The targets table and the contrasts over every finished (variant, seed) record (keyed by file stem);
    `chance`: the headline score of the best relation-blind painter (free samples), stored beside it."""
    by_variant: dict[str, dict[int, dict]] = {}
    for rec in records.values():
        by_variant.setdefault(rec["name"], {})[rec["seed"]] = rec
    base_runs = by_variant.get(baseline, {})
    goals = targets(records, baseline, headline, chance)
    out = {"baseline": baseline, "headline": headline, "chance_line": chance,
           "targets": {k: {"metric": m, "value": v} for k, (m, v, _) in goals.items()},
           "interpolation": "linear in steps between the evaluations around the first crossing",
           "compute_hours": round(sum(r.get("wall_seconds", 0.0) for r in records.values()) / 3600, 2),
           "models": {}}
    for name, runs in by_variant.items():
        first = next(iter(runs.values()))
        ends = [r.get("final") or r["curve"][-1] for r in runs.values()]
        finals = {k: spread([e.get(k) for e in ends]) for k in FINAL_KEYS if any(k in e for e in ends)}
        out["models"][name] = {
            "label": first["label"], "isolates": first["isolates"], "model": first["model"], "opt": first["opt"],
            "lr": first["lr"], "weighting": first["weighting"], "seeds": sorted(runs),
            "steps": first["steps"], "cal_seconds_per_step": first["cal_seconds_per_step"], "final": finals,
            "targets": {k: target_row(runs, base_runs, m, v, hi) for k, (m, v, hi) in goals.items()}}
    out["contrasts"] = contrasts(by_variant, goals, headline)
    out["chain_shares"] = chain_shares(out["contrasts"])
    return out


def contrasts(by_variant: dict[str, dict[int, dict]], goals: dict, headline: str) -> dict:
    """Each contrast of CONTRASTS whose group ran: over the seeds the whole group shares, the paired speed-up
    (before's time / after's) to every target on both axes, and the paired change in the final scores."""
    out = {}
    for name, (before, after, what, group) in CONTRASTS.items():
        if not all(g in by_variant for g in group) or before not in by_variant or after not in by_variant:
            continue
        seeds = sorted(set.intersection(*(set(by_variant[g]) for g in group)))
        if not seeds:
            continue
        b, a = [by_variant[before][s] for s in seeds], [by_variant[after][s] for s in seeds]
        row = {"from": before, "to": after, "isolates": what, "seeds": seeds, "targets": {}, "final_change": {}}
        for target, (metric, value, higher) in goals.items():
            tb, ta = [time_to(r, metric, value, higher) for r in b], [time_to(r, metric, value, higher) for r in a]
            row["targets"][target] = {axis: paired_ratio(tb, ta, axis) for axis in ("steps", "seconds")}
        for key in (headline, "fd_smileys", "probe_eye", "probe_follow"):
            pairs = [((x.get("final") or x["curve"][-1]).get(key), (y.get("final") or y["curve"][-1]).get(key))
                     for x, y in zip(b, a)]
            if all(p is not None and q is not None for p, q in pairs):
                row["final_change"][key] = spread([q - p for p, q in pairs])
        out[name] = row
    return out


def distinct_contrasts(summary: dict) -> dict:
    """The summary's contrasts without repeats: a contrast of the 2 × 2 that is also a step of the main chain
    (masking with Min-SNR) is listed once while both groups share their seeds, twice once they differ."""
    seen, out = set(), {}
    for name, c in summary.get("contrasts", {}).items():
        key = (c["from"], c["to"], tuple(c["seeds"]))
        if key not in seen:
            seen.add(key)
            out[name] = c
    return out


def at_step(record: dict, key: str, step: float) -> float | None:
    """A run's `key` at training step `step`, linearly interpolated between the two evaluations around it
    (None past the run's last evaluation): the race read at equal steps instead of equal minutes."""
    points = [(p["step"], p[key]) for p in record["curve"] if p.get(key) is not None]
    if not points or step > points[-1][0]:
        return None
    steps, values = zip(*points)
    return float(np.interp(step, steps, values))


def chain_shares(rows: dict) -> dict:
    """Per target and axis, each main-chain ingredient's speed-up and its share of their product in log terms;
    None where a step's ratio is a bound (some run never reached the target) or the product is not > 1."""
    steps = ("weighting", "architecture", "second_pass", "masking")
    if not all(s in rows for s in steps):
        return {}
    out = {}
    for target in rows["masking"]["targets"]:
        out[target] = {}
        for axis in ("steps", "seconds"):
            r = {s: rows[s]["targets"][target][axis] for s in steps}
            exact = {s: v["value"] if v and v["bound"] == "=" else None for s, v in r.items()}
            total = math.prod(exact.values()) if all(exact.values()) else None
            out[target][axis] = {"total": None if total is None else round(total, 3), **{
                s: {"ratio": exact[s], "share": round(math.log(exact[s]) / math.log(total), 3)
                    if total and total > 1 else None} for s in steps}}
    return out


# ---------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------

def fmt_time(row: dict, axis: str) -> str:
    """Mean ± std of a target's time, or "> budget" (no seed arrived) / "> mean (k/n)" (some did)."""
    s = row[axis]
    scale, unit = (1, "") if axis == "steps" else (1 / 60, " min")
    if row["reached"] == 0:
        return "> budget"
    text = f"{s['mean'] * scale:.0f}" if axis == "steps" else f"{s['mean'] * scale:.1f}"
    if row["runs"] > 1:
        text += f" ± {s['std'] * scale:.0f}" if axis == "steps" else f" ± {s['std'] * scale:.1f}"
    text += unit
    return text if row["reached"] == row["runs"] else f"> {text} ({row['reached']}/{row['runs']})"


def fmt_ratio(r: dict | None) -> str:
    """×ratio with its bound and, over several seeds, the range of the per-seed ratios."""
    if r is None or r["value"] is None:
        return "—"
    bound = "" if r["bound"] == "=" else r["bound"]
    spread_ = f" [{r['min']:.1f}–{r['max']:.1f}]" if r["min"] is not None and len(r["per_seed"]) > 1 else ""
    return f"{bound}{r['value']:.2f}×{spread_}"


def format_table(summary: dict) -> str:
    """Plain-text tables for the terminal and the notes: the finals, then each target."""
    models = summary.get("models", {})
    head = summary.get("headline", "two_eyes")
    lines = [f"{'model':38s} {'seeds':>5s} {'steps':>6s} {head.replace('_', ' '):>15s} {'FD-smileys':>13s} "
             f"{'probe':>13s}"]
    for row in models.values():
        f = row["final"]
        lines.append(f"{row['label']:38s} {len(row['seeds']):5d} {row['steps']:6d} {pm(f.get(head), True):>15s} "
                     f"{pm(f.get('fd_smileys'), False):>13s} {pm(f.get('probe_eye'), True):>13s}")
    for target, goal in summary.get("targets", {}).items():
        lines.append(f"\ntarget {target}: {target_title(goal)}")
        lines.append(f"{'model':38s} {'steps':>16s} {'×steps':>18s} {'time':>18s} {'×time':>18s}")
        for row in models.values():
            t = row["targets"][target]
            lines.append(f"{row['label']:38s} {fmt_time(t, 'steps'):>16s} {fmt_ratio(t['speedup_steps']):>18s} "
                         f"{fmt_time(t, 'seconds'):>18s} {fmt_ratio(t['speedup_seconds']):>18s}")
    names = [t for t, g in summary.get("targets", {}).items() if g["metric"] != "fd_smileys"]
    if summary.get("contrasts"):
        lines.append("\ncontrasts (before's time / after's, paired by seed; steps | calibrated time):")
        for c in summary["contrasts"].values():
            lines.append(f"  {c['from']} → {c['to']} ({c['isolates']}; seeds {','.join(map(str, c['seeds']))})")
            for t in names:
                r = c["targets"][t]
                lines.append(f"    {target_title(summary['targets'][t]):28s} {fmt_ratio(r['steps']):>18s} "
                             f"{fmt_ratio(r['seconds']):>18s}")
    return "\n".join(lines)


def layout(header: list[str], rows: list[list[str]], widths: list[int], markdown: bool) -> str:
    """Rows as a fixed-width text table (the terminal, a notebook: first column left-aligned, widths as given)
    or as a Markdown table (the README)."""
    if markdown:
        return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                         + ["| " + " | ".join(r) + " |" for r in rows])
    def line(cells: list[str]) -> str:
        return " ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join(line(r).rstrip() for r in [header, *rows])


def headline_target(summary: dict, target: str | None = None) -> str:
    """`target`, or the summary's first target on its headline metric (e.g. pair agreement ≥ 25%)."""
    return target or next(t for t, g in summary["targets"].items() if g["metric"] == summary["headline"])


def lead_table(summary: dict, target: str | None = None, markdown: bool = False) -> str:
    """The one table a race page leads with: per variant, its seeds and steps, its final scores (mean ± std over
    seeds) and its time to `target` (default: the first headline target) with the paired ratio to DiT's; first
    a row for the chance line (the best relation-blind painter, and the probe's chance scores)."""
    head, models = summary["headline"], summary["models"]
    target = headline_target(summary, target)
    pct = lambda s: "—" if s is None else f"{s['mean']:.1%}"                             # noqa: E731

    def chance(key: str) -> str:
        """The probe's chance score (the same real faces for every run): its highest over the runs."""
        values = [row["final"][key]["max"] for row in models.values() if key in row["final"]]
        return f"{max(values):.1%}" if values else "—"

    header = ["variant", "seeds", "steps", head.replace("_", " "), "FD", "probe", "follows",
              f"time to {target_title(summary['targets'][target])} (× DiT's)"]
    rows = [["chance: relation-blind painter", "", "", f"{summary['chance_line']:.1%}", "",
             chance("probe_chance"), chance("probe_follow_chance"), ""]]
    for row in models.values():
        f, t = row["final"], row["targets"][target]
        rows.append([row["label"], str(len(row["seeds"])), str(row["steps"]), pm(f.get(head), True),
                     f"{f['fd_smileys']['mean']:.1f}", pct(f.get("probe_eye")), pct(f.get("probe_follow")),
                     f"{fmt_time(t, 'seconds')} ({fmt_ratio(t['speedup_seconds'])})"])
    return layout(header, rows, [36, 5, 5, 15, 5, 6, 7, 40], markdown)


def contrast_table(summary: dict, target: str | None = None, markdown: bool = False) -> str:
    """What each ingredient buys: per distinct contrast of CONTRASTS, the paired change (after − before) of the
    final headline score, FD and probe, and the speed-up to `target` in steps and in calibrated time."""
    head = summary["headline"]
    target = headline_target(summary, target)

    def change(row: dict, key: str, pct: bool) -> str:
        """Mean paired change over the seeds, with its range over seeds when there are several."""
        s = row["final_change"].get(key)
        if s is None:
            return "—"
        f = (lambda v: f"{100 * v:+.1f}") if pct else (lambda v: f"{v:+.1f}")              # noqa: E731
        return f(s["mean"]) + (f" [{f(s['min'])}, {f(s['max'])}]" if len(s["per_seed"]) > 1 else "")

    header = ["change (before → after)", "seeds", f"Δ {head.replace('_', ' ')} (pts)", "Δ FD", "Δ probe (pts)",
              f"to {target_title(summary['targets'][target])}: ×steps, ×time"]
    rows = [[c["isolates"], ",".join(map(str, c["seeds"])), change(c, head, True), change(c, "fd_smileys", False),
             change(c, "probe_eye", True),
             f"{fmt_ratio(c['targets'][target]['steps'])}, {fmt_ratio(c['targets'][target]['seconds'])}"]
            for c in distinct_contrasts(summary).values()]
    return layout(header, rows, [46, 5, 24, 22, 22, 40], markdown)


def pm(s: dict | None, pct: bool) -> str:
    """mean ± std over seeds (the mean alone for one seed); — for a score no run has."""
    if s is None or s["mean"] is None:
        return "—"
    f = (lambda v: f"{v:.1%}") if pct else (lambda v: f"{v:.2f}")                          # noqa: E731
    return f(s["mean"]) + (f" ± {f(s['std'])}" if len(s["per_seed"]) > 1 else "")


def target_title(goal: dict) -> str:
    """"pair agreement ≥ 50%", "two-eyes ≥ 50%" or "FD-smileys ≤ 29.7" for a target of the summary."""
    if goal["metric"] == "fd_smileys":
        return f"FD-smileys ≤ {goal['value']:.1f}"
    name = {"two_eyes": "two-eyes", "pair_agreement": "pair agreement"}[goal["metric"]]
    return f"{name} ≥ {goal['value']:.1%}" if round(100 * goal["value"]) != 100 * goal["value"] \
        else f"{name} ≥ {goal['value']:.0%}"
