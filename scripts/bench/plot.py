#!/usr/bin/env python3
"""Draws the sweep plots of docs/performance.md from the JSON records that
scripts/bench/sweep.sh writes (one record per point, as `raftctl bench -o
json` prints a sweep). Usage: plot.py DIR (reads and writes DIR).

matplotlib is installed with pip into a virtual environment under
~/.cache/raftkv-plot when this Python lacks it, so the script needs only
python3 and PyPI."""

import json
import os
import subprocess
import sys
import venv

VENV = os.path.join(os.path.expanduser("~"), ".cache", "raftkv-plot")


def ensure_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return
    except ImportError:
        pass
    python = os.path.join(VENV, "bin", "python")
    if os.environ.get("RAFTKV_PLOT_VENV") == "1":
        sys.exit("matplotlib is still missing inside " + VENV)
    if not os.path.exists(python):
        venv.create(VENV, with_pip=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "matplotlib"], check=True)
    env = dict(os.environ, RAFTKV_PLOT_VENV="1")
    os.execve(python, [python] + sys.argv, env)


def load(directory, name):
    with open(os.path.join(directory, name)) as f:
        points = json.load(f)
    return points if isinstance(points, list) else [points]


def cpu(point, part):
    total = point["cpu"].get("total") or {}
    return total.get(part)


def size_label(n):
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n // scale} {unit}"
    return f"{n} B"


def main():
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit("usage: plot.py DIR (with the sweep-*.json of scripts/bench/sweep.sh)")
    directory = sys.argv[1]
    ensure_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clients = {w: load(directory, f"sweep-{w}-clients.json") for w in ("set", "get")}
    sizes = load(directory, "sweep-set-sizes.json")

    # Throughput against latency, one point per client count.
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for workload, points in clients.items():
        x = [p["throughput"] for p in points]
        for q, style in (("p50", "-o"), ("p99", "--s")):
            y = [p["latency_ms"][q] for p in points]
            ax.plot(x, y, style, label=f"{workload.upper()} {q}")
        for p in points:
            ax.annotate(str(p["clients"]), (p["throughput"], p["latency_ms"]["p99"]),
                        textcoords="offset points", xytext=(3, 4), fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("latency (ms, log)")
    ax.set_title("raftkv, 3 nodes, 100 B values: clients 1 to 1024 (labels)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(directory, "throughput-latency.png"), dpi=110)

    # Server CPU per request: against clients (SET, GET) and value size (SET).
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    for workload, points in clients.items():
        x = [p["clients"] for p in points]
        left.plot(x, [cpu(p, "user_us") for p in points], "-o", label=f"{workload.upper()} user")
        left.plot(x, [cpu(p, "system_us") for p in points], "--s", label=f"{workload.upper()} system")
    left.set_xscale("log", base=2)
    left.set_xlabel("clients")
    left.set_ylabel("server CPU per request (µs, 3 nodes)")
    left.set_title("by client count (100 B values)")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=8)
    x = [p["value_size"] for p in sizes]
    right.plot(x, [cpu(p, "user_us") for p in sizes], "-o", label="SET user")
    right.plot(x, [cpu(p, "system_us") for p in sizes], "--s", label="SET system")
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xticks(x, [size_label(n) for n in x])
    right.set_xlabel("value size")
    right.set_title("by value size (SET, 16 clients)")
    right.grid(True, which="both", alpha=0.3)
    twin = right.twinx()
    twin.plot(x, [p["throughput"] * p["value_size"] / 1e6 for p in sizes], ":^", color="grey",
              label="MB/s written")
    twin.set_ylabel("MB/s written (grey)")
    right.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(os.path.join(directory, "cpu-per-request.png"), dpi=110)
    print(f"wrote {directory}/throughput-latency.png and {directory}/cpu-per-request.png")


if __name__ == "__main__":
    main()
