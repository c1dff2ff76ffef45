#!/usr/bin/env bash
# Downloads torchvision's ImageNet VGG19 (or VGG16) weights and converts them to
# checkpoints/<arch>_torchvision.safetensors (RGB input in [0, 1], ImageNet mean/std).
# Needs internet access to download.pytorch.org; fails fast and clearly without it.
# If you already have the .pth file: scripts/convert_vgg.py torchvision FILE.pth OUT.safetensors
# Usage: scripts/fetch_torchvision_vgg.sh [vgg19|vgg16]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
arch="${1:-vgg19}"
case "$arch" in
  vgg19) file=vgg19-dcbb9e9d.pth ;;
  vgg16) file=vgg16-397923af.pth ;;
  *) echo "error: unknown architecture $arch (vgg19 or vgg16)" >&2; exit 2 ;;
esac
[ -x .venv/bin/python ] || { echo "error: run scripts/setup.sh first" >&2; exit 1; }
mkdir -p .cache checkpoints
if [ ! -f ".cache/$file" ]; then
  echo "downloading $file ..."
  if ! curl -fL --connect-timeout 10 --max-time 900 -o ".cache/$file.part" "https://download.pytorch.org/models/$file"; then
    rm -f ".cache/$file.part"
    echo "error: could not download $file (no internet access?). Copy it to .cache/$file by hand and re-run." >&2
    exit 1
  fi
  mv ".cache/$file.part" ".cache/$file"
fi
# torchvision names files <arch>-<first 8 hex digits of the sha256>.pth
want="${file#*-}"; want="${want%.pth}"
got="$(sha256sum ".cache/$file" | cut -c1-8)"
[ "$got" = "$want" ] || { echo "error: .cache/$file has sha256 prefix $got, expected $want" >&2; exit 1; }
.venv/bin/python scripts/convert_vgg.py torchvision ".cache/$file" "checkpoints/${arch}_torchvision.safetensors"
