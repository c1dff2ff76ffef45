"""Independent reference for the pseudo-optimizer's texture loss and its inputs.

Inputs: `x` (images in [0, 1]), `t` (target images, same batch). Options:
--weights FILE (VGG19 safetensors), --layers a,b,c, --layer-weight W.
Builds VGG19 with average pooling from torch.nn layers, takes each layer's
features per unit of [0, 1] input (divided by scale/mean(std)), and with
G = F^T F / N, L = sum_l W * mean((G_l(x) - G_l(t))^2) per sample, returns
`loss` [B], `grad.<layer>` = dL/dF_l by autograd, and `grad_x` = dL/dx."""
import argparse

import torch
from safetensors import safe_open

from common import io
from vgg_layers import Vgg19

inputs, argv, save = io()
ap = argparse.ArgumentParser()
ap.add_argument("--weights", required=True)
ap.add_argument("--layers", default="conv1_1,pool1,pool2,pool3,pool4")
ap.add_argument("--layer-weight", type=float, default=1e5)
ap.add_argument("--net", help="PseudoOptimizer weights: run the stages from `z0` against `t` instead")
ap.add_argument("--stages", default="1,2,3,4,5", help="layers seen by each stage")
ap.add_argument("--channels", default="8,8,16,16,16")
ap.add_argument("--res-blocks", type=int, default=1)
ap.add_argument("--padding", choices=["zeros", "reflect"], default="zeros", help="of the solver's 3x3 convs")
a = ap.parse_args(argv)

vgg = Vgg19(a.weights, "avg")
layers = a.layers.split(",")


def features(img):
    out = {}
    for name, h in vgg.features(img, layers).items():
        f = h / vgg.input_gain
        if f.requires_grad:
            f.retain_grad()
        out[name] = f
    return out


def gram(f):
    b, c, hh, ww = f.shape
    f = f.reshape(b, c, hh * ww)
    return f @ f.transpose(1, 2) / (hh * ww)


if a.net:
    # The solver, written independently from the description in nst_po::net:
    # per stage, gradient maps (autograd through the Gram loss only) divided by
    # their RMS, deepest layer first, nearest upsampling, eval-mode batch norm,
    # leaky ReLU 0.2, z <- z + delta.
    import torch.nn.functional as F
    with safe_open(a.net, "pt") as f:
        P = {k: f.get_tensor(k) for k in f.keys()}
    width = [int(c) for c in a.channels.split(",")]
    strides = {"conv1_1": 0, "pool1": 1, "pool2": 2, "pool3": 3, "pool4": 4}

    def conv(p, x):
        if a.padding == "reflect":
            return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), P[p + ".weight"], P[p + ".bias"])
        return F.conv2d(x, P[p + ".weight"], P[p + ".bias"], padding=1)

    def bn(p, x):
        return F.batch_norm(x, P[p + ".running_mean"], P[p + ".running_var"], P[p + ".weight"], P[p + ".bias"], False, 0.1, 1e-5)

    def cna(p, x):
        return F.leaky_relu(bn(p + ".norm", conv(p + ".conv", x)), 0.2)

    def stage(s, k, grads, h, w):
        ks = [strides[layers[i]] for i in range(k)]
        x = None
        for lv in range(max(ks), -1, -1):
            p = f"stage{s}.s{1 << lv}"
            if x is not None:
                x = cna(p + ".up", F.interpolate(x, size=(h >> lv, w >> lv), mode="nearest"))
            ins = [i for i in range(k) if ks[i] == lv]
            for i in ins:
                g = grads[i] / (grads[i].pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt() + 1e-20)
                gi = cna(f"{p}.in{i}.b", cna(f"{p}.in{i}.a", g))
                x = gi if x is None else x + gi
            if ins:
                for r in range(a.res_blocks):
                    x = x + bn(f"{p}.res{r}.b.norm", conv(f"{p}.res{r}.b.conv", cna(f"{p}.res{r}.a", x)))
        return conv(f"stage{s}.out", x)

    z = inputs["z0"].float()
    with torch.no_grad():
        gt = {k: gram(v) for k, v in features(inputs["t"].float()).items()}
    out = {}
    _, _, h, w = z.shape
    for s, k in enumerate([int(v) for v in a.stages.split(",")], start=1):
        fx = {n: f.detach().requires_grad_(True) for n, f in features(torch.sigmoid(z)).items()}
        loss = sum(a.layer_weight * ((gram(fx[n]) - gt[n]) ** 2).mean(dim=(1, 2)) for n in layers[:k])
        grads = torch.autograd.grad(loss.sum(), [fx[n] for n in layers[:k]])
        with torch.no_grad():
            z = z + stage(s, k, grads, h, w)
        out[f"z{s}"] = z
    save(out)
    raise SystemExit(0)

x = inputs["x"].float().clone().requires_grad_(True)
with torch.no_grad():
    ft = features(inputs["t"].float())
    gt = {k: gram(v) for k, v in ft.items()}
fx = features(x)
loss = sum(a.layer_weight * ((gram(fx[k]) - gt[k]) ** 2).mean(dim=(1, 2)) for k in layers)
loss.sum().backward()
out = {"loss": loss.detach(), "grad_x": x.grad}
for k in layers:
    out[f"grad.{k}"] = fx[k].grad
save(out)
