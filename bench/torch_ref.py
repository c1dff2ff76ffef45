"""PyTorch-eager references for nst-bench: the same work as the Rust cases,
written with torch.nn layers. Prints one JSON line: case, seconds (median),
peak_mb (ru_maxrss), quality (a checksum of the result to compare)."""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open

ap = argparse.ArgumentParser()
ap.add_argument("case")
ap.add_argument("--size", type=int, default=512)
ap.add_argument("--repeat", type=int, default=5)
ap.add_argument("--weights", required=True)
a = ap.parse_args()

with safe_open(a.weights, "pt") as f:
    meta = f.metadata()
    W = {k: f.get_tensor(k) for k in f.keys()}
MEAN = torch.tensor(json.loads(meta["mean"])).view(1, 3, 1, 1)
SCALE = float(meta["input_scale"])
BGR = meta["channel_order"] == "BGR"


def build(pooling):
    mods, names, cin = [], [], 3
    for b, n in enumerate([2, 2, 4, 4, 4], 1):
        cout = [64, 128, 256, 512, 512][b - 1]
        for k in range(1, n + 1):
            conv = nn.Conv2d(cin, cout, 3, padding=1)
            conv.weight.data, conv.bias.data = W[f"conv{b}_{k}.weight"], W[f"conv{b}_{k}.bias"]
            conv.requires_grad_(False)
            mods += [conv, nn.ReLU()]
            names += [f"conv{b}_{k}", f"relu{b}_{k}"]
            cin = cout
        mods.append(nn.MaxPool2d(2) if pooling == "max" else nn.AvgPool2d(2))
        names.append(f"pool{b}")
    return list(zip(names, mods))


def feats(net, x, want):
    h = (x[:, [2, 1, 0]] if BGR else x) * SCALE - MEAN
    out = {}
    for name, m in net:
        h = m(h)
        if name in want:
            out[name] = h
            if len(out) == len(want):
                break
    return out


def blobs(s, seed):
    torch.manual_seed(seed)
    return F.interpolate(torch.rand(1, 3, s // 16, s // 16), size=(s, s), mode="bilinear", align_corners=False)


def gram(f):
    b, c, h, w = f.shape
    m = f.view(b, c, h * w)
    return m @ m.transpose(1, 2) / (c * h * w)


def timed(fn):
    q = fn()
    ts = []
    for _ in range(a.repeat):
        t = time.perf_counter()
        q = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), q


STYLE = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
if a.case == "vgg_features":
    net = build("max")
    x = blobs(a.size, 0)

    def run():
        with torch.no_grad():
            return sum(float(t.double().sum()) for t in feats(net, x, STYLE).values())

elif a.case == "gatys_step":
    net = build("avg")
    c, s, x0 = blobs(a.size, 1), blobs(a.size, 2), blobs(a.size, 3)
    with torch.no_grad():
        ct = feats(net, c, ["relu4_2"])["relu4_2"]
        sg = {k: gram(v) for k, v in feats(net, s, STYLE).items()}

    def run():
        x = x0.clone().requires_grad_(True)
        f = feats(net, x, STYLE + ["relu4_2"])
        loss = F.mse_loss(f["relu4_2"], ct) + 1e3 * sum(F.mse_loss(gram(f[k]), sg[k]) for k in STYLE)
        loss.backward()
        return float(loss)

elif a.case == "adain_train_step":
    net = build("max")
    STY = ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]

    def dec_block(cin, cout, relu=True, up=False):
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3)]
        if relu:
            layers.append(nn.ReLU())
        if up:
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        return layers

    decoder = nn.Sequential(
        *dec_block(512, 256, up=True), *dec_block(256, 256), *dec_block(256, 256), *dec_block(256, 256),
        *dec_block(256, 128, up=True), *dec_block(128, 128), *dec_block(128, 64, up=True),
        *dec_block(64, 64), *dec_block(64, 3, relu=False),
    )
    opt = torch.optim.Adam(decoder.parameters(), lr=1e-4)

    def blobs4(s, seed):
        return torch.cat([blobs(s, seed * 10 + i) for i in range(4)], 0)

    c, s = blobs4(256, 1), blobs4(256, 2)

    def stats(f):
        n, ch = f.shape[:2]
        v = f.reshape(n, ch, -1)
        return v.mean(2), (v.var(2) + 1e-5).sqrt()

    def run():
        with torch.no_grad():
            fc = feats(net, c, ["relu4_1"])["relu4_1"]
            fs = feats(net, s, STY)
            mc, sc = stats(fc)
            ms, ss = stats(fs["relu4_1"])
            t = (fc - mc[..., None, None]) / sc[..., None, None] * ss[..., None, None] + ms[..., None, None]
            targets = {k: stats(v) for k, v in fs.items()}
        g = decoder(t / SCALE)
        fg = feats(net, g, STY)
        loss = F.mse_loss(fg["relu4_1"], t)
        for k in STY:
            m, sd = stats(fg[k])
            loss = loss + 10.0 * (F.mse_loss(m, targets[k][0]) + F.mse_loss(sd, targets[k][1]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return None

else:
    raise SystemExit(f"unknown case {a.case}")

sec, q = timed(run)
print(json.dumps({"case": a.case, "seconds": sec, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "quality": q}))
