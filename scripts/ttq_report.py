"""The analysis half of scripts/bench_time_to_quality.py: curves, time to a level, ratios, tables and plots.

Kept apart from the runner (processes, clocks, scoring) so each reads in one sitting. Inputs are the scored results
the runner returns: per model, per row, {"seconds": {step: s/unit}, "objective": {step: mean}, "top1": {step: {p, k,
ci}}} (the converge row has one whole-run time instead of per-step seconds).

Ratios (issue #29): lucent's level L = its quality at the last step; lucent's seconds = the first time its own curve
reaches L; a fv row's seconds = the first time its curve reaches L; linear interpolation in (seconds per unit,
quality) between snapshots. Each fv row is compared with each lucent row there is: `lucent` (one render_vis per
unit, as its README runs it) and `lucent batched` (its units rendered jointly).
"""
from __future__ import annotations

import sys
from pathlib import Path

LUCENT_ROWS = ("lucent", "lucent batched")
TARGETS = {128: 20.0, 224: 10.0}  # time-to-quality ratio wanted at each size (issue #29); other sizes: 10
TARGET_OTHERS = 8.0  # ... and on the other models, by the objective, at any size
TARGET_TOP1_128 = 0.70  # the default's open-judge top-1 at 128 steps (issue #29)


def curve(r: dict, measure: str) -> list[tuple[float, float, int]]:
    """[(seconds per unit, quality, step)] of a row, by time."""
    q = r["objective"] if measure == "objective" else {s: v["p"] for s, v in r["top1"].items()}
    q = {int(s): v for s, v in q.items()}
    if r["seconds"]:
        sec = {int(s): v for s, v in r["seconds"].items()}
        return sorted((sec[s], q[s], s) for s in q if s in sec)
    last = max(q)
    return [(r["converge_seconds"], q[last], last)] if r["converge_seconds"] else []


def first_reach(pts: list[tuple[float, float, int]], level: float) -> tuple[float | None, bool]:
    """(seconds at which the curve first reaches `level`, linear between snapshots; is it only a bound?)"""
    for i, (t, q, _s) in enumerate(pts):
        if q >= level:
            if i == 0:
                return t, True
            t0, q0, _ = pts[i - 1]
            return t0 + (level - q0) / (q - q0) * (t - t0), False
    return None, False


def above_everywhere(fv: list, lu: list) -> tuple[bool, str]:
    """Is the fv curve at or above lucent's at every time budget up to lucent's last snapshot?"""
    def at(pts, T):
        got = [q for t, q, _ in pts if t <= T]
        return got[-1] if got else None

    for T in sorted({t for t, _, _ in fv + lu if t <= lu[-1][0]}):
        qf, ql = at(fv, T), at(lu, T)
        if ql is not None and (qf is None or qf < ql):
            return False, (f"at {T:.2f} s/unit fv {'has nothing yet' if qf is None else f'{qf:.3g}'} < "
                           f"lucent {ql:.3g}")
    return True, ""


def summarize(res: dict, measure: str, steps: int, row: str = "fv default", ref: str = "lucent") -> dict | None:
    rows = res["rows"]
    if ref not in rows or row not in rows:
        return None
    lu, fv = curve(rows[ref], measure), curve(rows[row], measure)
    if not lu or not fv:
        return None
    level = next((q for t, q, s in lu if s == steps), lu[-1][1])
    t_lu, _ = first_reach(lu, level)
    t_fv, bound = first_reach(fv, level)
    ok, why = above_everywhere(fv, lu)
    step_fv = None
    for i, (t, q, s) in enumerate(fv):  # the step at which fv first reaches the level (interpolated)
        if q >= level:
            step_fv = s if i == 0 else fv[i - 1][2] + (level - fv[i - 1][1]) / (q - fv[i - 1][1]) * (s - fv[i - 1][2])
            break
    return {"level": level, "lucent_s": t_lu, "fv_s": t_fv, "bound": bound, "fv_step": step_fv,
            "ratio": (t_lu / t_fv) if t_fv else None, "above": ok, "why": why}


def measures(res: dict) -> list[str]:
    return ["judge top-1", "objective"] if res["model"] == "mobilenet_v2" else ["objective"]


def print_model(res: dict, args) -> list[str]:
    lines = [f"\n### {res['label']}: {len(res['units'])} units, {args.size} px, {args.steps} steps\n"]
    steps = res["steps"]
    lines.append("| row | measure | " + " | ".join(f"@{s}" for s in steps) + " |")
    lines.append("|" + " --- |" * (len(steps) + 2))
    for row, r in res["rows"].items():
        sec = {int(k): v for k, v in (r["seconds"] or {}).items()}
        if sec:
            lines.append(f"| {row} | s/unit | " + " | ".join(f"{sec[s]:.2f}" if s in sec else "" for s in steps) + " |")
        else:
            st = r.get("stop_steps") or []
            lines.append(f"| {row} | s/unit | " + " | ".join("" for _ in steps[:-1]) +
                         f" | {r['converge_seconds']:.2f} (whole run; stop step median "
                         f"{sorted(st)[len(st) // 2] if st else '-'}, min {min(st) if st else '-'}) |")
        top1 = {int(k): v for k, v in (r["top1"] or {}).items()}
        if top1:
            lines.append(f"| {row} | judge top-1 | " + " | ".join(
                f"{top1[s]['p']:.2f} [{top1[s]['ci'][0]:.2f}, {top1[s]['ci'][1]:.2f}]" for s in steps) + " |")
        obj = {int(k): v for k, v in r["objective"].items()}
        lines.append(f"| {row} | objective | " + " | ".join(f"{obj[s]:.3g}" for s in steps) + " |")
    return lines


STYLES = {"fv default": ("C0", "o-"), "fv article": ("C2", "s-"), "fv converge": ("C4", "*"),
          "lucent": ("C3", "^--"), "lucent batched": ("C1", "v:")}


def plot_model(res: dict, args, img_dir: Path) -> Path | None:
    try:
        import matplotlib
        import matplotlib.ticker

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("# matplotlib not installed (it belongs in the bench venv): no plot", file=sys.stderr)
        return None
    ms = measures(res)
    fig, axes = plt.subplots(1, len(ms), figsize=(4.6 * len(ms), 3.3), dpi=80, squeeze=False)
    extra = iter(f"C{i}" for i in range(5, 10))
    look = {row: STYLES.get(row) or (next(extra, "k"), ".-") for row in res["rows"]}  # one look per row, both plots
    for ax, m in zip(axes[0], ms):
        for row, r in res["rows"].items():
            pts = curve(r, m)
            if not pts:
                continue
            color, style = look[row]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=color, label=row,
                    ms=5 if row != "fv converge" else 11, lw=1.2)
            for t, q, s in pts:
                if s in (pts[0][2], 128, args.steps) and row in ("fv default", "lucent"):
                    ax.annotate(str(s), (t, q), fontsize=6, xytext=(2, 2), textcoords="offset points")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("wall seconds per unit (incl. startup)", fontsize=8)
        ax.set_ylabel(m, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    cls = f", {res['set']}" if res.get("set") else ""
    fig.suptitle(f"{res['label'].replace('`', '')}: {len(res['units'])} units{cls}, {args.size} px", fontsize=9)
    fig.tight_layout()
    img_dir.mkdir(parents=True, exist_ok=True)
    tag = f"-{res['set']}" if res.get("set") else ""
    path = img_dir / f"ttq-{res['model']}{tag}-{args.size}px.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def summary_table(results: list[dict], args) -> list[str]:
    """Per model, measure, fv row and lucent row: the level, both times, the ratio and the verdict."""
    lines = [f"| model | units | quality | fv row | vs | lucent @{args.steps} | lucent s/unit to it | fv s/unit to it "
             f"(step) | time-to-quality ratio | fv above lucent at every budget | fv @128 | fv @{args.steps} |",
             "|" + " --- |" * 12]
    for res in results:
        target = TARGETS.get(args.size, 10.0) if res["model"] == "mobilenet_v2" else TARGET_OTHERS
        for m in measures(res):
            for ref in LUCENT_ROWS:
                for row in [r for r in res["rows"] if r.startswith("fv ") and r != "fv converge"]:
                    s = summarize(res, m, args.steps, row, ref)
                    if s is None:
                        continue
                    pts = {st: q for _, q, st in curve(res["rows"][row], m)}
                    ratio = "never reaches it" if s["ratio"] is None else (
                        f"{'≥ ' if s['bound'] else ''}{s['ratio']:.1f}×" +
                        (" ✓" if s["ratio"] >= target else f" (target {target:g}×)"))
                    fv_s = "—" if s["fv_s"] is None else \
                        f"{'≤ ' if s['bound'] else ''}{s['fv_s']:.2f} ({s['fv_step']:.0f})"
                    at128 = f"{pts[128]:.3g}" if 128 in pts else "-"
                    last = f"{pts[max(pts)]:.3g}" if pts else "-"
                    lines.append(f"| {res['label']} | {len(res['units'])} | {m} | {row} | {ref} | {s['level']:.3g} | "
                                 f"{s['lucent_s']:.2f} | {fv_s} | {ratio} | "
                                 f"{'yes' if s['above'] else 'no: ' + s['why']} | {at128} | {last} |")
    return lines
