"""Independent reference for the Puy–Pérez flexible solver (arXiv 1806.05285).

--mode update: one learned update g(X) computed by hand from the formula,
  with the weights given as inputs `w.<name>` (level{l}.fwd0/fwd1/bwd0/bwd1):
    F_l = h^f_l(X) (two conv3x3+ReLU per level, 2x2 average pooling between levels,
          input 2X - 1),
    H_l = (1/n') h^f_l(S)^T h^f_l(S),
    D_l = F_l [(1/n) F_l^T F_l - H_l], divided per sample (--norm) by its RMS
          ("rms") or by rms(F_l) (ms(F_l) + ms(S_l)), ms = mean square of the
          activations ("gram"),
    backward: from the deepest level, add D_l, multiply by the ReLU mask of
    fwd1, conv bwd1, multiply by the mask of fwd0, conv bwd0, nearest x2
    upsampling (zero-padded to the shallower size), down to the image;
    g = step_size * (that map).
  Inputs: x [B,3,H,W], s [1,3,H',W']. Output: g.
--mode loss: Gatys's loss in the paper's normalisation,
    Lc = (1/(n c)) ||F - C||^2 at conv4_2,
    Ls = (1/|I|) sum_l (1/c_l^2) ||(1/n) F^T F - (1/n') S^T S||^2 over relu1_1..relu5_1,
  with VGG19 (average pooling) from --weights. Inputs: x, c, s. Outputs: content, style.
"""
import argparse

import torch
import torch.nn.functional as F

from common import io

inp, argv, save = io()
ap = argparse.ArgumentParser()
ap.add_argument("--mode", choices=["update", "loss"], required=True)
ap.add_argument("--weights")
ap.add_argument("--norm", choices=["rms", "gram"], default="rms")
a = ap.parse_args(argv)


def gram(f):
    b, c, h, w = f.shape
    m = f.reshape(b, c, h * w)
    return m @ m.transpose(1, 2) / (h * w)


if a.mode == "update":
    W = {k[2:]: v.double() for k, v in inp.items() if k.startswith("w.")}
    levels = sorted({int(k.split(".")[0][5:]) for k in W if k.startswith("level")})

    def conv(h, name):
        return F.conv2d(h, W[name + ".weight"], W.get(name + ".bias"), padding=1)

    def forward(img):
        h = img * 2 - 1
        maps, masks, sizes = [], [], []
        for l in levels:
            if l > 1:
                h = F.avg_pool2d(h, 2)
            sizes.append(h.shape[2:])
            a0 = conv(h, f"level{l}.fwd0")
            a1 = conv(torch.relu(a0), f"level{l}.fwd1")
            h = torch.relu(a1)
            maps.append(h)
            masks.append(((a0 > 0).double(), (a1 > 0).double()))
        return maps, masks, sizes

    x = inp["x"].double()
    s = inp["s"].double()
    fmaps, masks, sizes = forward(x)
    smaps, _, _ = forward(s)
    run = None
    for i in reversed(range(len(levels))):
        f = fmaps[i]
        b, c, h, w = f.shape
        fm = f.reshape(b, c, h * w).transpose(1, 2)  # [n, c] as in the paper
        d = fm @ (gram(f) - gram(smaps[i]))            # F [(1/n)F^T F - H]
        d = d.transpose(1, 2).reshape(b, c, h, w)
        if a.norm == "rms":
            d = d / ((d.reshape(b, -1).pow(2).mean(1) + 1e-12).sqrt().view(b, 1, 1, 1) + 1e-8)
        else:
            msf = f.pow(2).mean(dim=(1, 2, 3))
            mss = smaps[i].pow(2).mean(dim=(1, 2, 3))
            d = d / (msf.sqrt() * (msf + mss) + 1e-8).view(b, 1, 1, 1)
        m = d if run is None else run + d
        m = conv(m * masks[i][1], f"level{levels[i]}.bwd1")
        m = conv(m * masks[i][0], f"level{levels[i]}.bwd0")
        if i > 0:
            up = F.interpolate(m, scale_factor=2, mode="nearest")
            ph, pw = sizes[i - 1]
            m = F.pad(up, (0, pw - up.shape[3], 0, ph - up.shape[2]))
        run = m
    save({"g": run * W["step_size"]})
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
