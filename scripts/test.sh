#!/usr/bin/env bash
# Sets everything up (idempotent) and runs the whole test suite on the CPU.
# This is the README's test command, and what CI runs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh --quiet
# Tests compare against PyTorch references on the CPU; keep LibTorch's thread
# pools to the machine's cores.
cargo test --workspace --locked "$@"
