"""Independent STROTSS run (Kolkin et al. 2019) in eager PyTorch, for comparing
nst_optim::Strotss step for step.

Hypercolumns are taken the textbook way: every tap map is upsampled to the
image with bilinear interpolation (align_corners=False) and the sampled pixels
are read from the full maps (nst interpolates at the samples only). The
samples come from torch's global generator in the order nst draws them (per
scale: the style pool, then each step's output locations), so one seed gives
both sides the same locations.

Inputs: c (content [1,3,H,W]), s (style). Options: --weights, --scales,
--steps, --out-samples, --style-samples, --lr, --alpha, --seed.
Outputs: terms [scales·steps, 5] (total, content, moments, remd, palette per
step) and result (the final image in [0, 1])."""
import argparse
import json

import torch
import torch.nn.functional as F
from safetensors import safe_open

from common import io
from vgg_layers import vgg19_features

inp, argv, save = io()
ap = argparse.ArgumentParser()
ap.add_argument("--weights", required=True)
ap.add_argument("--scales", type=int, default=2)
ap.add_argument("--steps", type=int, default=2)
ap.add_argument("--out-samples", type=int, default=256)
ap.add_argument("--style-samples", type=int, default=600)
ap.add_argument("--lr", type=float, default=2e-3)
ap.add_argument("--alpha", type=float, default=1.0)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args(argv)

TAPS = ["relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3", "relu4_1", "relu5_1"]
feats = vgg19_features(a.weights, "max")
with safe_open(a.weights, "pt") as f:
    meta = f.metadata()
# Hypercolumns at torchvision's input scale (1/0.226), times the calibration 0.35.
input_gain = float(meta["input_scale"]) / (sum(json.loads(meta["std"])) / 3)
GAIN = 0.35 / 0.226 / input_gain


def scaled(x, h, w):
    if x.shape[-2:] == (h, w):
        return x
    down = h < x.shape[-2] or w < x.shape[-1]
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=down)


def band(x):
    h, w = x.shape[-2:]
    return x - scaled(scaled(x, max(h // 2, 1), max(w // 2, 1)), h, w)


def split(x, levels=5):
    out = []
    for _ in range(levels):
        h, w = x.shape[-2:]
        if min(h, w) < 2:
            break
        low = scaled(x, h // 2, w // 2)
        out.append(x - scaled(low, h, w))
        x = low
    return out + [x]


def merge(bands):
    x = bands[-1]
    for b in bands[-2::-1]:
        x = b + scaled(x, *b.shape[-2:])
    return x


def locations(h, w, n):
    flat = torch.arange(h * w) if n >= h * w else torch.randperm(h * w)[:n]
    return flat // w, flat % w


def hypercolumn(img, rows, cols):
    h, w = img.shape[-2:]
    maps = feats(img, TAPS)
    full = [scaled(maps[t], h, w) for t in TAPS]
    return torch.cat([m[0][:, rows, cols].t() for m in full], 1) * GAIN


def unit(x):
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)


def relaxed_emd(d):
    return torch.max(d.min(1).values.mean(), d.min(0).values.mean())


def moments(x):
    m = x.mean(0)
    return m, torch.cov(x.t())


c, s = inp["c"], inp["s"]
torch.manual_seed(a.seed)
H, W = c.shape[-2:]
long = max(H, W)
terms, prev = [], None
for k in range(a.scales):
    side = long >> (a.scales - 1 - k)
    h, w = max(round(H * side / long), 16), max(round(W * side / long), 16)
    sh, sw = s.shape[-2:]
    th, tw = max(round(sh * side / max(sh, sw)), 16), max(round(sw * side / max(sh, sw)), 16)
    alpha = a.alpha * 16 / 2**k
    last = k == a.scales - 1
    ck, sk = scaled(c, h, w), scaled(s, th, tw)
    with torch.no_grad():
        r, q = locations(th, tw, a.style_samples)
        pool = hypercolumn(sk, r, q)
        pool_px = sk[0][:, r, q].t()
        mu_s, cov_s = moments(pool)
    if prev is None:
        start = band(ck) + s.mean((2, 3), keepdim=True)
    else:
        start = scaled(prev, h, w) + (0 if last else band(ck))
    bands = [b.detach().requires_grad_() for b in split(start * 2 - 1)]
    opt = torch.optim.RMSprop(bands, lr=a.lr / 2 if last and k > 0 else a.lr)
    for _ in range(a.steps):
        x = (merge(bands) + 1) / 2
        r, q = locations(h, w, a.out_samples)
        out = hypercolumn(x, r, q)
        with torch.no_grad():
            ref = hypercolumn(ck, r, q)
        dc = 1 - unit(ref) @ unit(ref).t()
        do = 1 - unit(out) @ unit(out).t()
        l_c = (dc / dc.sum(0) - do / do.sum(0)).abs().mean() * out.shape[0]
        mu_o, cov_o = moments(out)
        l_m = (mu_s - mu_o).abs().mean() + (cov_s - cov_o).abs().mean()
        l_r = relaxed_emd(1 - unit(out) @ unit(pool).t())
        l_p = relaxed_emd(torch.cdist(x[0][:, r, q].t(), pool_px))
        total = (alpha * l_c + l_m + l_r + l_p / alpha) / (2 + alpha + 1 / alpha)
        opt.zero_grad()
        total.backward()
        opt.step()
        terms.append(torch.stack([total, l_c, l_m, l_r, l_p]).detach())
    with torch.no_grad():
        prev = ((merge(bands) + 1) / 2).clamp(0, 1)

save({"terms": torch.stack(terms), "result": prev})
