"""Guided-transfer check: for each region of the content mask, the mean colour
of the output there, and its distance to the mean colour of every style region.
A region passes when its own style region is the nearest.

usage: region_colors.py OUT CONTENT_MASK STYLE STYLE_MASK
Masks are snapped to their dominant colours (>= 1% of pixels) like nst's
masks.rs; colours within 8/255 per channel pair up."""
import sys

import numpy as np
import skimage.io as io
import skimage.transform as T


def rgb(p):
    x = io.imread(p)
    if x.ndim == 2:
        x = np.stack([x] * 3, -1)
    return x[..., :3].astype(np.float64) / (65535.0 if x.dtype == np.uint16 else 255.0)


def labels(mask):
    m = (mask * 255).round().astype(int).reshape(-1, 3)
    cols, counts = np.unique(m, axis=0, return_counts=True)
    dom = cols[counts >= 0.01 * len(m)]
    d = ((m[:, None, :] - dom[None]) ** 2).sum(-1)
    return dom, d.argmin(1).reshape(mask.shape[:2])


out, cmask, style, smask = (rgb(p) for p in sys.argv[1:5])
cmask = T.resize(cmask, out.shape[:2], order=0, anti_aliasing=False)
smask = T.resize(smask, style.shape[:2], order=0, anti_aliasing=False)
cdom, cl = labels(cmask)
sdom, sl = labels(smask)
smeans = {tuple(c): style[sl == i].mean(0) for i, c in enumerate(sdom)}
ok = 0
rows = []
for i, c in enumerate(cdom):
    match = [s for s in smeans if np.abs(np.array(s) - c).max() <= 8]
    if not match:
        continue
    o = out[cl == i].mean(0)
    dists = {s: np.linalg.norm(o - m) for s, m in smeans.items()}
    nearest = min(dists, key=dists.get)
    good = nearest == match[0]
    ok += good
    share = (cl == i).mean()
    rows.append(f"region #{c[0]:02x}{c[1]:02x}{c[2]:02x} ({share:5.1%}): output mean {np.round(o, 3)}, own style region at {dists[match[0]]:.3f}, nearest other {min(v for s, v in dists.items() if s != match[0]) if len(dists) > 1 else float('nan'):.3f} -> {'ok' if good else 'MISMATCH'}")
print("\n".join(rows))
print(f"{ok}/{len(rows)} regions take the mean colour of their own style region")
