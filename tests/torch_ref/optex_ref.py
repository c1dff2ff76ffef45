"""Independent reference for the feature matching of Optimal Textures
(nst_decoders::transforms), written with NumPy on rows [N, D].
Inputs: src [N, D], tgt [M, D], rot [P, D, D] (the rotations of the sliced OT
passes). Outputs:
- hist: each column of src mapped to tgt's quantiles at (k + 1/2)/N of its ranks
  (linear interpolation between sorted target values);
- sliced: P passes of rotate (x R), 1-D matching, rotate back (x Rᵀ);
- symmetric, cholesky: mean and covariance matched by C_s^{-1/2} C_t^{1/2}, and by
  Cholesky factors (x − μ_s) L_s^{-ᵀ} L_tᵀ + μ_t."""
import numpy as np
import torch

from common import io

inp, argv, save = io()
src = inp["src"].double().numpy()
tgt = inp["tgt"].double().numpy()
rot = inp["rot"].double().numpy()


def hist(s, t):
    n, m = s.shape[0], t.shape[0]
    out = np.empty_like(s)
    q = (np.arange(n) + 0.5) * m / n - 0.5
    for j in range(s.shape[1]):
        ts = np.sort(t[:, j])
        vals = np.interp(q, np.arange(m), ts)
        ranks = np.argsort(s[:, j], kind="stable")
        out[ranks, j] = vals
    return out


x = src.copy()
for r in rot:
    x = hist(x @ r, tgt @ r) @ r.T


def cov(a):
    mu = a.mean(0, keepdims=True)
    c = a - mu
    return mu, c.T @ c / (a.shape[0] - 1)


def sqrtm(c, power):
    w, v = np.linalg.eigh(c)
    return (v * w ** power) @ v.T


ms, cs = cov(src)
mt, ct = cov(tgt)
sym = (src - ms) @ sqrtm(cs, -0.5) @ sqrtm(ct, 0.5) + mt
ls, lt = np.linalg.cholesky(cs), np.linalg.cholesky(ct)
chol = np.linalg.solve(ls, (src - ms).T).T @ lt.T + mt
t = lambda a: torch.from_numpy(np.ascontiguousarray(a))
save({"hist": t(hist(src, tgt)), "sliced": t(x), "symmetric": t(sym), "cholesky": t(chol)})
