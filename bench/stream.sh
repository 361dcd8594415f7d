#!/usr/bin/env bash
# One benchmark stream pinned to one core, fed from a queue file that may be edited while it runs.
#
#   bench/stream.sh QUEUE CORE PORT
#
# Runs QUEUE's lines one after another, each the arguments of one `bench/ablation.py` call
# (a line without --strategies runs mcts-random), pinned to CORE with `taskset`, with the local
# LLM fleet's servers on PORT and the next ports, one per model (one range per stream). Line i is read only
# when the stream reaches it, so lines not yet reached can be changed or added; a line `STOP`
# ends the stream, which otherwise waits for more. Progress goes to QUEUE.log, output to QUEUE.out.
# Rows are saved as each finishes (bench/results/ablation.json), so stopping a stream loses at
# most the row in progress. Two streams on a 2-core host, e.g.:
#
#   bench/stream.sh /tmp/q0 0 18081 &  bench/stream.sh /tmp/q1 1 18181 &
set -u
if [ $# -ne 3 ]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
queue=$1 core=$2 port=$3
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
cd "$root" || exit 1
i=1
while true; do
  line=$(sed -n "${i}p" "$queue")
  if [ -z "$line" ]; then sleep 20; continue; fi
  if [ "$line" = "STOP" ]; then echo "$(date -u '+%F %T') STOP" >>"$queue.log"; break; fi
  case "$line" in *--strategies*) args=$line ;; *) args="--strategies mcts-random $line" ;; esac
  echo "$(date -u '+%F %T') start $i: $args" >>"$queue.log"
  # shellcheck disable=SC2086 # the line is a list of arguments
  COLT_LOCAL_LLM_PORT=$port taskset -c "$core" "$python" bench/ablation.py $args >>"$queue.out" 2>&1
  rc=$?
  echo "$(date -u '+%F %T') end $i rc=$rc" >>"$queue.log"
  i=$((i + 1))
done
