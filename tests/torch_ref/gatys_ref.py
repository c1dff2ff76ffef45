"""Independent Gatys objective: VGG19 built from torch.nn layers with the weights
file (--weights), average pooling, Gram = FᵀF/(C·H·W), MSE per layer.
Inputs: x (the image), c (content), s (style). Options: --cw --sw --tv.
Outputs: loss, content, style, tv and grad (∂loss/∂x)."""
import argparse
import json

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open

from common import io

inp, argv, save = io()
ap = argparse.ArgumentParser()
ap.add_argument("--weights", required=True)
ap.add_argument("--cw", type=float, default=1.0)
ap.add_argument("--sw", type=float, default=1e3)
ap.add_argument("--tv", type=float, default=0.0)
a = ap.parse_args(argv)

with safe_open(a.weights, "pt") as f:
    meta = f.metadata()
    W = {k: f.get_tensor(k) for k in f.keys()}
mean = torch.tensor(json.loads(meta["mean"])).view(1, 3, 1, 1)
scale = float(meta["input_scale"])
assert meta["channel_order"] == "BGR"

mods, names = [], []
cin = 3
for b, n in enumerate([2, 2, 4, 4, 4], 1):
    cout = [64, 128, 256, 512, 512][b - 1]
    for k in range(1, n + 1):
        conv = nn.Conv2d(cin, cout, 3, padding=1)
        conv.weight.data, conv.bias.data = W[f"conv{b}_{k}.weight"], W[f"conv{b}_{k}.bias"]
        mods += [conv, nn.ReLU()]
        names += [f"conv{b}_{k}", f"relu{b}_{k}"]
        cin = cout
    mods.append(nn.AvgPool2d(2))
    names.append(f"pool{b}")
for p in (m for mod in mods for m in mod.parameters()):
    p.requires_grad_(False)

STYLE = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
CONTENT = ["relu4_2"]


def feats(img):
    h = img[:, [2, 1, 0]] * scale - mean
    out = {}
    for name, m in zip(names, mods):
        h = m(h)
        out[name] = h
        if name == "relu5_1":
            break
    return out


def gram(f):
    b, c, hh, ww = f.shape
    m = f.view(b, c, -1)
    return m @ m.transpose(1, 2) / (c * hh * ww)


with torch.no_grad():
    cf = feats(inp["c"])
    sg = {l: gram(v) for l, v in feats(inp["s"]).items() if l in STYLE}
x = inp["x"].clone().requires_grad_(True)
fx = feats(x)
content = a.cw * sum(F.mse_loss(fx[l], cf[l]) for l in CONTENT)
style = a.sw * sum(F.mse_loss(gram(fx[l]), sg[l]) for l in STYLE)
tv = a.tv * (((x[:, :, 1:] - x[:, :, :-1]) ** 2).mean() + ((x[:, :, :, 1:] - x[:, :, :, :-1]) ** 2).mean())
loss = content + style + tv
loss.backward()
save({"loss": loss, "content": content, "style": style, "tv": tv, "grad": x.grad})
