#!/usr/bin/env bash
# bench/publish.sh - tasks/s of `warren send --from` (publisher confirms,
# window 1000) beside raw rabbitmq-c publishing the same Celery-shaped
# messages with confirms and the same window (bench/publish_raw.c), in one
# run against a private broker. Not a test: `make test` does not run it.
#
#   bench/publish.sh [N]        (default 20000; needs build/bin/warren or $WARREN)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-20000}
warren=${WARREN:-$top/build/bin/warren}
work=$(mktemp -d)
name=bench
started=0
cleanup() {
	[ $started = 1 ] && "$top/scripts/rabbitmq-local" stop --name "$name" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

[ -x "$warren" ] || { echo "publish.sh: $warren not built (make, or set WARREN=)" >&2; exit 1; }
cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -o "$work/publish_raw" "$top/bench/publish_raw.c" \
	$(pkg-config --cflags --libs librabbitmq 2>/dev/null || echo -lrabbitmq)

url=$("$top/scripts/rabbitmq-local" start --name "$name")
started=1
port=${url##*:}; port=${port%%/*}

for ((i = 0; i < n; i++)); do echo '{"task": "math.add", "args": [2, 3]}'; done >"$work/tasks.jsonl"

# One warm-up round each so neither pays for the broker's first queue.
"$work/publish_raw" 127.0.0.1 "$port" bench.warmup 2000 1000 >/dev/null
"$warren" --broker "$url" send --queue bench.warmup --from "$work/tasks.jsonl" 2>/dev/null || true

raw=$("$work/publish_raw" 127.0.0.1 "$port" bench.raw "$n" 1000)
echo "$raw"
raw_rate=$(echo "$raw" | sed -n 's/.*: \([0-9]*\) tasks\/s/\1/p')

start=$(date +%s.%N)
"$warren" --broker "$url" send --queue bench.warren --from "$work/tasks.jsonl" 2>"$work/warren.log"
end=$(date +%s.%N)
tail -n 1 "$work/warren.log"
warren_rate=$(awk -v n="$n" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", n / (e - s) }')
echo "warren $n tasks (whole command, process start included): $warren_rate tasks/s"
awk -v w="$warren_rate" -v r="$raw_rate" 'BEGIN { printf "ratio warren/raw: %.2f (aim >= 0.80)\n", w / r }'
