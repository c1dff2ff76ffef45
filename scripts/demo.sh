#!/usr/bin/env bash
# Sets everything up (idempotent) and writes out/demo.png: scikit-image's
# astronaut photo in the style of its coffee photo, by Gatys with the real
# ImageNet VGG19, on the CPU (or CUDA when available). About 2 minutes on
# 2 CPU cores after the first build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh --quiet
cargo run --release --locked --bin nst-infer -- gatys \
  --content samples/content/astronaut.png --style samples/style/coffee.png \
  --out out/demo.png --size 384 --steps 150 --seed 0 "$@"
echo "demo: open out/demo.png"
