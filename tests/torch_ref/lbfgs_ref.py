"""torch.optim.LBFGS (history 100, no line search) on f(x) = ½xᵀAx − bᵀx from x0
for a given number of iterations. Inputs: A, b, x0, iters. Output: x."""
import torch

from common import io

inp, argv, save = io()
A, b = inp["A"], inp["b"]
x = inp["x0"].clone().requires_grad_(True)
opt = torch.optim.LBFGS([x], lr=float(argv[0]), max_iter=int(inp["iters"]), history_size=100,
                        tolerance_grad=1e-12, tolerance_change=1e-15)


def closure():
    opt.zero_grad()
    f = 0.5 * x @ A @ x - b @ x
    f.backward()
    return f


opt.step(closure)
save({"x": x.detach()})
