"""Independent Gatys objective: VGG19 built from torch.nn layers with the weights
file (--weights), average pooling, Gram = FᵀF/(C·H·W), MSE per layer.
Inputs: x (the image), c (content), s (style). Options: --cw --sw --tv.
Outputs: loss, content, style, tv and grad (∂loss/∂x)."""
import argparse

import torch
import torch.nn.functional as F

from common import io
from vgg_layers import Vgg19

inp, argv, save = io()
ap = argparse.ArgumentParser()
ap.add_argument("--weights", required=True)
ap.add_argument("--cw", type=float, default=1.0)
ap.add_argument("--sw", type=float, default=1e3)
ap.add_argument("--tv", type=float, default=0.0)
a = ap.parse_args(argv)

vgg = Vgg19(a.weights, "avg")
assert vgg.bgr
STYLE = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
CONTENT = ["relu4_2"]


def feats(img):
    return vgg.features(img, STYLE + CONTENT)


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
