"""Independent reference for the Puy–Pérez flexible solver (arXiv 1806.05285).

--mode update: one learned update g(X) (puy_net.py, from the formula), with
  the weights given as inputs `w.<name>` (level{l}.fwd0/fwd1/bwd0/bwd1) and
  --norm rms|gram. Inputs: x [B,3,H,W], s [1,3,H',W']. Output: g.
--mode loss: Gatys's loss in the paper's normalisation,
    Lc = (1/(n c)) ||F - C||^2 at conv4_2,
    Ls = (1/|I|) sum_l (1/c_l^2) ||(1/n) F^T F - (1/n') S^T S||^2 over relu1_1..relu5_1,
  with VGG19 (average pooling) from --weights. Inputs: x, c, s. Outputs: content, style.
"""
import argparse

from common import io
from puy_net import UpdateNet, gram

inp, argv, save = io()
ap = argparse.ArgumentParser()
ap.add_argument("--mode", choices=["update", "loss"], required=True)
ap.add_argument("--weights")
ap.add_argument("--norm", choices=["rms", "gram"], default="rms")
a = ap.parse_args(argv)

if a.mode == "update":
    net = UpdateNet({k[2:]: v.double() for k, v in inp.items() if k.startswith("w.")})
    save({"g": net.update(inp["x"].double(), net.forward(inp["s"].double())[0], a.norm)})
else:
    from vgg_layers import vgg19_features

    feats = vgg19_features(a.weights, "avg")
    style = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    x, c, s = inp["x"].float(), inp["c"].float(), inp["s"].float()
    fx = feats(x, style + ["conv4_2"])
    fc = feats(c, ["conv4_2"])
    fs = feats(s, style)
    content = ((fx["conv4_2"] - fc["conv4_2"]) ** 2).mean()
    ls = 0
    for l in style:
        g, t = gram(fx[l]), gram(fs[l])
        cl = g.shape[1]
        ls = ls + ((g - t) ** 2).sum(dim=(1, 2)).mean() / cl**2
    save({"content": content, "style": ls / len(style)})
