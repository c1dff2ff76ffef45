"""VGG19 from torch.nn layers and a weights file written by scripts/convert_vgg.py
(Keras/Caffe preprocessing recorded in its metadata), for the reference scripts
and bench/torch_ref.py."""
import json

import torch
import torch.nn as nn
from safetensors import safe_open


class Vgg19:
    """`layers`: (name, module) from conv1_1 to pool5, frozen; `prep(img)`: RGB
    images in [0, 1] to the network's input; `scale`: the input scale;
    `input_gain`: scale / mean(std), the factor that makes a map per unit of
    [0, 1] input."""

    def __init__(self, weights_path, pooling="avg"):
        with safe_open(weights_path, "pt") as f:
            meta = f.metadata()
            w = {k: f.get_tensor(k) for k in f.keys()}
        self.mean = torch.tensor(json.loads(meta["mean"])).view(1, 3, 1, 1)
        std = json.loads(meta["std"])
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self.scale = float(meta["input_scale"])
        self.input_gain = self.scale / (sum(std) / 3)
        self.bgr = meta["channel_order"] == "BGR"
        self.layers, cin = [], 3
        for b, n in enumerate([2, 2, 4, 4, 4], 1):
            cout = [64, 128, 256, 512, 512][b - 1]
            for k in range(1, n + 1):
                conv = nn.Conv2d(cin, cout, 3, padding=1)
                conv.weight.data, conv.bias.data = w[f"conv{b}_{k}.weight"], w[f"conv{b}_{k}.bias"]
                conv.requires_grad_(False)
                self.layers += [(f"conv{b}_{k}", conv), (f"relu{b}_{k}", nn.ReLU())]
                cin = cout
            self.layers.append((f"pool{b}", nn.AvgPool2d(2) if pooling == "avg" else nn.MaxPool2d(2)))

    def prep(self, img):
        return ((img[:, [2, 1, 0]] if self.bgr else img) * self.scale - self.mean) / self.std

    def features(self, img, taps):
        """{tap: map} for RGB images in [0, 1], stopping at the last tap."""
        h, out = self.prep(img), {}
        for name, m in self.layers:
            h = m(h)
            if name in taps:
                out[name] = h
                if len(out) == len(taps):
                    break
        return out


def vgg19_features(weights_path, pooling="avg"):
    """Returns feats(img, taps) -> {tap: tensor} for RGB images in [0, 1]."""
    return Vgg19(weights_path, pooling).features
