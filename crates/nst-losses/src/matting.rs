//! The matting Laplacian of Levin, Lischinski and Weiss (2008), applied
//! without forming the matrix, and a fast projection onto its low-frequency
//! eigenspace.
//!
//! For 3×3 windows w_k (centred on every pixel whose window lies inside the
//! image), with colour mean μ_k, covariance Σ_k and Σ̃_k = Σ_k + (ε/|w|)·I₃,
//!
//! L_ij = Σ_{k: i,j ∈ w_k} [δ_ij − (1 + (I_i − μ_k)ᵀ Σ̃_k⁻¹ (I_j − μ_k)) / |w|].
//!
//! Applied to a signal p this is (He, Sun and Tang 2010)
//!
//! (Lp)_i = n_i·p_i − Σ_{k ∋ i} (a_kᵀ I_i + b_k),
//! a_k = Σ̃_k⁻¹ (mean_{w_k}(I p) − μ_k p̄_k),  b_k = p̄_k − μ_kᵀ a_k,
//!
//! with n_i the number of windows containing i: a few 3×3 box filters per
//! product, O(n) time and memory, on any device. Σ̃_k⁻¹ is computed once per
//! image.
use tch::{Kind, Tensor};

/// Levin et al.'s regulariser.
pub const DEFAULT_EPS: f64 = 1e-7;

/// The matting Laplacian of one RGB image, as an operator.
#[derive(Debug)]
pub struct MattingLaplacian {
    /// The guide image `[3, H, W]`.
    guide: Tensor,
    /// Window means `[3, H−2, W−2]`.
    mu: Tensor,
    /// Σ̃⁻¹ per window `[(H−2)(W−2), 3, 3]`.
    inv_cov: Tensor,
    /// Windows containing each pixel `[H, W]`.
    count: Tensor,
    pub height: i64,
    pub width: i64,
}

/// 3×3 means over every window inside the image: `[C, H, W]` → `[C, H−2, W−2]`.
fn window_mean(x: &Tensor) -> Tensor {
    x.unsqueeze(0)
        .avg_pool2d([3, 3], [1, 1], [0, 0], false, true, None)
        .squeeze_dim(0)
}

/// Σ over the windows containing each pixel of a per-window quantity:
/// `[C, H−2, W−2]` → `[C, H, W]` (the adjoint of [`window_mean`] up to 1/9).
fn scatter_windows(a: &Tensor) -> Tensor {
    a.constant_pad_nd([1, 1, 1, 1])
        .unsqueeze(0)
        .avg_pool2d([3, 3], [1, 1], [1, 1], false, true, None)
        .squeeze_dim(0)
        * 9.0
}

impl MattingLaplacian {
    /// Builds the operator for `image: [3, H, W]` (or `[1, 3, H, W]`) in [0, 1].
    pub fn new(image: &Tensor, eps: f64) -> nst_core::Result<Self> {
        let img = if image.dim() == 4 {
            image.squeeze_dim(0)
        } else {
            image.shallow_clone()
        };
        let s = img.size();
        if s.len() != 3 || s[0] != 3 || s[1] < 3 || s[2] < 3 {
            return Err(nst_core::Error::BadInput {
                what: "the matting Laplacian",
                reason: format!("needs an RGB image of at least 3×3, got {s:?}"),
            });
        }
        let (h, w) = (s[1], s[2]);
        let img = img.to_kind(Kind::Double);
        let mu = window_mean(&img);
        // Second moments of every channel pair, then the covariance per window.
        let mut cov = Vec::with_capacity(9);
        for c in 0..3 {
            for d in 0..3 {
                let m = window_mean(&(img.get(c) * img.get(d)).unsqueeze(0)).squeeze_dim(0);
                cov.push(m - mu.get(c) * mu.get(d));
            }
        }
        let n = (h - 2) * (w - 2);
        let cov = Tensor::stack(&cov, -1).reshape([n, 3, 3]);
        let eye = Tensor::eye(3, (Kind::Double, img.device())) * (eps / 9.0);
        let inv_cov = Tensor::linalg_inv(&(cov + eye));
        let count = scatter_windows(&Tensor::ones(
            [1, h - 2, w - 2],
            (Kind::Double, img.device()),
        ))
        .squeeze_dim(0);
        Ok(Self {
            guide: img,
            mu,
            inv_cov,
            count,
            height: h,
            width: w,
        })
    }

    pub fn device(&self) -> tch::Device {
        self.guide.device()
    }

    /// The number of pixels (the matrix is n × n).
    pub fn n(&self) -> i64 {
        self.height * self.width
    }

    /// L·p for signals `p: [S, H, W]` (each of the S maps is a signal), in fp64.
    pub fn apply(&self, p: &Tensor) -> Tensor {
        let kind = p.kind();
        let p = p.to_kind(Kind::Double);
        let (sig, h, w) = (p.size()[0], self.height, self.width);
        let nw = (h - 2) * (w - 2);
        let pbar = window_mean(&p); // [S, h-2, w-2]
                                    // mean(I_c p) − μ_c p̄ for c = 0..2: [S, 3, nw]
        let cross: Vec<Tensor> = (0..3)
            .map(|c| window_mean(&(&p * self.guide.get(c))) - &pbar * self.mu.get(c))
            .collect();
        let cross = Tensor::stack(&cross, 1).reshape([sig, 3, nw]);
        // a_k = Σ̃_k⁻¹ cross_k: [S, nw, 3]
        let a = self
            .inv_cov
            .unsqueeze(0)
            .matmul(&cross.permute([0, 2, 1]).unsqueeze(-1))
            .squeeze_dim(-1);
        let mu = self.mu.reshape([3, nw]).transpose(0, 1); // [nw, 3]
        let b = pbar.reshape([sig, nw])
            - (&a * mu.unsqueeze(0)).sum_dim_intlist([-1i64].as_slice(), false, Kind::Double);
        let a_maps = a.permute([0, 2, 1]).reshape([sig * 3, h - 2, w - 2]);
        let sa = scatter_windows(&a_maps).reshape([sig, 3, h, w]);
        let sb = scatter_windows(&b.reshape([sig, h - 2, w - 2]));
        let fitted =
            (sa * self.guide.unsqueeze(0)).sum_dim_intlist([1i64].as_slice(), false, Kind::Double)
                + sb;
        (&p * &self.count - fitted).to_kind(kind)
    }

    /// Tr(XᵀLX) = Σ_s ⟨x_s, L x_s⟩ for `x: [S, H, W]` or one image
    /// `[1, S, H, W]`, as a differentiable fp64 scalar (Luan et al.'s
    /// photorealism term; its gradient is 2LX).
    pub fn energy(&self, x: &Tensor) -> Tensor {
        let x = if x.dim() == 4 {
            x.squeeze_dim(0)
        } else {
            x.shallow_clone()
        };
        (x.to_kind(Kind::Double) * self.apply(&x).to_kind(Kind::Double)).sum(Kind::Double)
    }

    /// Tr(XᵀLX) as a number (see [`MattingLaplacian::energy`]).
    pub fn quadratic_form(&self, x: &Tensor) -> f64 {
        self.energy(x).double_value(&[])
    }

    /// The most windows any pixel belongs to (9 for images of at least 5×5):
    /// an upper bound on L's eigenvalues.
    pub fn max_windows_per_pixel(&self) -> f64 {
        self.count.max().double_value(&[])
    }

    /// The largest eigenvalue, by power iteration (`iters` products), from a seeded start.
    pub fn max_eigenvalue(&self, iters: usize) -> f64 {
        let mut v = Tensor::randn(
            [1, self.height, self.width],
            (Kind::Double, self.guide.device()),
        );
        let mut lambda = 0.0;
        for _ in 0..iters {
            let norm = v.norm().double_value(&[]);
            v /= norm.max(1e-300);
            let lv = self.apply(&v);
            lambda = (&v * &lv).sum(Kind::Double).double_value(&[]);
            v = lv;
        }
        lambda
    }

    /// The dense matrix (tests and tiny images only): column j = L·e_j.
    pub fn dense(&self) -> Tensor {
        let n = self.n();
        let eye = Tensor::eye(n, (Kind::Double, self.guide.device())).reshape([
            n,
            self.height,
            self.width,
        ]);
        self.apply(&eye).reshape([n, n]).transpose(0, 1)
    }
}
