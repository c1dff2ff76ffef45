"""Independent matting Laplacian (Levin, Lischinski and Weiss 2008), built
entry by entry with numpy/scipy from the paper's formula: for every 3x3
window inside the image, L[i, j] += delta_ij - (1 + (I_i - mu)^T (Sigma + eps/9 I)^-1 (I_j - mu)) / 9.

Inputs: `image` [3, H, W] in [0, 1]. Options: --eps. Output: `L` (dense, n x n,
row-major pixel order)."""
import argparse

import numpy as np
import scipy.sparse as sp
import torch

from common import io

inputs, argv, save = io()
ap = argparse.ArgumentParser()
ap.add_argument("--eps", type=float, default=1e-7)
a = ap.parse_args(argv)

img = inputs["image"].double().numpy().transpose(1, 2, 0)  # H, W, 3
h, w, _ = img.shape
n = h * w
idx = np.arange(n).reshape(h, w)
rows, cols, vals = [], [], []
for y in range(1, h - 1):
    for x in range(1, w - 1):
        win = idx[y - 1:y + 2, x - 1:x + 2].ravel()
        colors = img[y - 1:y + 2, x - 1:x + 2].reshape(9, 3)
        mu = colors.mean(0)
        d = colors - mu
        cov = d.T @ d / 9
        inv = np.linalg.inv(cov + a.eps / 9 * np.eye(3))
        block = np.eye(9) - (1 + d @ inv @ d.T) / 9
        rows.append(np.repeat(win, 9))
        cols.append(np.tile(win, 9))
        vals.append(block.ravel())
L = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).toarray()
save({"L": torch.from_numpy(L)})
