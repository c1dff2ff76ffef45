"""Independent VGG feature reference (torch.nn layers, torchvision-style layout).

Inputs: `x` (RGB in [0, 1]) and either the weights as `w.<name>` tensors or
--weights FILE. Options: --arch vgg19|vgg16, --pooling max|avg, --taps a,b,c,
--prep caffe|torchvision (ignored with --weights: the file's metadata decides),
--precision fp32|bf16 (bf16: convolutions in bfloat16, maps returned in fp32).
Outputs: one tensor per tap."""
import argparse
import json

import torch
import torch.nn as nn
from safetensors import safe_open

from common import io

inputs, argv, save = io()
ap = argparse.ArgumentParser()
ap.add_argument("--arch", default="vgg19")
ap.add_argument("--pooling", default="max")
ap.add_argument("--taps", required=True)
ap.add_argument("--prep", default="caffe")
ap.add_argument("--weights")
ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
a = ap.parse_args(argv)

cfg = {"vgg16": [2, 2, 3, 3, 3], "vgg19": [2, 2, 4, 4, 4]}[a.arch]
if a.weights:
    with safe_open(a.weights, "pt") as f:
        meta = f.metadata()
        weights = {k: f.get_tensor(k) for k in f.keys()}
    order = meta["channel_order"]
    scale = float(meta["input_scale"])
    mean = json.loads(meta["mean"])
    std = json.loads(meta["std"])
else:
    weights = {k[2:]: v for k, v in inputs.items() if k.startswith("w.")}
    if a.prep == "caffe":
        order, scale, mean, std = "BGR", 255.0, [103.939, 116.779, 123.68], [1.0, 1.0, 1.0]
    else:
        order, scale, mean, std = "RGB", 1.0, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

layers, names = [], []
cin = 3
for b, n in enumerate(cfg, start=1):
    cout = [64, 128, 256, 512, 512][b - 1]
    for k in range(1, n + 1):
        conv = nn.Conv2d(cin, cout, 3, padding=1)
        conv.weight.data.copy_(weights[f"conv{b}_{k}.weight"])
        conv.bias.data.copy_(weights[f"conv{b}_{k}.bias"])
        layers += [conv, nn.ReLU()]
        names += [f"conv{b}_{k}", f"relu{b}_{k}"]
        cin = cout
    layers.append(nn.MaxPool2d(2, 2) if a.pooling == "max" else nn.AvgPool2d(2, 2))
    names.append(f"pool{b}")
net = nn.Sequential(*layers).eval()

x = inputs["x"].float()
if order == "BGR":
    x = x[:, [2, 1, 0]]
x = (x * scale - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
if a.precision == "bf16":
    # Mixed precision as the project defines it: the convolutions run in bf16,
    # every returned map is fp32.
    net = net.to(torch.bfloat16)
    x = x.to(torch.bfloat16)
want = a.taps.split(",")
out = {}
with torch.no_grad():
    h = x
    for name, layer in zip(names, net):
        h = layer(h)
        if name in want:
            out[name] = h.float()
        if len(out) == len(want):
            break
save(out)
