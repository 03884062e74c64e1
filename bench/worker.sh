#!/usr/bin/env bash
# bench/worker.sh - drain rate of N `test.noop` tasks (Celery protocol v2,
# msgpack, as `warren send --from` publishes them) by four consumers in turn,
# in one run against one private broker:
#
#   raw       plain rabbitmq-c consume + one ack per message (bench/consume_raw.c),
#             prefetch 8 = the workers' 2 x 4
#   threads   warren-worker --pool threads --concurrency 2
#   prefork   warren-worker --pool prefork --concurrency 2
#   celery    Celery 5.2 worker -P prefork -c 2 (tests/interop/celery_app.py)
#
# Every consumer gets a fresh queue preloaded with the same N messages; results
# are disabled on both sides (warren --result-backend none, Celery
# CELERY_RESULT_BACKEND=disabled), prefetch multiplier 4 and log level warning
# for all. bench/drain_watch.c times each drain from the first message taken to
# an empty queue and samples the consumer's memory (VmRSS/VmHWM and PSS summed
# over the process and its children); after each drain rabbitmqctl must show
# every message acked. ROUNDS rounds; the table shows each peer's median rate
# and highest memory (summed VmHWM, which the aim is judged on, and summed
# PSS, which counts pages shared between the processes once), and the median
# of the per-round ratios. Not a test: `make test` does not run it.
#
#   bench/worker.sh [N] [ROUNDS]     (defaults 20000 3; needs build/ or $BUILD)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-20000}
rounds=${2:-3}
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
name=${BENCH_BROKER_NAME:-bench}
work=$(mktemp -d)
started=0
pids=() # process groups we started (setsid: the pid is the group id)

cleanup() {
	for p in "${pids[@]}"; do
		kill -KILL -- "-$p" 2>/dev/null || true
	done
	[ $started = 1 ] && "$top/scripts/rabbitmq-local" stop --name "$name" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for f in bin/warren bin/warren-worker plugins/test.so; do
	[ -e "$build/$f" ] || { echo "worker.sh: $build/$f not built (make, or set BUILD=)" >&2; exit 1; }
done
/usr/bin/python3 -c 'import celery' 2>/dev/null || { echo "worker.sh: Celery is not installed for /usr/bin/python3" >&2; exit 1; }
rmq_cflags=$(pkg-config --cflags --libs librabbitmq 2>/dev/null || echo -lrabbitmq)
for t in consume_raw drain_watch; do
	cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -o "$work/$t" "$top/bench/$t.c" $rmq_cflags
done

url=$("$top/scripts/rabbitmq-local" start --name "$name")
started=1
port=${url##*:}; port=${port%%/*}
node_dir=$top/.run/rabbitmq-$name

# rabbitmqctl for the private node (its HOME holds the cookie, its own epmd).
ctl() {
	HOME=$node_dir/home ERL_EPMD_PORT=$(cat "$node_dir/epmdport") \
		/usr/lib/rabbitmq/bin/rabbitmqctl -q -n "$(cat "$node_dir/nodename")" "$@"
}

for ((i = 0; i < n; i++)); do echo '{"task": "test.noop", "args": []}'; done >"$work/tasks.jsonl"

# Puts N fresh messages in queue $1 (declared as Celery declares it).
preload() {
	ctl delete_queue "$1" >/dev/null 2>&1 || true
	"$build/bin/warren" --broker "$url" send --queue "$1" --from "$work/tasks.jsonl" 2>"$work/preload.log" ||
		{ cat "$work/preload.log" >&2; exit 1; }
}

# Every message acked: the queue holds none, ready or unacked (within 30 s).
all_acked() {
	local q=$1 line
	for _ in $(seq 1 60); do
		line=$(ctl list_queues name messages messages_unacknowledged | awk -v q="$q" '$1 == q')
		[ "$(echo "$line" | awk '{print $2 + $3}')" = 0 ] && return 0
		sleep 0.5
	done
	echo "worker.sh: queue $q not drained and acked: $line" >&2
	return 1
}

# Runs consumer $1 (a label) as a command in the remaining args on queue
# bench.$1 and appends "label rate hwm_kb pss_kb" to $work/results.
drain() {
	local label=$1 q=bench.$1
	shift
	preload "$q"
	setsid "$@" >"$work/$label.log" 2>&1 </dev/null &
	local pid=$!
	pids+=("$pid")
	local out
	if ! out=$("$work/drain_watch" 127.0.0.1 "$port" "$q" "$n" "$pid" 600); then
		echo "worker.sh: $label did not drain; its log:" >&2
		tail -n 20 "$work/$label.log" >&2
		exit 1
	fi
	all_acked "$q"
	# Warm shutdown for the workers; the raw consumer has exited by itself.
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL -- "-$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	echo "  $label: $out"
	echo "$label $(echo "$out" | awk '{print $6, $11, $13}')" >>"$work/results"
}

worker=("$build/bin/warren-worker" --broker "$url" --plugin "$build/plugins/test.so"
	--concurrency 2 --prefetch-multiplier 4 --result-backend none --loglevel warning)
celery=(env -C "$top/tests/interop" WARREN_TEST_BROKER="$url" CELERY_RESULT_BACKEND=disabled
	/usr/bin/python3 -m celery -A celery_app worker -P prefork -c 2 --prefetch-multiplier 4
	--without-gossip --without-mingle --without-heartbeat --loglevel WARNING)

echo "bench/worker.sh: $n test.noop tasks, $rounds round(s), broker $url, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= rounds; r++)); do
	echo "round $r"
	drain raw "$work/consume_raw" 127.0.0.1 "$port" bench.raw "$n" 8
	drain threads "${worker[@]}" --pool threads -Q bench.threads
	drain prefork "${worker[@]}" --pool prefork -Q bench.prefork
	drain celery "${celery[@]}" -Q bench.celery
done

# The table: each peer's median rate and highest memory; the ratios are the
# median of the per-round ratios (peers of one round shared the machine's
# load most closely).
awk -v rounds="$rounds" '
function median(arr, m,   i, j, t) {
	for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
	return m % 2 ? arr[(m + 1) / 2] : (arr[m / 2] + arr[m / 2 + 1]) / 2
}
{ cnt[$1]++; rate[$1, cnt[$1]] = $2; if ($3 > mem[$1]) mem[$1] = $3; if ($4 > pss[$1]) pss[$1] = $4 }
END {
	split("raw threads prefork celery", order, " ")
	printf "\n%-9s %12s %14s %14s\n", "consumer", "tasks/s", "peak RSS (MB)", "peak PSS (MB)"
	for (i = 1; i <= 4; i++) {
		l = order[i]
		for (k = 1; k <= cnt[l]; k++) a[k] = rate[l, k]
		printf "%-9s %12.0f %14.1f %14.1f\n", l, median(a, cnt[l]), mem[l] / 1024, pss[l] / 1024
	}
	for (k = 1; k <= rounds; k++) {
		tr[k] = rate["threads", k] / rate["raw", k]
		tc[k] = rate["threads", k] / rate["celery", k]
		pc[k] = rate["prefork", k] / rate["celery", k]
	}
	printf "\nthreads/raw    %5.2f  (aim >= 0.70)\n", median(tr, rounds)
	printf "threads/celery %5.2f  (aim >= 5)\n", median(tc, rounds)
	printf "prefork/celery %5.2f  (aim >= 3)\n", median(pc, rounds)
	printf "RSS celery/threads %5.1f, celery/prefork %5.1f  (aim >= 10)\n",
		mem["celery"] / mem["threads"], mem["celery"] / mem["prefork"]
	printf "PSS celery/threads %5.1f, celery/prefork %5.1f\n",
		pss["celery"] / pss["threads"], pss["celery"] / pss["prefork"]
	printf "(rates: median of %d round(s), ratios: median of the per-round ratios;\n", rounds
	printf " RSS: highest sum of VmHWM over the worker and its children;\n"
	printf " PSS: highest sampled sum of Pss (smaps_rollup) over the same processes)\n"
}' "$work/results"
