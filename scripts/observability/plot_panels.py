#!/usr/bin/env python3
"""Renders the dashboards' query results from tests/observability.rs as PNGs.

Usage: plot_panels.py PANELS_JSON OUT_DIR

PANELS_JSON is what the test writes (target/release/tmp/observability/
panels.json: every query of every dashboard, answered by a real Prometheus
scraping a real `raftctl local` cluster). Each dashboard becomes one PNG laid
out like the dashboard itself (Grafana's 24-column grid): time series as lines,
state timelines as coloured bands, stats as numbers, tables as text. Leader
changes (the annotation query) are drawn as dashed vertical lines on every
time-series panel, as Grafana draws annotations.
"""

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.gridspec import GridSpec  # noqa: E402

DASHBOARDS = Path(__file__).resolve().parents[2] / "charts" / "raftkv" / "dashboards"


def legend(fmt, metric):
    out = fmt or ",".join(f"{k}={v}" for k, v in sorted(metric.items())) or "value"
    for k, v in metric.items():
        out = out.replace("{{" + k + "}}", v)
    return out


def fmt_value(v, unit, decimals):
    d = 2 if decimals is None else decimals
    if unit == "percentunit":
        return f"{v * 100:.{d}f} %"
    if unit == "bytes":
        return f"{v / 2**20:.1f} MiB"
    return f"{v:.{d}f}" + (" s" if unit == "s" else "")


def annotation_times(queries, start):
    times = set()
    for q in queries:
        if q["type"] != "annotation":
            continue
        for s in q["data"]["result"]:
            prev = None
            for t, _ in s["values"]:
                if prev is None or t - prev > 1.5:
                    times.add(t - start)
                prev = t
    return sorted(times)


def with_gaps(values, start, step, scale):
    """(xs, ys) with a NaN wherever samples are missing, so no line is drawn
    across a gap (Grafana does not connect nulls either)."""
    xs, ys, prev = [], [], None
    for t, v in values:
        if prev is not None and t - prev > 1.5 * step:
            xs.append(prev + step - start)
            ys.append(float("nan"))
        xs.append(t - start)
        ys.append(float(v) * scale)
        prev = t
    return xs, ys


def right_refs(panel):
    return {o["matcher"]["options"] for o in panel["fieldConfig"].get("overrides", [])
            if o["matcher"]["id"] == "byFrameRefID"
            and {"id": "custom.axisPlacement", "value": "right"} in o["properties"]}


def draw_series(ax, qs, start, step, unit, marks, right=()):
    twin = ax.twinx() if right else None
    for i, q in enumerate(qs):
        target = twin if chr(ord("A") + i) in right else ax
        for s in q["data"]["result"]:
            xs, ys = with_gaps(s["values"], start, step, 100 if unit == "percentunit" else 1)
            target.plot(xs, ys, lw=1, ls=":" if target is twin else "-",
                        label=legend(q["legend"], s["metric"]))
    if twin:
        twin.tick_params(labelsize=6)
        twin.legend(fontsize=5, loc="lower right")
    for m in marks:
        ax.axvline(m, color="orange", ls="--", lw=0.8)
    ax.set_xlabel("seconds since Prometheus started", fontsize=6)
    if unit in ("s", "percentunit", "bytes", "ops", "reqps"):
        ax.set_ylabel({"percentunit": "%", "reqps": "req/s", "ops": "/s"}.get(unit, unit), fontsize=6)
    if ax.lines:
        ax.legend(fontsize=5, loc="best")


def draw_timeline(ax, qs, start, steps):
    rows = []
    for q in qs:
        for s in q["data"]["result"]:
            rows.append((legend(q["legend"], s["metric"]), s["values"]))
    for i, (name, values) in enumerate(rows):
        for t, v in values:
            v = float(v)
            color = steps[0][0]
            for c, lo in steps[1:]:
                if v >= lo:
                    color = c
            if color != "transparent":
                ax.broken_barh([(t - start, 1)], (i - 0.4, 0.8), color=color)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=6)
    ax.set_xlabel("seconds since Prometheus started", fontsize=6)


def draw_stat(ax, qs, unit, decimals):
    ax.axis("off")
    lines = []
    for q in qs:
        for s in q["data"]["result"]:
            lines.append((legend(q["legend"], s["metric"]), fmt_value(float(s["value"][1]), unit, decimals)))
    text = "\n".join(f"{v}" if len(lines) == 1 else f"{k}: {v}" for k, v in lines)
    ax.text(0.5, 0.45, text or "no data", ha="center", va="center",
            fontsize=14 if len(lines) == 1 else 8, transform=ax.transAxes)


def draw_table(ax, qs):
    ax.axis("off")
    rows = [s["metric"] for q in qs for s in q["data"]["result"]]
    if not rows:
        return
    cols = sorted({k for r in rows for k in r})
    table = ax.table(cellText=[[r.get(c, "") for c in cols] for r in rows], colLabels=cols,
                     loc="center", fontsize=6)
    table.auto_set_font_size(False)
    table.set_fontsize(6)


def render(dash_file, results, start, step, out_dir):
    dash = json.loads((DASHBOARDS / dash_file).read_text())
    by_panel = {}
    for q in results["queries"]:
        by_panel.setdefault(q["panel"], []).append(q)
    marks = annotation_times(results["queries"], start)
    panels = dash["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    height = rows * 0.3 + 0.8
    fig = plt.figure(figsize=(16, height))
    grid = GridSpec(rows, 24, figure=fig, hspace=3, wspace=1.5, top=1 - 0.8 / height)
    for p in panels:
        g = p["gridPos"]
        ax = fig.add_subplot(grid[g["y"]:g["y"] + g["h"], g["x"]:g["x"] + g["w"]])
        ax.set_title(p["title"], fontsize=8, loc="left")
        ax.tick_params(labelsize=6)
        qs = by_panel.get(p["title"], [])
        unit = p["fieldConfig"]["defaults"].get("unit", "short")
        if p["type"] == "timeseries":
            draw_series(ax, qs, start, step, unit, marks, right_refs(p))
        elif p["type"] == "state-timeline":
            steps = [(s["color"], s["value"]) for s in
                     p["fieldConfig"]["defaults"]["thresholds"]["steps"]]
            draw_timeline(ax, qs, start, steps)
            for m in marks:
                ax.axvline(m, color="orange", ls="--", lw=0.8)
        elif p["type"] == "stat":
            draw_stat(ax, qs, unit, p["fieldConfig"]["defaults"].get("decimals"))
        elif p["type"] == "table":
            draw_table(ax, qs)
    when = datetime.fromtimestamp(start, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    fig.suptitle(f"{dash['title']} — real Prometheus, real raftctl local cluster, {when} "
                 "(orange dashes: leader changes)", fontsize=10)
    out = out_dir / dash_file.replace(".json", ".png")
    fig.savefig(out, dpi=90, bbox_inches="tight")
    plt.close(fig)
    print(out)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    data = json.loads(Path(sys.argv[1]).read_text())
    out_dir = Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    for d in data["dashboards"]:
        render(d["file"], d, data["start"], data["step"], out_dir)


if __name__ == "__main__":
    main()
