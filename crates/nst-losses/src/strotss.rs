//! The STROTSS losses (Kolkin, Salavon and Shakhnarovich, "Style Transfer by
//! Relaxed Optimal Transport and Self-Similarity", CVPR 2019).
//!
//! All work on sampled feature vectors: rows of `[N, C]` matrices (see
//! [`crate::sampling`]), so memory is O(N·M), never O((HW)²).
use tch::{Kind, Tensor};

const EPS: f64 = 1e-8;

/// Cosine distance matrix d_ij = 1 − a_i·b_j / (|a_i||b_j|), one matmul.
///
/// # Shapes
/// `a: [N, C]`, `b: [M, C]` → `[N, M]`
pub fn cosine_distance(a: &Tensor, b: &Tensor) -> Tensor {
    let an = a / a.norm_scalaropt_dim(2, [1i64].as_slice(), true).clamp_min(EPS);
    let bn = b / b.norm_scalaropt_dim(2, [1i64].as_slice(), true).clamp_min(EPS);
    1.0 - an.matmul(&bn.transpose(0, 1))
}

/// Euclidean distance matrix d_ij = |a_i − b_j|, via |a|² + |b|² − 2a·b.
///
/// # Shapes
/// `a: [N, C]`, `b: [M, C]` → `[N, M]`
pub fn euclidean_distance(a: &Tensor, b: &Tensor) -> Tensor {
    let aa = a.square().sum_dim_intlist([1i64].as_slice(), true, a.kind());
    let bb = b.square().sum_dim_intlist([1i64].as_slice(), true, b.kind()).transpose(0, 1);
    (aa + bb - a.matmul(&b.transpose(0, 1)) * 2.0).clamp_min(1e-12).sqrt()
}

/// Relaxed earth mover's distance of a cost matrix:
/// REMD = max( mean_i min_j d_ij, mean_j min_i d_ij ).
///
/// # Shapes
/// `d: [N, M]` → scalar
pub fn remd(d: &Tensor) -> Tensor {
    let rows = d.amin([1i64].as_slice(), false).mean(Kind::Float);
    let cols = d.amin([0i64].as_slice(), false).mean(Kind::Float);
    rows.maximum(&cols)
}

/// ℓr: REMD between two sets of hypercolumns under the cosine distance.
pub fn remd_loss(style: &Tensor, output: &Tensor) -> Tensor {
    remd(&cosine_distance(style, output))
}

/// ℓp, the palette loss: REMD between two sets of pixel colours under the Euclidean distance.
///
/// # Shapes
/// `style, output: [N, 3]`, `[M, 3]` → scalar
pub fn palette_loss(style: &Tensor, output: &Tensor) -> Tensor {
    remd(&euclidean_distance(style, output))
}

/// Feature mean `[C]` and unbiased covariance `[C, C]` of `[N, C]` samples, in fp32.
pub fn mean_and_cov(x: &Tensor) -> (Tensor, Tensor) {
    let x = x.to_kind(Kind::Float);
    let n = x.size()[0];
    let mu = x.mean_dim([0i64].as_slice(), true, Kind::Float);
    let xc = &x - &mu;
    let cov = xc.transpose(0, 1).matmul(&xc) / (n - 1).max(1) as f64;
    (mu.squeeze_dim(0), cov)
}

/// ℓm, the moment loss: (1/C)·|μ_s − μ_o|₁ + (1/C²)·|Σ_s − Σ_o|₁, with the
/// feature mean μ and the (unbiased) covariance Σ.
///
/// # Shapes
/// `style: [N, C]`, `output: [M, C]` → scalar
pub fn moment_loss(style: &Tensor, output: &Tensor) -> Tensor {
    let (mu_s, cov_s) = mean_and_cov(style);
    moment_loss_to(&mu_s, &cov_s, output)
}

/// ℓm against precomputed style moments (see [`mean_and_cov`]), so a fixed
/// style pool's C×C covariance is computed once rather than at every step.
pub fn moment_loss_to(mu_s: &Tensor, cov_s: &Tensor, output: &Tensor) -> Tensor {
    let (mu_o, cov_o) = mean_and_cov(output);
    (mu_s - mu_o).abs().mean(Kind::Float) + (cov_s - cov_o).abs().mean(Kind::Float)
}

/// ℓc, the self-similarity content loss:
/// (1/N²) Σ_ij | D^c_ij / Σ_i D^c_ij − D^o_ij / Σ_i D^o_ij |,
/// with D the cosine-distance matrix of an image's own N sampled feature vectors.
/// Content and output must be sampled at the same N locations.
///
/// # Shapes
/// `content, output: [N, C]` → scalar
pub fn self_similarity_loss(content: &Tensor, output: &Tensor) -> Tensor {
    let dc = cosine_distance(content, content);
    let d_o = cosine_distance(output, output);
    let dc = &dc / dc.sum_dim_intlist([0i64].as_slice(), true, Kind::Float).clamp_min(EPS);
    let d_o = &d_o / d_o.sum_dim_intlist([0i64].as_slice(), true, Kind::Float).clamp_min(EPS);
    (dc - d_o).abs().mean(Kind::Float)
}

/// The STROTSS objective L = (α·ℓc + ℓm + ℓr + α⁻¹·ℓp) / (2 + α + α⁻¹),
/// with α the content weight.
pub fn strotss_total(alpha: f64, content: &Tensor, moments: &Tensor, remd: &Tensor, palette: &Tensor) -> Tensor {
    (content * alpha + moments + remd + palette / alpha) / (2.0 + alpha + 1.0 / alpha)
}
