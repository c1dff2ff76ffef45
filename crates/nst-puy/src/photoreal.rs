//! The run-time projection of the photorealistic mode, fast at 512×512.
//!
//! The exact band-limited projection at full resolution needs a Chebyshev
//! degree of order λ_max/λ_k: at 512×512, k = 1000 puts λ_k near 2e-2 against
//! λ_max ≤ 9, i.e. several hundred products with L per projection (about
//! 0.2–0.4 s each on this 2-core CPU). That cannot meet a 5 s budget for four
//! projections. We therefore project at a **working resolution** and bring
//! the result back with the content image as guide:
//!
//! 1. area-downsample X to the working size (longer side `work_side`, 128 by
//!    default) and apply [`BandlimitedProjection`] for the matting Laplacian
//!    of the downsampled content there (k counted at that size);
//! 2. fit, in every 3×3 window of the working grid, the local affine model
//!    p ≈ a·I + b of the projected signal p in terms of the downsampled
//!    content I (a guided filter: a = (Σ + εI₃)⁻¹ cov(I, p), b = p̄ − aᵀμ),
//!    average a and b over the windows, upsample them bilinearly, and
//!    evaluate a·I_full + b on the full-resolution content.
//!
//! Step 2 is the "fast guided filter" upsampling of He and Sun (2015). Its
//! output is locally an affine function of the content's colours, which is
//! precisely the null space of the matting Laplacian's windows
//! (Levin et al. 2008): edges follow the content image at full resolution.
//! Below the working size the exact-ish projection runs at full resolution.
//! `docs/puy-perez.md` gives the measured error and cost.
use crate::matting::{MattingLaplacian, DEFAULT_EPS};
use crate::projection::{Band, BandlimitedProjection};
use tch::{Kind, Tensor};

/// Settings of [`PhotorealProjection`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhotorealOptions {
    pub band: Band,
    /// The longer side of the grid the projection runs on.
    pub work_side: i64,
    /// Chebyshev degree of the low-pass filter.
    pub degree: usize,
    /// Rademacher probes of the eigencount estimate.
    pub probes: usize,
    /// ε of the matting Laplacian (Levin et al.: 1e-7).
    pub matting_eps: f64,
    /// ε of the guided upsampling (colour variance units, images in [0, 1]).
    pub guided_eps: f64,
}

impl Default for PhotorealOptions {
    fn default() -> Self {
        Self {
            band: Band::Count(1000),
            work_side: 128,
            degree: 100,
            probes: 8,
            matting_eps: DEFAULT_EPS,
            guided_eps: 1e-4,
        }
    }
}

/// P[X] ≈ X projected on span(U_k) of the content's matting Laplacian.
#[derive(Debug)]
pub struct PhotorealProjection {
    pub projection: BandlimitedProjection,
    /// Full-resolution guide `[3, H, W]` (fp32) when the projection runs downsampled.
    guide_full: Option<Tensor>,
    /// The working-size guide `[3, h, w]` (fp64), its window means and (Σ + εI)⁻¹.
    guide_low: Tensor,
    mu_low: Tensor,
    inv_low: Tensor,
    pub full_size: (i64, i64),
    pub work_size: (i64, i64),
}

/// Means over the (2r+1)² windows around each pixel (clipped at the border).
fn box_mean(x: &Tensor, r: i64) -> Tensor {
    x.unsqueeze(0)
        .avg_pool2d([2 * r + 1, 2 * r + 1], [1, 1], [r, r], false, false, None)
        .squeeze_dim(0)
}

impl PhotorealProjection {
    /// Prepares the projection for `content: [1, 3, H, W]` or `[3, H, W]` in [0, 1].
    pub fn new(content: &Tensor, opts: PhotorealOptions) -> nst_core::Result<Self> {
        let img = if content.dim() == 4 {
            content.squeeze_dim(0)
        } else {
            content.shallow_clone()
        };
        let s = img.size();
        if s.len() != 3 || s[0] != 3 {
            return Err(nst_core::Error::BadInput {
                what: "the photoreal projection",
                reason: format!("the content must be one RGB image, got {s:?}"),
            });
        }
        if opts.work_side < 8 {
            return Err(nst_core::Error::BadInput {
                what: "the photoreal projection",
                reason: format!(
                    "its working side must be at least 8, got {}",
                    opts.work_side
                ),
            });
        }
        let (h, w) = (s[1], s[2]);
        let img = img.to_kind(Kind::Float);
        let (wh, ww, low) = if h.max(w) <= opts.work_side {
            (h, w, img.shallow_clone())
        } else {
            let f = opts.work_side as f64 / h.max(w) as f64;
            let wh = ((h as f64 * f).round() as i64).max(3);
            let ww = ((w as f64 * f).round() as i64).max(3);
            let low = img
                .unsqueeze(0)
                .adaptive_avg_pool2d([wh, ww])
                .squeeze_dim(0);
            (wh, ww, low)
        };
        let band = match opts.band {
            Band::Count(k) => Band::Count(k.min((wh * ww) as usize - 1).max(1)),
            b => b,
        };
        let laplacian = MattingLaplacian::new(&low, opts.matting_eps)?;
        let projection = BandlimitedProjection::new(laplacian, band, opts.degree, opts.probes)?;
        let guide_low = low.to_kind(Kind::Double);
        let mu_low = box_mean(&guide_low, 1);
        let mut cov = Vec::with_capacity(9);
        for c in 0..3 {
            for d in 0..3 {
                let m =
                    box_mean(&(guide_low.get(c) * guide_low.get(d)).unsqueeze(0), 1).squeeze_dim(0);
                cov.push(m - mu_low.get(c) * mu_low.get(d));
            }
        }
        let cov = Tensor::stack(&cov, -1).reshape([wh * ww, 3, 3]);
        let eye = Tensor::eye(3, (Kind::Double, img.device())) * opts.guided_eps;
        let inv_low = Tensor::linalg_inv(&(cov + eye));
        Ok(Self {
            projection,
            guide_full: (wh != h || ww != w).then_some(img),
            guide_low,
            mu_low,
            inv_low,
            full_size: (h, w),
            work_size: (wh, ww),
        })
    }

    /// Whether the projection runs on a downsampled grid.
    pub fn downsampled(&self) -> bool {
        self.guide_full.is_some()
    }

    /// Projects an image batch `[B, 3, H, W]` channel by channel.
    ///
    /// # Panics
    /// If `x` is not 4-d or not of the content's size (a caller's invariant:
    /// the solver only passes its own iterates).
    pub fn apply_image(&self, x: &Tensor) -> Tensor {
        let Some(guide) = &self.guide_full else {
            return self.projection.apply_image(x);
        };
        let kind = x.kind();
        let (b, c, h, w) = x.size4().expect("images are [B, 3, H, W]");
        let (wh, ww) = self.work_size;
        let low = x.to_kind(Kind::Float).adaptive_avg_pool2d([wh, ww]);
        let p = self
            .projection
            .apply(&low.reshape([b * c, wh, ww]))
            .to_kind(Kind::Double); // [S, wh, ww]
        let sig = b * c;
        let n = wh * ww;
        let pbar = box_mean(&p, 1);
        let cross: Vec<Tensor> = (0..3)
            .map(|k| box_mean(&(&p * self.guide_low.get(k)), 1) - &pbar * self.mu_low.get(k))
            .collect();
        let cross = Tensor::stack(&cross, 1).reshape([sig, 3, n]);
        let a = self
            .inv_low
            .unsqueeze(0)
            .matmul(&cross.permute([0, 2, 1]).unsqueeze(-1))
            .squeeze_dim(-1); // [S, n, 3]
        let mu = self.mu_low.reshape([3, n]).transpose(0, 1);
        let bcoef = pbar.reshape([sig, n])
            - (&a * mu.unsqueeze(0)).sum_dim_intlist([-1i64].as_slice(), false, Kind::Double);
        let a_maps = box_mean(&a.permute([0, 2, 1]).reshape([sig * 3, wh, ww]), 1);
        let b_maps = box_mean(&bcoef.reshape([sig, wh, ww]), 1);
        let up = |m: &Tensor| {
            m.to_kind(Kind::Float)
                .unsqueeze(0)
                .upsample_bilinear2d([h, w], false, None, None)
                .squeeze_dim(0)
        };
        let a_full = up(&a_maps).reshape([sig, 3, h, w]);
        let b_full = up(&b_maps);
        let q =
            (a_full * guide.unsqueeze(0)).sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
                + b_full;
        q.reshape([b, c, h, w]).to_kind(kind)
    }
}
