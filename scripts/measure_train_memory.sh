#!/usr/bin/env bash
# Measures the peak resident memory of one nst-train step per model kind at
# two crop sizes and prints the slope in bytes per crop pixel per batch
# element (one content + one style image; texture models: one style image),
# the figure nst-train's memory check uses (TrainModel::step_bytes_per_pixel
# in each model crate).
#
# Usage: scripts/measure_train_memory.sh [CROP_A CROP_B] [BATCH]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
a="${1:-96}"
b="${2:-192}"
batch="${3:-2}"
bin=target/release/nst-train
[ -x "$bin" ] || cargo build --release --locked --bin nst-train
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

peak_kb() { # config, crop -> peak RSS in kB of a 2-step run at model defaults
  local cfg="$1" crop="$2"
  NST_SKIP_MEMORY_CHECK=1 /usr/bin/time -f '%M' -o "$out/rss" "$bin" --config "configs/$cfg.toml" \
    --set train.steps=2 --set "data.crop=$crop" --set "data.resize_shorter=$crop" \
    --set "data.batch_size=$batch" --set log.tensorboard=false \
    --set "train.checkpoint_dir=\"$out/ck\"" --set "train.run=\"m\"" \
    --set 'data.content={kind="folder",root="samples/content"}' \
    --set 'data.style={kind="folder",root="samples/style"}' \
    --device cpu -q >/dev/null 2>"$out/err" \
    || { echo "failed: $cfg at $crop ($(tail -1 "$out/err"))" >&2; exit 1; }
  rm -rf "$out/ck"
  cat "$out/rss"
}

printf '%-12s %10s %10s %14s\n' kind "MB@$a" "MB@$b" "bytes/pixel"
for cfg in adain vae_adain decoders puy_perez propo; do
  ka="$(peak_kb "$cfg" "$a")"
  kb="$(peak_kb "$cfg" "$b")"
  slope=$(( (kb - ka) * 1024 / (batch * (b * b - a * a)) ))
  printf '%-12s %10d %10d %14d\n' "$cfg" $((ka / 1024)) $((kb / 1024)) "$slope"
done
