//! Projection onto span(U_k), the k eigenvectors of the matting Laplacian
//! with the smallest eigenvalues, by a Chebyshev polynomial filter.
//!
//! The ideal projector U_kU_kᵀ = h(L) with h(λ) = 1 for λ ≤ λ_k and 0 above.
//! We map the spectrum [0, λ_max] to [−1, 1] (L̃ = 2L/λ_max − I) and apply the
//! degree-M Chebyshev expansion of h with Jackson damping (which removes the
//! Gibbs overshoot, so the filter stays within [0, 1]):
//!
//! P x = Σ_{j=0}^{M} g_j c_j T_j(L̃) x,  c_0 = 1 − θ_c/π,  c_j = −2 sin(jθ_c)/(jπ),
//! θ_c = arccos(2λ_c/λ_max − 1),
//!
//! g_j the Jackson coefficients. Cost: M products with L (each a few 3×3 box
//! filters, see [`crate::matting`]), no eigendecomposition, O(n) memory.
//!
//! The cutoff λ_c for a given k is estimated once per image from the
//! spectral density: the eigencount below c is tr(h_c(L)), estimated by
//! Hutchinson's trace estimator with R Rademacher probes on the same
//! Chebyshev moments μ_j = E zᵀT_j(L̃)z, so every trial cutoff costs nothing;
//! bisection on c then gives count(λ_c) = k.
//!
//! The filter is a smooth step: eigenvectors with eigenvalues within about
//! λ_max/M of λ_c are partially kept. The tests measure the resulting error
//! against the exact U_kU_kᵀ on small images.
use crate::matting::MattingLaplacian;
use tch::{Kind, Tensor};

/// The Chebyshev low-pass filter for one Laplacian.
#[derive(Debug)]
pub struct BandlimitedProjection {
    pub laplacian: MattingLaplacian,
    pub lambda_max: f64,
    pub cutoff: f64,
    pub degree: usize,
    coeffs: Vec<f64>,
}

/// Jackson damping factors g_0 … g_M.
fn jackson(m: usize) -> Vec<f64> {
    let a = std::f64::consts::PI / (m as f64 + 2.0);
    (0..=m)
        .map(|j| {
            let j = j as f64;
            ((m as f64 + 2.0 - j) * (j * a).cos() * a.sin() + (j * a).sin() * a.cos())
                / ((m as f64 + 2.0) * a.sin())
        })
        .collect()
}

/// Damped Chebyshev coefficients of the indicator of [0, cutoff] on [0, λ_max].
fn step_coeffs(cutoff: f64, lambda_max: f64, m: usize) -> Vec<f64> {
    let t = (2.0 * cutoff / lambda_max - 1.0).clamp(-1.0, 1.0);
    let theta = t.acos();
    let g = jackson(m);
    (0..=m)
        .map(|j| {
            let c = if j == 0 {
                1.0 - theta / std::f64::consts::PI
            } else {
                -2.0 * (j as f64 * theta).sin() / (j as f64 * std::f64::consts::PI)
            };
            c * g[j]
        })
        .collect()
}

/// How the band is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Band {
    /// The k smallest eigenvalues (cutoff estimated from the spectral density).
    Count(usize),
    /// A cutoff as a fraction of λ_max.
    Fraction(f64),
}

impl BandlimitedProjection {
    /// Prepares the filter for `laplacian`, then the cutoff for `band` (for
    /// [`Band::Count`], from `probes` Rademacher vectors seeded by LibTorch's
    /// generator).
    ///
    /// The spectrum's upper end needs no estimate: every window's block
    /// I − (11ᵀ + DΣ̃⁻¹Dᵀ)/|w| is at most I, so λ_max(L) ≤ max_i n_i = 9
    /// (the most windows a pixel belongs to). Using the bound keeps L̃'s
    /// spectrum inside [−1, 1], where the Chebyshev recurrence is stable.
    pub fn new(
        laplacian: MattingLaplacian,
        band: Band,
        degree: usize,
        probes: usize,
    ) -> nst_core::Result<Self> {
        let bad = |reason: String| nst_core::Error::BadInput {
            what: "the band-limited projection",
            reason,
        };
        if degree < 2 {
            return Err(bad("the Chebyshev degree must be at least 2".into()));
        }
        let lambda_max = laplacian.max_windows_per_pixel();
        let cutoff = match band {
            Band::Fraction(f) => {
                if !(f > 0.0 && f < 1.0) {
                    return Err(bad(format!(
                        "the cutoff fraction must be in (0, 1), got {f}"
                    )));
                }
                f * lambda_max
            }
            Band::Count(k) => {
                let n = laplacian.n() as usize;
                if k == 0 || k >= n {
                    return Err(bad(format!(
                        "k must be in 1..{n} (the number of pixels), got {k}"
                    )));
                }
                let mu = moments(&laplacian, lambda_max, degree, probes.max(1));
                let count = |c: f64| -> f64 {
                    step_coeffs(c, lambda_max, degree)
                        .iter()
                        .zip(&mu)
                        .map(|(a, b)| a * b)
                        .sum()
                };
                // The count is monotone in c (up to estimator noise): bisection in log space.
                let (mut lo, mut hi) = (lambda_max * 1e-9, lambda_max);
                for _ in 0..60 {
                    let mid = (lo * hi).sqrt();
                    if count(mid) < k as f64 {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                hi
            }
        };
        let coeffs = step_coeffs(cutoff, lambda_max, degree);
        Ok(Self {
            laplacian,
            lambda_max,
            cutoff,
            degree,
            coeffs,
        })
    }

    /// P x for `x: [S, H, W]` (e.g. the three colour channels), in x's kind.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let x = x.to_kind(Kind::Double);
        let scale = 2.0 / self.lambda_max;
        let lt = |v: &Tensor| self.laplacian.apply(v) * scale - v;
        let mut t_prev = x.shallow_clone();
        let mut t_cur = lt(&x);
        let mut out = &t_prev * self.coeffs[0] + &t_cur * self.coeffs[1];
        for c in &self.coeffs[2..] {
            let t_next = lt(&t_cur) * 2.0 - &t_prev;
            out += &t_next * *c;
            t_prev = t_cur;
            t_cur = t_next;
        }
        out.to_kind(kind)
    }

    /// Projects an image batch `[B, 3, H, W]` channel by channel.
    pub fn apply_image(&self, x: &Tensor) -> Tensor {
        let (b, c, h, w) = x.size4().expect("images are [B, 3, H, W]");
        self.apply(&x.reshape([b * c, h, w])).reshape([b, c, h, w])
    }
}

/// μ_j = (1/R) Σ_r z_rᵀ T_j(L̃) z_r for j = 0 … M.
fn moments(l: &MattingLaplacian, lambda_max: f64, m: usize, probes: usize) -> Vec<f64> {
    let z = Tensor::randint(
        2,
        [probes as i64, l.height, l.width],
        (Kind::Double, l.device()),
    ) * 2.0
        - 1.0;
    let scale = 2.0 / lambda_max;
    let lt = |v: &Tensor| l.apply(v) * scale - v;
    let dot = |a: &Tensor| (&z * a).sum(Kind::Double).double_value(&[]) / probes as f64;
    let mut mu = Vec::with_capacity(m + 1);
    let mut t_prev = z.shallow_clone();
    let mut t_cur = lt(&z);
    mu.push(dot(&t_prev));
    mu.push(dot(&t_cur));
    for _ in 2..=m {
        let t_next = lt(&t_cur) * 2.0 - &t_prev;
        mu.push(dot(&t_next));
        t_prev = t_cur;
        t_cur = t_next;
    }
    mu
}
