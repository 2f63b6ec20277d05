"""Plots and a Markdown table from a shmpool_bench JSON file.

    python3 bench/plot.py RESULTS.json OUT_DIR

Writes OUT_DIR/latency_vs_size.svg (and .png) (p50 latency of handing a payload to
Python and getting the ack, by payload size, one line per transport),
OUT_DIR/calls_vs_callers.svg (pool calls/s by number of caller threads, one
line per transport) and OUT_DIR/bench.md (the same numbers as tables, with
the machine). Needs Debian's python3-matplotlib.
"""

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BULK_MODES = {0: "shm (in place)", 1: "shm (copy)", 2: "pipe_json", 3: "zmq"}
POOL_TRANSPORTS = {0: "shm pool", 1: "pipe_json pool", 2: "zmq (2 REP workers)"}


def arg(name, key):
    m = re.search(key + r":(\d+)", name)
    return int(m.group(1)) if m else None


def main(results, out_dir):
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
            target = latency if arg(name, "op") == 0 else echo if arg(name, "op") == 1 else None
            if target is not None:
                target[arg(name, "mode")][arg(name, "bytes")] = b["p50_us"]
        elif name.startswith("BM_PoolThroughput/"):
            throughput[arg(name, "transport")][arg(name, "threads")] = b["items_per_second"]

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, points in sorted(latency.items()):
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
    for transport, points in sorted(throughput.items()):
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
    lines += ["| payload | " + " | ".join(f"{BULK_MODES[m]} p50 (us)" for m in sorted(latency)) + " |",
              "|---:|" + "---:|" * len(latency)]
    for size in sorted({s for p in latency.values() for s in p}):
        cells = [f"{latency[m].get(size, float('nan')):.1f}" for m in sorted(latency)]
        lines.append(f"| {size // 1024} KiB | " + " | ".join(cells) + " |")
    lines += ["", "| callers | " + " | ".join(f"{POOL_TRANSPORTS[t]} calls/s" for t in sorted(throughput)) + " |",
              "|---:|" + "---:|" * len(throughput)]
    for threads in sorted({n for p in throughput.values() for n in p}):
        cells = [f"{throughput[t].get(threads, float('nan')):.0f}" for t in sorted(throughput)]
        lines.append(f"| {threads} | " + " | ".join(cells) + " |")
    (out / "bench.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'latency_vs_size.svg'}, {out / 'calls_vs_callers.svg'}, {out / 'bench.md'}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    main(sys.argv[1], sys.argv[2])
