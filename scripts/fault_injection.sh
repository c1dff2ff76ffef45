#!/usr/bin/env bash
# Issue 30's fault-injection suite in its long mode, for the figures in the
# README's reliability section:
#   scripts/fault_injection.sh [KILLS]    # default 60 SIGKILLs (CI runs 6)
# Each kill lands at a random moment of a small nst-train run (start-up, a
# step, a checkpoint write); the run is resumed until it finishes and its
# final weights and optimizer state are compared, bit for bit, with an
# uninterrupted run's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
NST_FAULT_KILLS="${1:-60}" cargo test --workspace --locked --test cli_faults -- --nocapture 2>&1 \
  | grep -E "^fault injection|test result|panicked" 
