"""Plots and a Markdown table from a shmpool_bench JSON file.

    python3 bench/plot.py RESULTS.json OUT_DIR [LOAD0.json LOAD1.json ...]

Writes OUT_DIR/latency_vs_size.svg (and .png) (p50 latency of handing a payload to
Python and getting the ack, by payload size, one line per transport),
OUT_DIR/calls_vs_callers.svg (pool calls/s by number of caller threads, one
line per transport) and OUT_DIR/bench.md (the same numbers as tables, with
the machine). With the per-level files of `shmpool_bench --load 0,1,2
--benchmark_out=F.json` (F-load0.json, ...), also OUT_DIR/busy_machine.svg
(p50 and p99 of each case beside 0, 1, 2 busy loops, one bar per transport)
and its table in bench.md. Needs Debian's python3-matplotlib.
"""

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Case names are family/peer/parameters (bench/case_names.h), e.g.
# BM_Bulk/in_place/echo/1MiB/min_time:0.200/manual_time or
# BM_PoolThroughput/shm/real_time/threads:4; the dicts keep the plots' order.
BULK_MODES = {"in_place": "shm (in place)", "copy": "shm (copy)", "pipe_json": "pipe_json",
              "zmq": "zmq"}
POOL_TRANSPORTS = {"shm": "shm pool", "pipe_json": "pipe_json pool", "zmq": "zmq (2 REP workers)"}
SIZE_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20}


def arg(name, key):
    m = re.search(key + r":(\d+)", name)
    return int(m.group(1)) if m else None


def part(name, i):
    """The i-th /-separated part of a case name (0: the family)."""
    parts = name.split("/")
    return parts[i] if i < len(parts) else None


def size(label):
    """64B, 64KiB, 1MiB -> bytes."""
    m = re.fullmatch(r"(\d+)(B|KiB|MiB)", label or "")
    return int(m.group(1)) * SIZE_UNITS[m.group(2)] if m else None


def in_order(d, order):
    """d's items in the order of the keys of `order`."""
    return [(k, d[k]) for k in order if k in d]


def main(results, out_dir, load_files=()):
    data = json.loads(Path(results).read_text())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    latency = defaultdict(dict)   # mode -> bytes -> p50 us (ack)
    echo = defaultdict(dict)
    throughput = defaultdict(dict)  # transport -> threads -> calls/s
    for b in data["benchmarks"]:
        if b.get("run_type") != "iteration" or b.get("error_occurred"):
            continue
        name = b["name"]
        if name.startswith("BM_Bulk/"):
            op = part(name, 2)
            target = latency if op == "ack" else echo if op == "echo" else None
            if target is not None:
                target[part(name, 1)][size(part(name, 3))] = b["p50_us"]
        elif name.startswith("BM_PoolThroughput/"):
            throughput[part(name, 1)][arg(name, "threads")] = b["items_per_second"]

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, points in in_order(latency, BULK_MODES):
        xs = sorted(points)
        ax.plot([x / 1024 for x in xs], [points[x] for x in xs], marker="o", label=BULK_MODES[mode])
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("payload (KiB)")
    ax.set_ylabel("p50 latency, payload to Python and ack (us)")
    ax.set_title("shmpool: latency vs payload size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency_vs_size.svg")
    fig.savefig(out / "latency_vs_size.png", dpi=90)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for transport, points in in_order(throughput, POOL_TRANSPORTS):
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], marker="o", label=POOL_TRANSPORTS[transport])
    ax.set_xscale("log", base=2)
    ax.set_xlabel("caller threads")
    ax.set_ylabel("calls/s (ping)")
    ax.set_title("shmpool: pool throughput vs callers (2 workers)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "calls_vs_callers.svg")
    fig.savefig(out / "calls_vs_callers.png", dpi=90)

    ctx = data.get("context", {})
    lines = [f"Machine: {ctx.get('cpu_model', '?')}, {ctx.get('num_cpus', '?')} CPUs, "
             f"kernel {ctx.get('kernel', '?')}, {ctx.get('compiler', '?')} "
             f"({ctx.get('build_flags', '?')}), wait {ctx.get('wait_strategy', '?')}.", ""]
    modes = [m for m, _ in in_order(latency, BULK_MODES)]
    lines += ["| payload | " + " | ".join(f"{BULK_MODES[m]} p50 (us)" for m in modes) + " |",
              "|---:|" + "---:|" * len(latency)]
    for n in sorted({s for p in latency.values() for s in p}):
        cells = [f"{latency[m].get(n, float('nan')):.1f}" for m in modes]
        lines.append(f"| {n // 1024} KiB | " + " | ".join(cells) + " |")
    pools = [t for t, _ in in_order(throughput, POOL_TRANSPORTS)]
    lines += ["", "| callers | " + " | ".join(f"{POOL_TRANSPORTS[t]} calls/s" for t in pools) + " |",
              "|---:|" + "---:|" * len(throughput)]
    for threads in sorted({n for p in throughput.values() for n in p}):
        cells = [f"{throughput[t].get(threads, float('nan')):.0f}" for t in pools]
        lines.append(f"| {threads} | " + " | ".join(cells) + " |")
    if load_files:
        lines += [""] + plot_load(load_files, out)
    (out / "bench.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'latency_vs_size.svg'}, {out / 'calls_vs_callers.svg'}, {out / 'bench.md'}")


TRANSPORTS = {"shm": "shm", "pipe_json": "pipe_json", "zmq": "zmq"}
LOAD_CASES = ["BM_Ping", "BM_PingCold", "BM_SmallArgs", "BM_PoolPing"]


def plot_load(files, out):
    """busy_machine.svg and its Markdown table from the --load JSON files."""
    # (case, loops, transport) -> (p50, p99); throughput: (threads, loops, transport) -> calls/s
    lat, calls = {}, {}
    levels = []
    for f in files:
        m = re.search(r"load(\d+)\.json$", f)
        if not m:
            sys.exit(f"{f}: expected a name ending in loadN.json")
        loops = int(m.group(1))
        levels.append(loops)
        for b in json.loads(Path(f).read_text())["benchmarks"]:
            name = b["name"]
            if b.get("error_occurred"):
                continue
            case = name.split("/")[0]
            t = part(name, 1)
            # The repeated pings count by the median of their repetitions.
            median = b.get("run_type") == "aggregate" and b.get("aggregate_name") == "median"
            if case in LOAD_CASES and "p50_us" in b and (median or b.get("run_type") == "iteration"):
                if median or (case, loops, t) not in lat:
                    lat[(case, loops, t)] = (b["p50_us"], b["p99_us"])
            elif case == "BM_PoolThroughput" and b.get("run_type") == "iteration":
                calls[(arg(name, "threads"), loops, t)] = b["items_per_second"]
    levels.sort()
    cases = [c for c in LOAD_CASES if any(k[0] == c for k in lat)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    groups = [(c, n) for c in cases for n in levels]
    width = 0.8 / len(TRANSPORTS)
    for i, (t, label) in enumerate(TRANSPORTS.items()):
        xs = [g + i * width for g in range(len(groups))]
        for ax, which in zip(axes, (0, 1)):
            ax.bar(xs, [lat.get((c, n, t), (0, 0))[which] for c, n in groups], width, label=label)
    for ax, title in zip(axes, ("p50", "p99")):
        ax.set_yscale("log")
        ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))])
        ax.set_xticklabels([f"{c[3:]}\n{n} busy" for c, n in groups], fontsize=7)
        ax.set_ylabel(f"{title} latency (us)")
        ax.set_title(f"{title} beside 0..{levels[-1]} busy loops")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "busy_machine.svg")
    fig.savefig(out / "busy_machine.png", dpi=90)
    lines = ["| case | busy loops | " + " | ".join(f"{t} p50 / p99 (us)" for t in TRANSPORTS.values())
             + " | pipe_json / shm p50 |", "|---|---:|" + "---:|" * (len(TRANSPORTS) + 1)]
    for c, n in groups:
        cells = [lat.get((c, n, t)) for t in TRANSPORTS]
        shm, pipe = cells[0], cells[1]
        lines.append(f"| {c} | {n} | " + " | ".join(f"{v[0]:.2f} / {v[1]:.2f}" if v else "-" for v in cells)
                     + f" | {pipe[0] / shm[0]:.1f}x |" if shm and pipe else " | - |")
    lines += ["", "| pool ping calls/s | busy loops | " + " | ".join(TRANSPORTS.values())
              + " | shm / pipe_json |", "|---|---:|" + "---:|" * (len(TRANSPORTS) + 1)]
    for threads in sorted({k[0] for k in calls}):
        for n in levels:
            cells = [calls.get((threads, n, t), 0) for t in TRANSPORTS]
            ratio = f"{cells[0] / cells[1]:.1f}x" if cells[1] else "-"
            lines.append(f"| {threads} callers | {n} | " + " | ".join(f"{v:.0f}" for v in cells)
                         + f" | {ratio} |")
    print(f"wrote {out / 'busy_machine.svg'}")
    return lines


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print(__doc__)
        sys.exit(2)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
