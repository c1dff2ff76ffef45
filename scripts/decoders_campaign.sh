#!/usr/bin/env bash
# The decoders' CPU training campaign (issue 28), one command per stage:
#   scripts/decoders_campaign.sh start     # corpus if missing, then train (or resume) under nice, in the background
#   scripts/decoders_campaign.sh status    # step, loss terms, s/step of the running run
#   scripts/decoders_campaign.sh psnr      # held-out PSNR per level of the latest checkpoint (fp32, 256 px)
#   scripts/decoders_campaign.sh stop      # SIGINT: the trainer writes a checkpoint and exits; waits for it
# Extra arguments to start are passed to nst-train on resume (e.g. --set optim.lr=5e-4).
# THREADS=1 scripts/decoders_campaign.sh start trains on one core (LibTorch's
# OpenMP pool spins badly when it shares the cores with other work).
# The run lives in checkpoints/decoders_campaign (ignored by git) and
# runs/decoders_campaign (TensorBoard); its log in checkpoints/decoders_campaign.log.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
run=checkpoints/decoders_campaign
pidfile=$run.pid
log=$run.log
bin=target/release/nst-train
running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
case "${1:-}" in
  start)
    shift
    running && { echo "already running (pid $(cat "$pidfile"))"; exit 0; }
    [ -f datasets/corpus/photos/manifest.csv ] || datasets/fetch.sh corpus
    cargo build --release --locked --bin nst-train --bin nst-infer
    # A copy of the binary: rebuilding while it trains must not touch it.
    mkdir -p "$run" && cp "$bin" "$run.bin"
    if [ -f "$run/latest" ]; then
      args=(--resume "$run" "$@")
    else
      args=(--config configs/decoders_campaign.toml "$@")
    fi
    echo "=== $(date -u +%FT%TZ) start: ${args[*]}" >> "$log"
    [ -n "${THREADS:-}" ] && export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
    setsid nice -n 10 "$run.bin" "${args[@]}" >> "$log" 2>&1 < /dev/null &
    echo $! > "$pidfile"
    echo "training in the background (pid $!); log $log"
    ;;
  stop)
    running || { echo "not running"; exit 0; }
    pid="$(cat "$pidfile")"
    kill -INT "$pid"
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && { echo "still running after 10 min" >&2; exit 1; }
    rm -f "$pidfile"
    echo "=== $(date -u +%FT%TZ) stopped at $(cat "$run/latest")" >> "$log"
    echo "stopped; latest checkpoint $(cat "$run/latest")"
    ;;
  status)
    running && echo "running (pid $(cat "$pidfile"))" || echo "not running"
    [ -f "$run/latest" ] && echo "latest checkpoint: $(cat "$run/latest")"
    .venv/bin/python scripts/scalars.py runs/decoders_campaign --every 50 | tail -4
    ;;
  psnr)
    target/release/nst-infer decoders-psnr --checkpoint "$run" --images samples/heldout --size 256 --device cpu
    ;;
  *)
    sed -n '2,9p' "$0"; exit 2 ;;
esac
