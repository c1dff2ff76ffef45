//! Content, Gram style and total-variation losses.
use tch::{Kind, Reduction, Tensor};

/// Content loss: the mean squared error between two feature maps.
///
/// # Shapes
/// `features, target: [B, C, H, W]` → scalar
pub fn content_loss(features: &Tensor, target: &Tensor) -> Tensor {
    features.mse_loss(target, Reduction::Mean)
}

/// What a Gram matrix FᵀF is divided by. The papers differ, and the loss
/// weights each method was tuned with depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GramNorm {
    /// C·H·W: Gatys's style loss, AdaIN's and the VAE's Gram terms here.
    Elements,
    /// H·W (per pixel): the pseudo-optimizers (Shi & Qiao) and Puy–Pérez.
    Pixels,
}

/// Gram matrix G = FᵀF / N, with F the map flattened to [C, HW] and N from `norm`.
///
/// Computed in fp32 whatever the input precision.
///
/// # Shapes
/// `features: [B, C, H, W]` → `[B, C, C]`
///
/// # Panics
/// If `features` is not 4-d (feature maps always are).
pub fn gram_with(features: &Tensor, norm: GramNorm) -> Tensor {
    let (b, c, h, w) = features
        .size4()
        .unwrap_or_else(|_| panic!("gram expects [B, C, H, W], got {:?}", features.size()));
    let f = features.to_kind(Kind::Float).reshape([b, c, h * w]);
    let n = match norm {
        GramNorm::Elements => c * h * w,
        GramNorm::Pixels => h * w,
    };
    f.bmm(&f.transpose(1, 2)) / n as f64
}

/// [`gram_with`] normalised by C·H·W ([`GramNorm::Elements`]).
///
/// # Shapes
/// `features: [B, C, H, W]` → `[B, C, C]`
pub fn gram(features: &Tensor) -> Tensor {
    gram_with(features, GramNorm::Elements)
}

/// Style loss of one layer: mean squared error between Gram matrices.
///
/// # Shapes
/// `features: [B, C, H, W]`, `target_gram: [B or 1, C, C]` → scalar
pub fn gram_loss(features: &Tensor, target_gram: &Tensor) -> Tensor {
    let g = gram(features);
    let t = target_gram.expand_as(&g);
    g.mse_loss(&t, Reduction::Mean)
}

/// Total variation: the mean squared difference between vertical neighbours
/// plus that between horizontal neighbours.
///
/// # Shapes
/// `x: [B, C, H, W]` → scalar
pub fn total_variation(x: &Tensor) -> Tensor {
    let h = x.size()[2];
    let w = x.size()[3];
    let dy = x.narrow(2, 1, h - 1) - x.narrow(2, 0, h - 1);
    let dx = x.narrow(3, 1, w - 1) - x.narrow(3, 0, w - 1);
    dy.square().mean(Kind::Float) + dx.square().mean(Kind::Float)
}
