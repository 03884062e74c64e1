#!/usr/bin/env bash
# bench/publish.sh - tasks/s of `warren send --from` (publisher confirms,
# window 1000) beside raw rabbitmq-c publishing the same Celery-shaped
# messages with confirms and the same window (bench/publish_raw.c), in one
# run against a private broker. Not a test: `make test` does not run it.
#
# Both peers are timed from outside as whole processes (start-up, connect and
# the final confirms included), ROUNDS times in alternating order.
#
#   bench/publish.sh [N] [ROUNDS]   (defaults 20000 5; needs build/bin/warren or $WARREN)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-20000}
rounds=${2:-5}
warren=${WARREN:-$top/build/bin/warren}
work=$(mktemp -d)
name=bench
started=0
cleanup() {
	[ $started = 1 ] && "$top/scripts/rabbitmq-local" stop --name "$name" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -x "$warren" ] || { echo "publish.sh: $warren not built (make, or set WARREN=)" >&2; exit 1; }
cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -o "$work/publish_raw" "$top/bench/publish_raw.c" \
	$(pkg-config --cflags --libs librabbitmq 2>/dev/null || echo -lrabbitmq)

url=$("$top/scripts/rabbitmq-local" start --name "$name")
started=1
port=${url##*:}; port=${port%%/*}

for ((i = 0; i < n; i++)); do echo '{"task": "math.add", "args": [2, 3]}'; done >"$work/tasks.jsonl"

node_dir=$top/.run/rabbitmq-$name
ctl() {
	HOME=$node_dir/home ERL_EPMD_PORT=$(cat "$node_dir/epmdport") \
		/usr/lib/rabbitmq/bin/rabbitmqctl -q -n "$(cat "$node_dir/nodename")" "$@"
}
# Seconds a command takes, whole process (start-up and connect included).
timed() {
	local t0 t1
	t0=$(date +%s.%N)
	"$@" >/dev/null
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}

# One warm-up round each so neither pays for the broker's first queue.
"$work/publish_raw" 127.0.0.1 "$port" bench.warmup 2000 1000 >/dev/null
"$warren" --broker "$url" send --queue bench.warmup --from "$work/tasks.jsonl" 2>/dev/null || true
ctl delete_queue bench.warmup >/dev/null

# ROUNDS rounds, the peers' order alternating; each round on empty queues.
# The machine is shared: the per-round ratio moves, the median less so.
echo "publish.sh: $n tasks, $rounds round(s), window 1000, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= rounds; r++)); do
	raw() { timed "$work/publish_raw" 127.0.0.1 "$port" bench.raw "$n" 1000; }
	wrn() { timed "$warren" --broker "$url" send --queue bench.warren --from "$work/tasks.jsonl" 2>"$work/warren.log"; }
	if ((r % 2)); then rs=$(raw); ws=$(wrn); else ws=$(wrn); rs=$(raw); fi
	grep -q "confirmed $n, failed 0" "$work/warren.log" || { cat "$work/warren.log" >&2; exit 1; }
	echo "$rs $ws" | awk -v n="$n" -v r="$r" '{ printf "round %d: raw %.0f tasks/s, warren %.0f tasks/s, ratio %.2f\n", r, n / $1, n / $2, $1 / $2 }' | tee -a "$work/rounds"
	ctl delete_queue bench.raw >/dev/null
	ctl delete_queue bench.warren >/dev/null
done
sort -t' ' -k10 -n "$work/rounds" | awk -v rounds="$rounds" '
{ raw[NR] = $4; w[NR] = $7; ratio[NR] = $10 }
END {
	m = int((NR + 1) / 2)
	printf "\nmedian round: raw %s tasks/s, warren %s tasks/s\nratio warren/raw: %s (aim >= 0.80; median of %d)\n", raw[m], w[m], ratio[m], rounds
}'
