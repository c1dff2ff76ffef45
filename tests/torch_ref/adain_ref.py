"""Independent AdaIN reference (as in naoto0804/pytorch-AdaIN's formulation):
mean/std per instance and channel over space, std = sqrt(unbiased var + eps).
Inputs: c, s. Outputs: mean_c, std_c, adain."""
import torch

from common import io

inp, argv, save = io()
c, s = inp["c"].double(), inp["s"].double()
eps = 1e-5


def stats(x):
    n, ch = x.shape[:2]
    v = x.reshape(n, ch, -1)
    return v.mean(2).view(n, ch, 1, 1), (v.var(2) + eps).sqrt().view(n, ch, 1, 1)


mc, sc = stats(c)
ms, ss = stats(s)
save({"mean_c": mc, "std_c": sc, "adain": (c - mc) / sc * ss + ms})
