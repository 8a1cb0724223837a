#!/bin/sh
# Resident size of the Toolforge job under load: the exact command of
# deploy/toolforge/jobs.yaml, fed by `rcwatch replay` at RATE events/s for
# DURATION seconds; prints "seconds rss_mib published" every STEP seconds.
# Usage: [RCWATCH_BIN=path] deploy/toolforge/memory.sh [RATE] [DURATION] [STEP]   (from the repository root)
set -eu
RATE=${1:-100}
DURATION=${2:-600}
STEP=${3:-30}
work=$(mktemp -d)
trap 'kill $job $replay 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/home/bin" "$work/tmp"
if [ -n "${RCWATCH_BIN:-}" ]; then cp "$RCWATCH_BIN" "$work/home/bin/rcwatch"
else CGO_ENABLED=0 go build -o "$work/home/bin/rcwatch" ./cmd/rcwatch; fi
"$work/home/bin/rcwatch" replay --listen 127.0.0.1:18092 --loop --rate "$RATE" --log-level warn &
replay=$!
cmd=$(sed -n '/^  command: >-$/,/^  [a-z-]*:/p' deploy/toolforge/jobs.yaml | sed '1d;$d' | tr -s ' \n' ' ')
TOOL_DATA_DIR="$work/home" HOME="$work/home" TMPDIR="$work/tmp" RCWATCH_OPS_PORT=19090 \
  RCWATCH_SOURCE=http://127.0.0.1:18092/v2/stream/recentchange RCWATCH_ENRICH=false \
  /bin/sh -c -- "$cmd" >"$work/job.log" 2>&1 &
job=$!
t=0
while [ "$t" -le "$DURATION" ]; do
  rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$job/status")
  pub=$(curl -s http://127.0.0.1:19090/metrics | awk '/^rcwatch_ingest_events_published_total/ {print $2}')
  echo "$t $rss ${pub:-0}"
  sleep "$STEP"
  t=$((t + STEP))
done
kill -TERM "$job"
wait "$job" && echo "exit 0 after SIGTERM"
