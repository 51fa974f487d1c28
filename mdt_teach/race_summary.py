"""The race's targets table: how long each variant takes to reach a score, over its seeds, and how many times
faster than DiT that is.

Targets: two-eyes 25%, 50% and 75%, and DiT's final FD-smileys (the mean over DiT's seeds of the last
evaluation). A run reaches a target at the step where its curve first crosses it, linearly interpolated
between the two evaluations around the crossing:

    step* = s₀ + (target − v₀) / (v₁ − v₀) · (s₁ − s₀)        (v₀ short of the target at s₀, v₁ past it at s₁)

and in calibrated seconds step* × (the variant's seconds per step). A run that never crosses is *censored*:
it counts as its whole budget, and everything computed from it is a bound ("> budget" when no seed got
there, "≥"/"≤" on a ratio). Ratios pair runs of the same seed (the same data order and initial noise):
DiT's time / the variant's time, per seed; the table's ratio is the ratio of the mean times, with the
per-seed ratios' range as its spread.
"""
from __future__ import annotations

import math

import numpy as np

TWO_EYES_TARGETS = (0.25, 0.5, 0.75)
FINAL_KEYS = ("two_eyes", "fd_smileys", "funnel_face_found", "funnel_two_eyes", "funnel_passed", "probe_eye")
BASELINE = "dit"


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
    """Times to one target over a variant's seeds, and the ratios to the baseline of the same seeds."""
    times = {s: time_to(r, key, target, higher) for s, r in sorted(runs.items())}
    base = {s: time_to(r, key, target, higher) for s, r in sorted(base_runs.items())}
    row = {"reached": sum(not t["censored"] for t in times.values()), "runs": len(times)}
    for axis in ("steps", "seconds"):
        row[axis] = spread([t[axis] for t in times.values()])
        paired = [ratio(base[s][axis], base[s]["censored"], t[axis], t["censored"])
                  for s, t in times.items() if s in base]
        exact = [p["value"] for p in paired if p is not None and p["value"] is not None]
        mean_base = np.mean([base[s][axis] for s in times if s in base]) if any(s in base for s in times) else None
        mean_self = np.mean([t[axis] for t in times.values()])
        agg = None if mean_base is None else ratio(
            mean_base, any(base[s]["censored"] for s in times if s in base), mean_self,
            any(t["censored"] for t in times.values()))
        row[f"speedup_{axis}"] = None if agg is None else {
            **agg, "min": min(exact) if exact else None, "max": max(exact) if exact else None, "per_seed": paired}
    return row


def targets(records: dict[str, dict], baseline: str = BASELINE) -> dict[str, tuple[str, float, bool]]:
    """The targets: name → (metric, value, higher is better)."""
    out = {f"two_eyes_{round(100 * t)}": ("two_eyes", t, True) for t in TWO_EYES_TARGETS}
    base_fd = [r["curve"][-1]["fd_smileys"] for r in records.values() if r["name"] == baseline]
    if base_fd:
        out["fd_dit_final"] = ("fd_smileys", round(float(np.mean(base_fd)), 4), False)
    return out


def summarize(records: dict[str, dict], baseline: str = BASELINE) -> dict:
    """The targets table over every finished (variant, seed) record (keyed by file stem)."""
    by_variant: dict[str, dict[int, dict]] = {}
    for rec in records.values():
        by_variant.setdefault(rec["name"], {})[rec["seed"]] = rec
    base_runs = by_variant.get(baseline, {})
    goals = targets(records, baseline)
    out = {"baseline": baseline, "targets": {k: {"metric": m, "value": v} for k, (m, v, _) in goals.items()},
           "interpolation": "linear in steps between the evaluations around the first crossing",
           "compute_hours": round(sum(r.get("wall_seconds", 0.0) for r in records.values()) / 3600, 2),
           "models": {}}
    for name, runs in by_variant.items():
        first = next(iter(runs.values()))
        finals = {k: spread([(r.get("final") or r["curve"][-1]).get(k) for r in runs.values()]) for k in FINAL_KEYS}
        out["models"][name] = {
            "label": first["label"], "isolates": first["isolates"], "model": first["model"], "opt": first["opt"],
            "lr": first["lr"], "weighting": first["weighting"], "seeds": sorted(runs),
            "steps": first["steps"], "cal_seconds_per_step": first["cal_seconds_per_step"], "final": finals,
            "targets": {k: target_row(runs, base_runs, m, v, hi) for k, (m, v, hi) in goals.items()}}
    out["ablation"] = ablation(out["models"])
    return out


def ablation(models: dict) -> dict:
    """What the mask-0 variant attributes to masking itself, per target and axis: masking's own speed-up
    (mask-0's mean time / MDTv2's), the rest (DiT's / mask-0's), their product MDTv2's total, and masking's
    share of it in log terms, log(masking) / log(total). Each factor needs both of its runs to reach the
    target in every seed (else None); the share needs all three, and MDTv2 faster than DiT."""
    if not {"dit", "mdtv2", "mdtv2_mask0"} <= set(models):
        return {}
    out = {}
    for target in models["mdtv2"]["targets"]:
        rows = {n: models[n]["targets"][target] for n in ("dit", "mdtv2", "mdtv2_mask0")}
        out[target] = {}
        for axis in ("steps", "seconds"):
            t = {n: r[axis]["mean"] if r["reached"] == r["runs"] else None for n, r in rows.items()}
            factor = lambda a, b: round(t[a] / t[b], 3) if t[a] and t[b] else None   # noqa: E731
            total, masking = factor("dit", "mdtv2"), factor("mdtv2_mask0", "mdtv2")
            share = (round(math.log(masking) / math.log(total), 3)
                     if total and masking and total > 1 else None)
            out[target][axis] = {"masking": masking, "rest": factor("dit", "mdtv2_mask0"), "total": total,
                                 "masking_share": share}
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
    lines = [f"{'model':22s} {'seeds':>5s} {'steps':>6s} {'two-eyes':>13s} {'FD-smileys':>13s} {'probe':>11s}"]
    def pm(s: dict, pct: bool) -> str:
        """mean ± std over seeds (the mean alone for one seed)."""
        if s["mean"] is None:
            return "—"
        f = (lambda v: f"{v:.1%}") if pct else (lambda v: f"{v:.2f}")                      # noqa: E731
        return f(s["mean"]) + (f" ± {f(s['std'])}" if len(s["per_seed"]) > 1 else "")

    for row in models.values():
        f = row["final"]
        lines.append(f"{row['label']:22s} {len(row['seeds']):5d} {row['steps']:6d} {pm(f['two_eyes'], True):>13s} "
                     f"{pm(f['fd_smileys'], False):>13s} {pm(f['probe_eye'], True):>11s}")
    for target, goal in summary.get("targets", {}).items():
        lines.append(f"\ntarget {target}: {target_title(goal)}")
        lines.append(f"{'model':22s} {'steps':>16s} {'×steps':>18s} {'time':>18s} {'×time':>18s}")
        for row in models.values():
            t = row["targets"][target]
            lines.append(f"{row['label']:22s} {fmt_time(t, 'steps'):>16s} {fmt_ratio(t['speedup_steps']):>18s} "
                         f"{fmt_time(t, 'seconds'):>18s} {fmt_ratio(t['speedup_seconds']):>18s}")
    return "\n".join(lines)


def target_title(goal: dict) -> str:
    """"two-eyes ≥ 50%" or "FD-smileys ≤ 29.7" for a target of the summary."""
    if goal["metric"] == "two_eyes":
        return f"two-eyes ≥ {goal['value']:.0%}"
    return f"FD-smileys ≤ {goal['value']:.1f}"


def markdown_table(summary: dict, axis: str = "seconds") -> str:
    """The README's table: per variant, the time to each target and the ratio to DiT at that `axis`."""
    names = list(summary["targets"])
    head = "| model | seeds | " + " | ".join(target_title(summary["targets"][n]) for n in names) + " |"
    rows = [head, "|" + "---|" * (len(names) + 2)]
    for row in summary["models"].values():
        cells = [f"{fmt_time(row['targets'][n], axis)} ({fmt_ratio(row['targets'][n]['speedup_' + axis])})"
                 for n in names]
        rows.append(f"| {row['label']} | {len(row['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
