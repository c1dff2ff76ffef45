"""VGG19 from torch.nn layers and a weights file written by scripts/convert_vgg.py
(Keras/Caffe preprocessing recorded in its metadata), for the reference scripts."""
import json

import torch
import torch.nn as nn
from safetensors import safe_open


def vgg19_features(weights_path, pooling="avg"):
    """Returns feats(img, taps) -> {tap: tensor} for RGB images in [0, 1]."""
    with safe_open(weights_path, "pt") as f:
        meta = f.metadata()
        w = {k: f.get_tensor(k) for k in f.keys()}
    mean = torch.tensor(json.loads(meta["mean"])).view(1, 3, 1, 1)
    std = torch.tensor(json.loads(meta["std"])).view(1, 3, 1, 1)
    scale = float(meta["input_scale"])
    bgr = meta["channel_order"] == "BGR"
    mods, names = [], []
    cin = 3
    for b, n in enumerate([2, 2, 4, 4, 4], 1):
        cout = [64, 128, 256, 512, 512][b - 1]
        for k in range(1, n + 1):
            conv = nn.Conv2d(cin, cout, 3, padding=1)
            conv.weight.data, conv.bias.data = w[f"conv{b}_{k}.weight"], w[f"conv{b}_{k}.bias"]
            conv.requires_grad_(False)
            mods += [conv, nn.ReLU()]
            names += [f"conv{b}_{k}", f"relu{b}_{k}"]
            cin = cout
        mods.append(nn.AvgPool2d(2) if pooling == "avg" else nn.MaxPool2d(2))
        names.append(f"pool{b}")

    def feats(img, taps):
        h = img[:, [2, 1, 0]] if bgr else img
        h = (h * scale - mean) / std
        out = {}
        for name, m in zip(names, mods):
            h = m(h)
            if name in taps:
                out[name] = h
            if len(out) == len(taps):
                break
        return out

    return feats
