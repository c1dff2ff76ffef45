//! Channel statistics and the AdaIN operator (Huang & Belongie 2017),
//! shared by AdaIN, the variational model and the universal decoders.
use tch::{Kind, Tensor};

/// Default ε added to the variance before the square root.
pub const EPS: f64 = 1e-5;

/// Per-instance, per-channel mean and standard deviation over the spatial
/// dimensions: σ = sqrt(Var(x) + ε), with the unbiased variance.
/// Computed in fp32.
///
/// # Shapes
/// `x: [B, C, H, W]` → (`[B, C, 1, 1]`, `[B, C, 1, 1]`)
pub fn mean_std(x: &Tensor, eps: f64) -> (Tensor, Tensor) {
    let x = x.to_kind(Kind::Float);
    let (b, c, _, _) = x
        .size4()
        .unwrap_or_else(|_| panic!("mean_std expects [B, C, H, W], got {:?}", x.size()));
    let flat = x.reshape([b, c, -1]);
    let mean = flat
        .mean_dim([2i64].as_slice(), true, Kind::Float)
        .unsqueeze(-1);
    let var = flat.var_dim([2i64].as_slice(), true, true).unsqueeze(-1);
    (mean, (var + eps).sqrt())
}

/// AdaIN(x, y) = σ(y) · (x − μ(x)) / σ(x) + μ(y).
///
/// # Shapes
/// `content: [B, C, H, W]`, `style: [B, C, H', W']` → `[B, C, H, W]`
pub fn adain(content: &Tensor, style: &Tensor) -> Tensor {
    let (mc, sc) = mean_std(content, EPS);
    let (ms, ss) = mean_std(style, EPS);
    (content.to_kind(Kind::Float) - mc) / sc * ss + ms
}
