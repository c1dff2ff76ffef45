"""Independent reference for the variational model's operators, in float64:
reparameterisation with a given eps, closed-form KL to N(0, I), the
disentanglement hinge, and AdaIN with given (sigma, mu).
Inputs: mu, logvar, eps, e1, e2, s, x, sigma, mean."""
import torch

from common import io

inp, argv, save = io()
d = {k: v.double() for k, v in inp.items()}
mu, logvar, eps = d["mu"], d["logvar"], d["eps"]

z = mu + torch.exp(0.5 * logvar) * eps
# KL(N(mu, sigma^2) || N(0, 1)) per dimension, from the Gaussian densities:
# log(1/sigma) + (sigma^2 + mu^2)/2 - 1/2
sigma2 = torch.exp(logvar)
kl = (torch.log(1.0 / torch.sqrt(sigma2)) + (sigma2 + mu ** 2) / 2 - 0.5).sum(1).mean()

e1, e2, s = d["e1"], d["e2"], d["s"]
hinge = torch.clamp(((e1 - e2) ** 2).sum(1) - ((e1 - s) ** 2).sum(1), min=0).mean()

x = d["x"]
b, c = x.shape[:2]
flat = x.reshape(b, c, -1)
m = flat.mean(2)[..., None, None]
sd = (flat.var(2, unbiased=True) + 1e-5).sqrt()[..., None, None]
ada = (x - m) / sd * d["sigma"][..., None, None] + d["mean"][..., None, None]

save({"z": z, "kl": kl.reshape(1), "hinge": hinge.reshape(1), "adain": ada})
