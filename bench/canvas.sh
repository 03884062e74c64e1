#!/usr/bin/env bash
# bench/canvas.sh - end-to-end time of two Celery canvases, each side with its
# own natural client and worker, in one run against one private broker and
# one private Redis (the result backend on both sides: chords need it):
#
#   chain   a 10-link chain math.add(1, 1) | math.add(1) x 9
#   chord   a chord of CHORD_N math.add(i, i) headers and a math.sum body
#
#   warren  bench/canvas_warren.c (libwarren: warren_chain/warren_chord,
#           warren_canvas_send/wait) against ONE
#           warren-worker --pool prefork --concurrency 2
#   celery  bench/canvas_celery.py (Celery 5.2's client, tests/interop/
#           celery_app.py, msgpack) against ONE
#           celery worker -P prefork -c 2 --without-gossip --without-mingle
#           --without-heartbeat
#
# Both workers (prefetch multiplier 4, log level warning, results in Redis,
# each on its own queue) run for the whole run. In each of ROUNDS rounds each
# side's client runs in turn (which side goes first alternates by round),
# times CHAINS chains and one chord, and exits. A client first runs one
# untimed chain (the wait for its worker to be ready; it also opens the
# connections), then times every canvas from before its signatures are built
# to the final result in hand, and checks the result (11, N x (N - 1)). The
# table shows each side's median and Celery/warren (the speed-up). Plain
# chain and plain chord only: Celery 5.2 cannot pack a chain holding a group
# with msgpack. Not a test: `make test` does not run it.
#
#   bench/canvas.sh [ROUNDS] [CHAINS] [CHORD_N]
#                   (defaults 3 7 1000: 21 chains and 3 chords a side;
#                    needs build/ or $BUILD)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}
chains=${2:-7}
chord_n=${3:-1000}
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
name=${BENCH_BROKER_NAME:-bench-canvas}
work=$(mktemp -d)
started=0
started_redis=0
client_pid=
pids=() # process groups we started (setsid: the pid is the group id)

cleanup() {
	trap '' INT TERM # a second Ctrl-C must not cut the clean-up short
	[ -n "$client_pid" ] && kill -KILL "$client_pid" 2>/dev/null || true
	for p in "${pids[@]}"; do
		kill -KILL -- "-$p" 2>/dev/null || true
	done
	[ $started = 1 ] && "$top/scripts/rabbitmq-local" stop --name "$name" >/dev/null 2>&1 || true
	[ $started_redis = 1 ] && "$top/scripts/redis-local" stop --name "$name" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for f in bin/warren-worker lib/libwarren.a plugins/math.so; do
	[ -e "$build/$f" ] || { echo "canvas.sh: $build/$f not built (make, or set BUILD=)" >&2; exit 1; }
done
/usr/bin/python3 -c 'import celery, redis' 2>/dev/null ||
	{ echo "canvas.sh: Celery (with redis) is not installed for /usr/bin/python3" >&2; exit 1; }
msgpack_pc=$(pkg-config --exists msgpack-c 2>/dev/null && echo msgpack-c || echo msgpack)
pkgs="librabbitmq $msgpack_pc yaml-0.1 hiredis jansson"
cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -I"$top/include" $(pkg-config --cflags $pkgs) \
	-o "$work/canvas_warren" "$top/bench/canvas_warren.c" "$build/lib/libwarren.a" \
	$(pkg-config --libs $pkgs) -lpthread -ldl -lm

url=$("$top/scripts/rabbitmq-local" start --name "$name")
started=1
redis=$("$top/scripts/redis-local" start --name "$name")
started_redis=1

# Starts worker $1 (the command in the remaining args) in its own process group.
start_worker() {
	local label=$1
	shift
	setsid "$@" >"$work/$label.worker.log" 2>&1 </dev/null &
	pids+=("$!")
}

# Runs side $1's client (the command in the remaining args) once; appends its
# "canvas seconds send_seconds" lines, labelled, to $work/results.
run_client() {
	local label=$1
	shift
	# The client in the background so a signal's trap runs at once; the
	# clean-up kills it too.
	"$@" >"$work/$label.out" 2>"$work/$label.client.log" </dev/null &
	client_pid=$!
	if ! wait "$client_pid"; then
		echo "canvas.sh: the $label client failed:" >&2
		tail -n 20 "$work/$label.client.log" >&2
		echo "its worker's log:" >&2
		tail -n 20 "$work/$label.worker.log" >&2
		exit 1
	fi
	client_pid=
	awk -v l="$label" '{ print l, $1, $2, $3 }' "$work/$label.out" >>"$work/results"
	awk -v l="$label" '{ s[$1] = s[$1] sprintf(" %.1f", $2 * 1000) } END { for (k in s) printf "  %s %s ms:%s\n", l, k, s[k] }' \
		"$work/$label.out" | sort
}

echo "bench/canvas.sh: $rounds round(s) of $chains chains of 10 and 1 chord of $chord_n a side, broker $url, redis $redis, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

start_worker warren "$build/bin/warren-worker" --broker "$url" --plugin "$build/plugins/math.so" \
	--pool prefork --concurrency 2 --prefetch-multiplier 4 --result-backend "$redis" \
	--loglevel warning -Q bench.canvas.warren
start_worker celery env -C "$top/tests/interop" WARREN_TEST_BROKER="$url" CELERY_RESULT_BACKEND="$redis" \
	/usr/bin/python3 -m celery -A celery_app worker -P prefork -c 2 --prefetch-multiplier 4 \
	--without-gossip --without-mingle --without-heartbeat --loglevel WARNING -Q bench.canvas.celery
warren_client=("$work/canvas_warren" "$url" "$redis" bench.canvas.warren "$chains" 1 "$chord_n")
celery_client=(env WARREN_TEST_BROKER="$url" CELERY_RESULT_BACKEND="$redis"
	/usr/bin/python3 "$top/bench/canvas_celery.py" bench.canvas.celery "$chains" 1 "$chord_n")

for ((r = 1; r <= rounds; r++)); do
	echo "round $r"
	if ((r % 2)); then
		run_client warren "${warren_client[@]}"
		run_client celery "${celery_client[@]}"
	else
		run_client celery "${celery_client[@]}"
		run_client warren "${warren_client[@]}"
	fi
done

# Warm shutdown of both workers; the clean-up kills whatever is left.
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do
	for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
done

awk -v chord_n="$chord_n" '
function median(arr, m,   i, j, t) {
	for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
	return m % 2 ? arr[(m + 1) / 2] : (arr[m / 2] + arr[m / 2 + 1]) / 2
}
{ k = $1 SUBSEP $2; cnt[k]++; v[k, cnt[k]] = $3; snd[k, cnt[k]] = $4 }
END {
	split("chain chord", order, " ")
	name["chain"] = "chain of 10 math.add"
	name["chord"] = "chord of " chord_n " math.add + math.sum"
	printf "\n%-34s %5s %12s %12s %14s   %s\n", "canvas", "runs", "warren (ms)", "celery (ms)",
		"celery/warren", "sending part, warren / celery (ms)"
	for (i = 1; i <= 2; i++) {
		c = order[i]
		for (s = 1; s <= 2; s++) {
			side = s == 1 ? "warren" : "celery"
			k = side SUBSEP c
			for (j = 1; j <= cnt[k]; j++) { a[j] = v[k, j]; b[j] = snd[k, j] }
			med[side] = cnt[k] ? median(a, cnt[k]) : 0
			sm[side] = cnt[k] ? median(b, cnt[k]) : 0
		}
		printf "%-34s %5d %12.1f %12.1f %14.2f   %.1f / %.1f\n", name[c], cnt["warren" SUBSEP c],
			med["warren"] * 1000, med["celery"] * 1000,
			med["warren"] ? med["celery"] / med["warren"] : 0, sm["warren"] * 1000, sm["celery"] * 1000
	}
	printf "(medians of end-to-end time: signatures built, sent, final result read; the sending\n"
	printf " part ends when the send call returns: warren after publisher confirms, Celery\n"
	printf " without; one prefork worker with 2 processes on each side, results in Redis)\n"
}' "$work/results"
