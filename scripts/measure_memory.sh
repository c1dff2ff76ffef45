#!/usr/bin/env bash
# Measures the peak resident memory of each nst-infer command at two working
# sizes and prints the slope in bytes per pixel of one image, the figure the
# commands' memory check uses (nst_core::memory; the constants are in
# crates/nst-cli/src/*.rs next to each command).
#
# Usage: scripts/measure_memory.sh CK_DIR [SIZE_A SIZE_B]
#        scripts/measure_memory.sh CK_DIR --budget SIZE_LIMIT SIZE
# The second form checks the plan under a memory budget instead: each command
# runs once at SIZE with --max-memory SIZE_LIMIT (e.g. 600M), tiled when the
# whole image does not fit, and the peak resident memory is printed beside
# the budget. A command whose peak exceeds the budget is marked OVER (the
# script then exits 1); one that refuses the size prints its error line.
# CK_DIR holds one run per learned model, made with the models' default
# widths (one training step is enough: memory does not depend on training):
#   for c in adain vae_adain decoders puy_perez propo; do
#     nst-train --config configs/$c.toml --set train.steps=1 --set data.crop=64 \
#       --set 'data.content={kind="folder",root="samples/content"}' \
#       --set 'data.style={kind="folder",root="samples/style"}' \
#       --set "train.run=\"mem_$c\"" --set "train.checkpoint_dir=\"$CK_DIR\""
#   done
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
ck="${1:?usage: scripts/measure_memory.sh CK_DIR [SIZE_A SIZE_B]}"
budget=""
if [ "${2:-}" = "--budget" ]; then
  budget="${3:?--budget needs a size such as 600M}"
  a="${4:?--budget needs the working size}"
  b="$a"
else
  a="${2:-256}"
  b="${3:-512}"
fi
bin=target/release/nst-infer
[ -x "$bin" ] || cargo build --release --locked --bin nst-infer
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
s=samples/style/coffee.png
t=samples/texture/brick.png

peak_kb() { # peak RSS in kB of one command
  /usr/bin/time -f '%M' -o "$out/rss" "$bin" "$@" --device cpu -q >/dev/null 2>"$out/err" \
    || { echo "failed: $bin $* ($(tail -1 "$out/err"))" >&2; exit 1; }
  cat "$out/rss"
}

# The budget in bytes, as nst-infer reads it (K/M/G/T are powers of 1024).
to_bytes() {
  local v="${1%[KkMmGgTt]}" u="${1: -1}"
  case "$u" in
    [Kk]) echo "$v * 1024" | bc ;; [Mm]) echo "$v * 1024^2" | bc ;;
    [Gg]) echo "$v * 1024^3" | bc ;; [Tt]) echo "$v * 1024^4" | bc ;;
    *) echo "$1" ;;
  esac
}
over=0
if [ -n "$budget" ]; then
  limit_mb=$(( $(to_bytes "$budget" | cut -d. -f1) / 1048576 ))
  printf '%-22s %10s %10s %8s\n' command "MB@$a" "budget MB" ratio
  row() { # name, the size flag's value is substituted for @
    local name="$1"; shift
    local args=("${@//@/$a}" --max-memory "$budget") kb
    if ! /usr/bin/time -f '%M' -o "$out/rss" "$bin" "${args[@]}" --device cpu >/dev/null 2>"$out/err"; then
      printf '%-22s refused: %s\n' "$name" "$(grep -v '^note' "$out/err" | tail -1)"
      return 0
    fi
    kb="$(cat "$out/rss")"
    local flag=""
    if [ $((kb / 1024)) -gt "$limit_mb" ]; then flag=" OVER"; over=1; fi
    printf '%-22s %10d %10d %8.2f%s  %s\n' "$name" $((kb / 1024)) "$limit_mb" \
      "$(echo "$kb / 1024 / $limit_mb" | bc -l)" "$flag" "$(grep -m1 '^note' "$out/err" | cut -c1-80)"
  }
else
printf '%-22s %10s %10s %14s\n' command "MB@$a" "MB@$b" "bytes/pixel"
row() { # name, the size flag's value is substituted for @
  local name="$1"; shift
  local args_a=("${@//@/$a}") args_b=("${@//@/$b}")
  local ka kb pa pb
  ka="$(peak_kb "${args_a[@]}")"
  kb="$(peak_kb "${args_b[@]}")"
  # pixels of one square image at each size (--size is the long side; the
  # samples used here are resized to a square or near-square working size)
  pa=$((a * a)); pb=$((b * b))
  printf '%-22s %10d %10d %14.0f\n' "$name" $((ka / 1024)) $((kb / 1024)) \
    "$(echo "($kb - $ka) * 1024 / ($pb - $pa)" | bc -l)"
}
fi

row gatys gatys --content $t --style $s --size @ --steps 3 --out "$out/o.png"
row strotss strotss --content $t --style $s --size @ --scales 1 --steps 2 --out "$out/o.png"
row texture-gatys texture --method gatys --target $t --size @ --count 1 --steps 3 --out-dir "$out"
row texture-propo texture --method propo --checkpoint "$ck/mem_propo" --target $t --size @ --count 1 --batch 1 --out-dir "$out"
row adain adain --checkpoint "$ck/mem_adain" --content $t --style $s --size @ --out "$out/o.png"
row vae-adain vae-adain --checkpoint "$ck/mem_vae_adain" --content $t --style $s --size @ --out "$out/o.png"
row optex optex --checkpoint "$ck/mem_decoders" --style $t --size @ --out "$out/o.png"
row adain-wct adain-wct --checkpoint "$ck/mem_decoders" --method wct --content $t --style $s --size @ --out "$out/o.png"
row puy-perez puy-perez --checkpoint "$ck/mem_puy_perez" --content $t --style $s --size @ --out "$out/o.png"
row puy-perez-photoreal puy-perez --checkpoint "$ck/mem_puy_perez" --content $t --style $s --size @ --photoreal --out "$out/o.png"
exit "$over"
