//! The operators of the variational model.
use nst_losses::stats::{mean_std, EPS};
use tch::{Kind, Tensor};

/// The reparameterisation trick: s = μ + exp(½·log σ²) ⊙ ε, with ε ~ N(0, I)
/// drawn by the caller (so tests can fix it).
///
/// # Shapes
/// `mu, logvar, eps: [B, D]` → `[B, D]`
pub fn reparameterize(mu: &Tensor, logvar: &Tensor, eps: &Tensor) -> Tensor {
    mu + (logvar * 0.5).exp() * eps
}

/// KL(N(μ, diag σ²) ‖ N(0, I)) in closed form,
/// ½·Σ_j (μ_j² + σ_j² − log σ_j² − 1), summed over the code and averaged over the batch.
///
/// # Shapes
/// `mu, logvar: [B, D]` → scalar
pub fn kl_divergence(mu: &Tensor, logvar: &Tensor) -> Tensor {
    let per = (mu.square() + logvar.exp() - logvar - 1.0).sum_dim_intlist(
        [1i64].as_slice(),
        false,
        Kind::Float,
    ) * 0.5;
    per.mean(Kind::Float)
}

/// The disentanglement hinge, read literally from the issue:
/// ℒ = max(0, ‖e₁ − e₂‖² − ‖e₁ − s‖²), averaged over the batch, where
/// e₁ = E_s(y₁) and e₂ = E_s(y₂) are the style encoder's means for two
/// stylisations of *different* contents with the *same* code s. It is zero
/// once the two stylisations are at least as close to each other in style
/// space as y₁ is to the code it was made from. While active it pulls e₁ and
/// e₂ together (the content of y must not show in its style code) and, as the
/// formula says, pushes e₁ away from s, like a triplet loss with s as the
/// negative and no margin. The KL and Gram terms keep the codes tied to the
/// styles. Gradients flow into both the decoder (through y) and E_s.
///
/// # Shapes
/// `e1, e2, s: [B, D]` → scalar
pub fn disentanglement_loss(e1: &Tensor, e2: &Tensor, s: &Tensor) -> Tensor {
    let d12 = (e1 - e2)
        .square()
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    let d1s = (e1 - s)
        .square()
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    (d12 - d1s).relu().mean(Kind::Float)
}

/// AdaIN with given parameters: σ̂ ⊙ (x − μ(x)) / σ(x) + μ̂, with the
/// per-instance, per-channel spatial statistics of [`mean_std`] (ε = 1e-5).
///
/// # Shapes
/// `x: [B, C, H, W]`, `sigma, mu: [B, C]` → `[B, C, H, W]`
pub fn adain_with(x: &Tensor, sigma: &Tensor, mu: &Tensor) -> Tensor {
    let (m, s) = mean_std(x, EPS);
    adain_with_stats(x, sigma, mu, (&m, &s))
}

/// [`adain_with`] with x's statistics given, `(μ(x), σ(x))`, each
/// `[B or 1, C, 1, 1]`: those of the whole image when x is a tile of it.
pub fn adain_with_stats(
    x: &Tensor,
    sigma: &Tensor,
    mu: &Tensor,
    (m, s): (&Tensor, &Tensor),
) -> Tensor {
    let d = x.device();
    let (b, c) = (sigma.size()[0], sigma.size()[1]);
    (x.to_kind(Kind::Float) - m.to_device(d)) / s.to_device(d) * sigma.view([b, c, 1, 1])
        + mu.view([b, c, 1, 1])
}
