#!/usr/bin/env bash
# Runs `concord bench` under `perf record -a` and prints, for every anchor and scenario
# round, the CPU each process spent per operation (core-µs/op): where a scenario's cost
# goes (Concord's process, which also runs the load generator; PostgreSQL; the S3 server),
# next to its anchor's. It needs perf (Debian: apt-get install linux-perf) and a built
# .bin/concord, and takes the bench's environment (CONCORD_S3_ENDPOINT, ...).
#
#   scripts/bench-cpu.sh 's5-binary-4k' 4s
#   scripts/bench-cpu.sh 'thin-slice-read' 3s
#
# Each phase's window is read from the bench's JSON record (its time is the phase's end),
# less 0.2 s at each edge; samples are taken at 997 Hz on every CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scenarios=${1:?usage: scripts/bench-cpu.sh SCENARIOS [DURATION]}
duration=${2:-4s}
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
json="$data/run.jsonl"
perf record -q -k CLOCK_REALTIME -a -F 997 -o "$data/perf.data" -- \
	.bin/concord bench --duration "$duration" --scenarios "$scenarios" --json "$json" >"$data/bench.txt"
grep -E '^ +[a-z0-9-]+ ' "$data/bench.txt" || true
python3 - "$json" "$data/perf.data" <<'EOF'
import datetime, json, re, subprocess, sys

records, perf = sys.argv[1], sys.argv[2]
for line in open(records):
    r = json.loads(line)
    end = datetime.datetime.fromisoformat(r["time"].replace("Z", "")[:26]).replace(tzinfo=datetime.timezone.utc).timestamp()
    elapsed = r["elapsed_ms"] / 1000
    window = (end - elapsed + 0.2, end - 0.2)
    out = subprocess.run(["perf", "report", "-i", perf, "--time", "%.3f,%.3f" % window, "--sort", "comm", "-q",
                          "-F", "sample,comm"], capture_output=True, text=True).stdout
    rate = r["ops"] / elapsed
    per = []
    for row in out.splitlines():
        m = re.match(r"\s*(\d+)\s+(.*)", row)
        if m:
            per.append((int(m.group(1)) / 997 / (window[1] - window[0]) * 1e6 / rate, m.group(2).strip()))
    top = " ".join("%s=%.0f" % (comm[:12], us) for us, comm in sorted(per, reverse=True)[:6])
    print("%-20s round %d %8.0f ops/s  core-us/op: %s" % (r["name"], r["round"], rate, top))
EOF
