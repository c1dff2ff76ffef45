//! Content, Gram style and total-variation losses.
use tch::{Kind, Reduction, Tensor};

/// Content loss: the mean squared error between two feature maps.
///
/// # Shapes
/// `features, target: [B, C, H, W]` → scalar
pub fn content_loss(features: &Tensor, target: &Tensor) -> Tensor {
    features.mse_loss(target, Reduction::Mean)
}

/// Gram matrix G = FᵀF / (C·H·W), with F the map flattened to [HW, C].
///
/// Computed in fp32 whatever the input precision.
///
/// # Shapes
/// `features: [B, C, H, W]` → `[B, C, C]`
pub fn gram(features: &Tensor) -> Tensor {
    let (b, c, h, w) = features
        .size4()
        .unwrap_or_else(|_| panic!("gram expects [B, C, H, W], got {:?}", features.size()));
    let f = features.to_kind(Kind::Float).reshape([b, c, h * w]);
    f.bmm(&f.transpose(1, 2)) / (c * h * w) as f64
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
