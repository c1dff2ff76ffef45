//! The STROTSS losses (Kolkin, Salavon and Shakhnarovich, "Style Transfer by
//! Relaxed Optimal Transport and Self-Similarity", CVPR 2019).
//!
//! All work on sampled feature vectors: rows of `[N, C]` matrices (see
//! [`crate::sampling`]), so memory is O(N·M), never O((HW)²).
use nst_core::Precision;
use tch::{Kind, Tensor};

const EPS: f64 = 1e-8;

/// Cosine distance matrix d_ij = 1 − a_i·b_j / (|a_i||b_j|), one matmul.
///
/// # Shapes
/// `a: [N, C]`, `b: [M, C]` → `[N, M]`
pub fn cosine_distance(a: &Tensor, b: &Tensor) -> Tensor {
    cosine_distance_at(a, b, Precision::Fp32)
}

/// [`cosine_distance`] with the matmul run at `precision` (the norms and the
/// result are fp32).
pub fn cosine_distance_at(a: &Tensor, b: &Tensor, precision: Precision) -> Tensor {
    let an = a / a
        .norm_scalaropt_dim(2, [1i64].as_slice(), true)
        .clamp_min(EPS);
    let bn = b / b
        .norm_scalaropt_dim(2, [1i64].as_slice(), true)
        .clamp_min(EPS);
    1.0 - precision.mm(&an, &bn.transpose(0, 1))
}

/// Euclidean distance matrix d_ij = |a_i − b_j|, via |a|² + |b|² − 2a·b.
///
/// # Shapes
/// `a: [N, C]`, `b: [M, C]` → `[N, M]`
pub fn euclidean_distance(a: &Tensor, b: &Tensor) -> Tensor {
    let aa = a
        .square()
        .sum_dim_intlist([1i64].as_slice(), true, a.kind());
    let bb = b
        .square()
        .sum_dim_intlist([1i64].as_slice(), true, b.kind())
        .transpose(0, 1);
    (aa + bb - a.matmul(&b.transpose(0, 1)) * 2.0)
        .clamp_min(1e-12)
        .sqrt()
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
    self_similarity_loss_at(content, output, Precision::Fp32)
}

/// [`self_similarity_loss`] with the two N×N distance matmuls at `precision`.
pub fn self_similarity_loss_at(content: &Tensor, output: &Tensor, precision: Precision) -> Tensor {
    let dc = cosine_distance_at(content, content, precision);
    let d_o = cosine_distance_at(output, output, precision);
    let dc = &dc
        / dc.sum_dim_intlist([0i64].as_slice(), true, Kind::Float)
            .clamp_min(EPS);
    let d_o = &d_o
        / d_o
            .sum_dim_intlist([0i64].as_slice(), true, Kind::Float)
            .clamp_min(EPS);
    (dc - d_o).abs().mean(Kind::Float)
}

/// [`self_similarity_loss_at`] with a hand-written backward, for a fixed
/// content (no gradient flows to `content`): same value and gradient.
///
/// With Ô the output's unit rows, D = 1 − ÔÔᵀ, s_j = Σ_i D_ij, A = D/s and
/// E = sign(A − A^c)/N², the gradient is ∂L/∂D_ij = (E_ij − q_j)/s_j with
/// q_j = Σ_k E_kj·A_kj, and ∂L/∂Ô = −(G + Gᵀ)·Ô: one N×N×C product
/// (at `precision`), where autograd through ÔÔᵀ does two. No N×N matrix is
/// kept for a backward pass.
///
/// # Shapes
/// `content, output: [N, C]` → scalar
pub fn self_similarity_loss_fast_at(
    content: &Tensor,
    output: &Tensor,
    precision: Precision,
) -> Tensor {
    let x = output.to_kind(Kind::Float);
    let n = x.size()[0];
    let (value, grad) = tch::no_grad(|| {
        let col_normalised = |d: Tensor| {
            let s = d
                .sum_dim_intlist([0i64].as_slice(), true, Kind::Float)
                .clamp_min(EPS);
            (&d / &s, s)
        };
        let (ac, _) = col_normalised(cosine_distance_at(content, content, precision));
        let norms = x
            .norm_scalaropt_dim(2, [1i64].as_slice(), true)
            .clamp_min(EPS);
        let unit = &x / &norms;
        let (ao, s) = col_normalised(1.0 - precision.mm(&unit, &unit.transpose(0, 1)));
        let diff = &ao - ac;
        let value = diff.abs().mean(Kind::Float);
        let nn = (n * n) as f64;
        let e = diff.sign();
        // q_j / N² (the sign matrix E is kept unscaled until the end).
        let q = (&e * &ao).sum_dim_intlist([0i64].as_slice(), true, Kind::Float);
        // A clamped column sum is a constant: no q-term through it.
        let q = q * s.gt(EPS).to_kind(Kind::Float);
        let g = (e - q) / &s;
        let g_sym = &g + g.transpose(0, 1);
        let d_unit = precision.mm(&g_sym, &unit) * (-1.0 / nn);
        // Through the row normalisation: (dÔ − Ô·(Ô·dÔ)) / |x| (where not clamped).
        let radial = (&unit * &d_unit).sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
        let d_x = (d_unit - &unit * radial * norms.gt(EPS).to_kind(Kind::Float)) / &norms;
        (value, d_x)
    });
    // value: `value`; gradient: `grad` (a surrogate whose value is zero).
    let surrogate = (&x * &grad).sum(Kind::Float);
    value + (&surrogate - surrogate.detach())
}

/// The STROTSS objective L = (α·ℓc + ℓm + ℓr + α⁻¹·ℓp) / (2 + α + α⁻¹),
/// with α the content weight.
pub fn strotss_total(
    alpha: f64,
    content: &Tensor,
    moments: &Tensor,
    remd: &Tensor,
    palette: &Tensor,
) -> Tensor {
    (content * alpha + moments + remd + palette / alpha) / (2.0 + alpha + 1.0 / alpha)
}

/// Rows of `x` scaled to unit length (the cosine distance's normalisation).
pub fn unit_rows(x: &Tensor) -> Tensor {
    x / x
        .norm_scalaropt_dim(2, [1i64].as_slice(), true)
        .clamp_min(EPS)
}

/// A fixed sample set prepared once for repeated cosine distances (a STROTSS
/// style pool, fixed within a scale): its rows scaled to unit length in fp32,
/// for the gradient path, and the same rows transposed and contiguous in the
/// compute precision, the right operand of every step's N×M distance matmul.
/// Neither the norms nor the cast are recomputed per step.
pub struct UnitPool {
    unit: Tensor,
    unit_t: Tensor,
    precision: Precision,
}

impl UnitPool {
    /// # Shapes
    /// `x: [M, C]`
    pub fn new(x: &Tensor, precision: Precision) -> Self {
        let unit = unit_rows(&x.to_kind(Kind::Float)).detach();
        let unit_t = precision.cast(&unit).transpose(0, 1).contiguous();
        Self {
            unit,
            unit_t,
            precision,
        }
    }
}

/// ℓr = REMD under the cosine distance, between output hypercolumns
/// `output: [N, C]` (with gradient) and a fixed style pool (see [`UnitPool`]);
/// `extra: [N, M]` is an optional additive cost (the guided mode's region penalty).
///
/// Same value and gradient as `remd(&(cosine_distance(output, style) + extra))`
/// up to ties, at about half the cost: the N×M matrix is computed once,
/// without autograd, in the pool's precision (one matmul, then the row and
/// column minima), and only the chosen minima (one per row, or one per
/// column, for whichever mean is larger) are recomputed in fp32 with
/// gradients, which costs O((N + M)·C) instead of a second N·M·C product in
/// the backward pass. In bf16 only the choice of the minima sees the rounding.
pub fn remd_cosine(output: &Tensor, pool: &UnitPool, extra: Option<&Tensor>) -> Tensor {
    let out_unit = unit_rows(output);
    let style_unit = &pool.unit;
    let (rows, idx_r, cols, idx_c) = tch::no_grad(|| {
        // The minima of d = 1 − s (+ e) are the maxima of s (− e): one pass
        // over the N×M matrix fewer than forming d.
        let mut sim = pool.precision.cast(&out_unit).matmul(&pool.unit_t);
        if let Some(e) = extra {
            sim = sim.to_kind(Kind::Float) - e;
        }
        let (vr, ir) = sim.max_dim(1, false);
        let (vc, ic) = sim.max_dim(0, false);
        (
            1.0 - vr.mean(Kind::Float).double_value(&[]),
            ir,
            1.0 - vc.mean(Kind::Float).double_value(&[]),
            ic,
        )
    });
    if rows >= cols {
        // mean over outputs i of d(i, argmin_j)
        let matched = style_unit.index_select(0, &idx_r);
        let mut d: Tensor =
            1.0 - (&out_unit * matched).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        if let Some(e) = extra {
            d += e.gather(1, &idx_r.unsqueeze(1), false).squeeze_dim(1);
        }
        d.mean(Kind::Float)
    } else {
        // mean over style samples j of d(argmin_i, j)
        let matched = out_unit.index_select(0, &idx_c);
        let mut d: Tensor =
            1.0 - (matched * style_unit).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        if let Some(e) = extra {
            d += e.gather(0, &idx_c.unsqueeze(0), false).squeeze_dim(0);
        }
        d.mean(Kind::Float)
    }
}

/// ℓp's REMD under the Euclidean distance between output pixels `output: [N, 3]`
/// (with gradient) and a fixed style sample `style: [M, 3]`; `extra: [N, M]`
/// is an optional additive cost (the guided mode's region penalty).
///
/// Same value and gradient as `remd(&(euclidean_distance(output, style) + extra))`
/// up to ties, as [`remd_cosine`] does it: the N×M matrix without autograd,
/// then only the chosen minima recomputed with gradients, so the backward
/// pass never touches the N×M matrix.
pub fn remd_euclidean(output: &Tensor, style: &Tensor, extra: Option<&Tensor>) -> Tensor {
    let (rows, idx_r, cols, idx_c) = tch::no_grad(|| {
        let mut d = euclidean_distance(output, style);
        if let Some(e) = extra {
            d += e;
        }
        let (vr, ir) = d.min_dim(1, false);
        let (vc, ic) = d.min_dim(0, false);
        (
            vr.mean(Kind::Float).double_value(&[]),
            ir,
            vc.mean(Kind::Float).double_value(&[]),
            ic,
        )
    });
    let dist = |a: &Tensor, b: &Tensor| {
        (a - b)
            .square()
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
            .clamp_min(1e-12)
            .sqrt()
    };
    if rows >= cols {
        let d = dist(output, &style.index_select(0, &idx_r));
        // Not in place: sqrt's backward needs its output.
        let d = match extra {
            Some(e) => d + e.gather(1, &idx_r.unsqueeze(1), false).squeeze_dim(1),
            None => d,
        };
        d.mean(Kind::Float)
    } else {
        let d = dist(&output.index_select(0, &idx_c), style);
        let d = match extra {
            Some(e) => d + e.gather(0, &idx_c.unsqueeze(0), false).squeeze_dim(0),
            None => d,
        };
        d.mean(Kind::Float)
    }
}

/// `base + k·xᵀx` for `x: [n, C]`, `base: [C, C]`, in fp32. The product is
/// symmetric, so for wide `x` only the blocks on and above the diagonal are
/// multiplied (into a copy of `base`, in place) and the others are copied
/// from their mirror blocks: 10 of 16 block products, about 0.6 of the FLOPs
/// of one full `addmm` (`base` need not be symmetric).
pub fn add_gram(base: &Tensor, x: &Tensor, k: f64) -> Tensor {
    const BLOCKS: i64 = 4;
    let c = x.size()[1];
    let scaled = x * k;
    if c < 256 {
        return base.addmm(&scaled.transpose(0, 1), x);
    }
    let out = base.to_kind(Kind::Float).copy();
    let bounds: Vec<(i64, i64)> = (0..BLOCKS)
        .map(|b| (b * c / BLOCKS, (b + 1) * c / BLOCKS - b * c / BLOCKS))
        .collect();
    for (bi, &(i0, il)) in bounds.iter().enumerate() {
        for &(j0, jl) in &bounds[bi..] {
            let mut block = out.narrow(0, i0, il).narrow(1, j0, jl);
            let _ = block.addmm_(
                &scaled.narrow(1, i0, il).transpose(0, 1),
                &x.narrow(1, j0, jl),
            );
            if j0 != i0 {
                // The mirror block of k·xᵀx, added to base's own entries there.
                let mut mirror = out.narrow(0, j0, jl).narrow(1, i0, il);
                let own = base.narrow(0, i0, il).narrow(1, j0, jl);
                mirror += (&block - own).transpose(0, 1);
            }
        }
    }
    out
}

/// ℓm against fixed style moments, as [`moment_loss_to`], with a hand-written
/// backward for the covariance term: for L = (1/C²)·Σ|Σ_s − Σ_o|,
/// ∂L/∂x = 2·x_c·G/(n − 1) with G = −sign(Σ_s − Σ_o)/C² (symmetric) and x_c
/// the centred samples. Autograd through x_cᵀx_c would do two C×C×n products
/// for the backward; this does one. Same value and gradient.
pub fn moment_loss_to_fast(mu_s: &Tensor, cov_s: &Tensor, output: &Tensor) -> Tensor {
    moment_loss_to_fast_at(mu_s, cov_s, output, Precision::Fp32)
}

/// [`moment_loss_to_fast`] with the gradient's n×C×C matmul at `precision`.
/// The covariance itself, a statistic, stays fp32; the sign matrix G is exact
/// in bf16 up to its scale.
pub fn moment_loss_to_fast_at(
    mu_s: &Tensor,
    cov_s: &Tensor,
    output: &Tensor,
    precision: Precision,
) -> Tensor {
    let x = output.to_kind(Kind::Float);
    let (n, c) = (x.size()[0], x.size()[1]);
    let mu_o = x.mean_dim([0i64].as_slice(), true, Kind::Float);
    let mean_term = (mu_s - mu_o.squeeze_dim(0)).abs().mean(Kind::Float);
    let (cov_term, grad) = tch::no_grad(|| {
        let xc = &x - &mu_o;
        // Σ_s − Σ_o in one fused product-and-subtract (fp32: a statistic).
        let diff = add_gram(cov_s, &xc, -1.0 / (n - 1).max(1) as f64);
        let g = diff.sign();
        let grad = precision.mm(&xc, &g) * (-2.0 / ((c * c) as f64 * (n - 1).max(1) as f64));
        // abs + sum, not an fp32 L1 norm: LibTorch's fp32 `norm(p = 1)`
        // accumulates with ~1e-3 relative error over STROTSS's 2,176² entries.
        let l1 = diff.abs().sum(Kind::Float);
        (l1 / (c * c) as f64, grad)
    });
    // value: cov_term; gradient: grad (a surrogate whose value is zero).
    let surrogate = (&x * &grad).sum(Kind::Float);
    mean_term + cov_term + (&surrogate - surrogate.detach())
}
