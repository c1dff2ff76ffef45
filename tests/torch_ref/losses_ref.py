"""Independent reference for nst-losses, written from the formulas in the
issue, with different building blocks than the Rust code where possible
(torch.cdist, F.interpolate, torch.cov, explicit loops over layers).

Inputs: feature maps f{l}/t{l} for the basic losses; `x` an image; A, B, C, O
[N, C] sample sets; maps m0..mK and `coords` for hypercolumns. `alpha` via argv."""
import torch
import torch.nn.functional as F

from common import io

inp, argv, save = io()
d = {k: v.double() for k, v in inp.items()}
alpha = float(argv[0]) if argv else 1.0
out = {}

# --- basic losses ---
def gram(f):
    b, c, h, w = f.shape
    m = f.reshape(b, c, h * w)
    return torch.einsum("bcn,bdn->bcd", m, m) / (c * h * w)

out["content"] = ((d["f0"] - d["t0"]) ** 2).mean()
out["gram0"] = gram(d["f0"])
out["style"] = sum(w * ((gram(d[f"f{l}"]) - gram(d[f"t{l}"])) ** 2).mean() for l, w in [(0, 1.0), (1, 0.5)])
x = d["x"]
out["tv"] = ((x[:, :, 1:] - x[:, :, :-1]) ** 2).mean() + ((x[:, :, :, 1:] - x[:, :, :, :-1]) ** 2).mean()

# --- STROTSS losses ---
def cos_dist(a, b):
    return 1 - F.cosine_similarity(a[:, None, :], b[None, :, :], dim=2, eps=1e-8)

def remd(dm):
    return torch.maximum(dm.min(1).values.mean(), dm.min(0).values.mean())

A, B, C, O = d["A"], d["B"], d["C"], d["O"]
out["cos"] = cos_dist(A, B)
out["remd"] = remd(cos_dist(A, B))
out["palette"] = remd(torch.cdist(A[:, :3], B[:, :3]))
ca, cb = torch.cov(A.T), torch.cov(B.T)
out["moments"] = (A.mean(0) - B.mean(0)).abs().mean() + (ca - cb).abs().mean()
O.requires_grad_(True)
Dc, Do = cos_dist(C, C), cos_dist(O, O)
out["selfsim"] = (Dc / Dc.sum(0, keepdim=True) - Do / Do.sum(0, keepdim=True)).abs().mean()
out["selfsim_grad"], = torch.autograd.grad(out["selfsim"], O)
out["selfsim"] = out["selfsim"].detach()
O = O.detach()
out["total"] = (alpha * out["selfsim"] + out["moments"] + out["remd"] + out["palette"] / alpha) / (2 + alpha + 1 / alpha)

# --- hypercolumns: upsample every map to the image size, concatenate, index ---
H, W = int(d["hw"][0]), int(d["hw"][1])
maps = [d[k].requires_grad_(True) for k in sorted(k for k in d if k.startswith("m"))]
up = torch.cat([F.interpolate(m, size=(H, W), mode="bilinear", align_corners=False) for m in maps], 1)[0]
rc = inp["coords"].long()
hyper = up[:, rc[:, 0], rc[:, 1]].T
for l, g in enumerate(torch.autograd.grad((hyper * d["hyper_w"]).sum(), maps)):
    out[f"hyper_grad{l}"] = g
out["hyper"] = hyper.detach()
save(out)
