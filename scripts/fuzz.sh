#!/usr/bin/env bash
# The long mode of the fuzzed-input suite (issue 30): damaged images of the
# six formats, damaged training configs and damaged checkpoints, fed to the
# loaders; prints cases and outcomes per kind of damage, and fails on any
# panic or multi-line refusal.
#   scripts/fuzz.sh            # 5000 cases per kind (a few minutes)
#   scripts/fuzz.sh 20000
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cases="${1:-5000}"
[[ "$cases" =~ ^[1-9][0-9]*$ ]] || { echo "error: scripts/fuzz.sh takes a number of cases per kind (e.g. 5000), not '$cases'" >&2; exit 2; }
NST_FUZZ_CASES="$cases" cargo test --locked -p nst-cli --test fuzz_inputs \
  -- --nocapture --test-threads 1 2>&1 | grep -E "^fuzz|^  |^test |FAILURE|panicked"
