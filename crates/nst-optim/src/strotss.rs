//! STROTSS: Kolkin, Salavon and Shakhnarovich, "Style Transfer by Relaxed
//! Optimal Transport and Self-Similarity" (CVPR 2019).
//!
//! Objective (per scale, α the content weight):
//! L = (α·ℓc + ℓm + ℓr + α⁻¹·ℓp) / (2 + α + α⁻¹), with the losses of
//! [`nst_losses::strotss`] on hypercolumns sampled at random locations.
//! As in the published code, ℓc enters multiplied by the number of samples N
//! (the (1/N²)-normalised self-similarity loss shrinks like 1/N otherwise, and
//! the content would vanish from L at 1,000 samples).
//!
//! Procedure:
//! * `scales` scales, coarse to fine; the long side doubles each time and the
//!   last one is the requested size. α is halved at each scale. Scales above
//!   512 px run fewer steps ([`StrotssConfig::steps_at`]), and those that do
//!   not fit in memory can run tile by tile ([`Strotss::run_tiled`]).
//! * The image is parameterised as a Laplacian pyramid (`pyramid_levels` bands)
//!   of the image in [−1, 1] and optimised with RMSprop (lr in that space, as
//!   in the published code's default "uniform" space). The last scale uses lr/2,
//!   as the published code does.
//! * Scale 1 starts from the style's mean colour plus the bottom (finest) band
//!   of the content's Laplacian pyramid, `c − up(down(c))`: the published code's
//!   reading of "the content's Laplacian plus the style's mean colour". The
//!   blurred content is deliberately *not* included: the edges carry the
//!   structure, the style supplies the colours. Each later scale starts from the
//!   previous result, upsampled, plus the content's detail band at the new size
//!   (not at the last scale).
//! * Hypercolumns are brought to the scale of torchvision-preprocessed VGG
//!   features (Caffe-scaled weights give features ≈58× larger), times
//!   [`FEATURE_CALIBRATION`], so ℓm, whose covariance term grows with the square
//!   of the scale, keeps a balance with ℓc like the published code's.
//! * Every step samples `output_samples` fresh output locations; the style side is
//!   a pool of `style_samples` locations drawn once per scale.
//! * Guidance: with region masks, output samples are matched to style samples of
//!   the same region: cross-region pairs get `region_penalty` added to their
//!   REMD/palette cost, and ℓm is computed region by region.
use crate::{Error, Result};
use nst_losses::strotss::{remd_cosine, remd_euclidean, self_similarity_loss_fast_at, UnitPool};
use nst_losses::{hypercolumns, hypercolumns_in_window, random_coords};
use nst_tiling::{Grid, Rect, Tiling};
use nst_vgg::{Tap, Vgg};
use tch::{Kind, Tensor};

mod staged;

/// How the hypercolumns' maps are encoded: channels-last, in the compute
/// precision. Each step reads them only at the sampled pixels (see
/// [`hypercolumns`]).
const MAPS: nst_vgg::EncodeOptions = nst_vgg::EncodeOptions {
    channels_last: true,
    keep_precision: true,
};

/// The published code multiplies its user-facing content weight by 16 (its
/// default 1.0 is an internal 16 at the first scale); `alpha = 1` here means the same.
pub const ALPHA_GAIN: f64 = 16.0;

/// Extra factor on the hypercolumns after bringing them to torchvision's input
/// scale. ℓc and ℓr use cosine distances and do not depend on it, but ℓm's pull
/// grows with the square of the feature scale, so it sets the balance between
/// content and style. Our weights (Keras/Caffe VGG19) are not the torchvision
/// VGG16 the published code used, and the input-gain conversion alone left ℓm
/// too strong: at α = 1 the skyline of `chicago` vanished under `la_muse`.
/// Calibrated by eye on that pair at 256 px (3 scales × 100 steps): 1.0 loses
/// the content, 0.5 keeps the skyline's outline, 0.35 keeps it recognisable
/// with la_muse's palette and strokes, 0.25 loses most of the style's colours.
pub const FEATURE_CALIBRATION: f64 = 0.35;

/// Context per side of each tile in a tiled scale, in px: the hypercolumn
/// reaches `relu5_1`, as Gatys's default style layers do, and the same halo
/// keeps the tiled gradient within the whole one's to the tolerance of
/// `tiled_strotss_matches_the_whole_loss_and_gradient`.
pub const HALO: i64 = crate::gatys::tiled::HALO;

/// Tile boundaries fall on multiples of `relu5_1`'s stride.
pub const ALIGN: i64 = crate::gatys::tiled::ALIGN;

/// Whole-image state of a tiled scale per pixel, besides the tiles' working
/// memory (fp32 RGB, 12 B per image): the Laplacian-pyramid bands (4/3 of an
/// image) with their gradient and the optimiser's one or two moments (16 B
/// each), the image, its detached copy and gradient, the content, the
/// pyramid fold's intermediate images (about 48 B) and the random
/// permutation that draws the samples (8 B).
pub const STATE_BYTES_PER_PIXEL: u64 = 4 * 16 + 4 * 12 + 48 + 8;

/// Settings of a STROTSS run.
#[derive(Debug, Clone)]
pub struct StrotssConfig {
    /// User-facing content weight: the first scale's α is `alpha · ALPHA_GAIN`,
    /// halved at each later scale (see [`ALPHA_GAIN`]).
    pub alpha: f64,
    pub scales: usize,
    pub steps_per_scale: usize,
    /// Learning rate in [−1, 1] pixel space (halved at the last scale).
    pub lr: f64,
    pub optimizer: StrotssOptimizer,
    pub output_samples: i64,
    pub style_samples: i64,
    pub pyramid_levels: usize,
    /// VGG taps forming the hypercolumn.
    pub layers: Vec<Tap>,
    /// Extra cost of matching an output sample to a style sample of another region.
    pub region_penalty: f64,
    /// Precision of the VGG and of the distance matmuls (ℓr's N×M matrix, ℓc's
    /// N×N ones); moments, minima values and the optimiser stay fp32. The VGG's
    /// own precision is set where it is loaded ([`nst_vgg::Vgg::with_precision`]).
    pub precision: nst_core::Precision,
}

impl Default for StrotssConfig {
    fn default() -> Self {
        let t = |b, i| Tap::relu(b, i);
        Self {
            alpha: 1.0,
            scales: 4,
            steps_per_scale: 200,
            lr: 2e-3,
            optimizer: StrotssOptimizer::Rmsprop,
            output_samples: 1024,
            style_samples: 5000,
            pyramid_levels: 5,
            layers: vec![
                t(1, 1),
                t(1, 2),
                t(2, 1),
                t(2, 2),
                t(3, 1),
                t(3, 2),
                t(3, 3),
                t(4, 1),
                t(5, 1),
            ],
            region_penalty: 2.0,
            precision: nst_core::Precision::Fp32,
        }
    }
}

impl StrotssConfig {
    /// The effective α at scale `s` (0-based): alpha · ALPHA_GAIN / 2^s.
    pub fn alpha_at(&self, s: usize) -> f64 {
        self.alpha * ALPHA_GAIN / (1u64 << s) as f64
    }

    /// Long sides of the scales for a final long side `size`: size/2^(k−1), …, size/2, size.
    pub fn scale_sizes(&self, size: i64) -> Vec<i64> {
        (0..self.scales).rev().map(|s| (size >> s).max(1)).collect()
    }

    /// The steps of a scale with long side `side`: `steps_per_scale` up to
    /// [`crate::gatys::tiled::BASE_SIDE`] (512 px), then half as many per
    /// doubling above it, at least 10 (4096 px with 200 steps: 512 × 200,
    /// 1024 × 100, 2048 × 50, 4096 × 25). The fine scales only refine what
    /// the coarse ones placed, and each costs 4× the one before.
    pub fn steps_at(&self, side: i64) -> usize {
        let mut steps = self.steps_per_scale;
        let mut l = side;
        while l > crate::gatys::tiled::BASE_SIDE {
            steps = (steps / 2).max(10).min(self.steps_per_scale);
            l = (l + 1) / 2;
        }
        steps
    }

    /// The scales of an output of `height × width`, coarse to fine: each
    /// one's size (the long side from [`StrotssConfig::scale_sizes`], at
    /// least 16 px per side) and steps ([`StrotssConfig::steps_at`]).
    pub fn schedule(&self, height: i64, width: i64) -> Vec<crate::gatys::tiled::Scale> {
        let long = height.max(width);
        self.scale_sizes(long)
            .into_iter()
            .map(|side| crate::gatys::tiled::Scale {
                height: ((height as f64 * side as f64 / long as f64).round() as i64).max(16),
                width: ((width as f64 * side as f64 / long as f64).round() as i64).max(16),
                steps: self.steps_at(side),
            })
            .collect()
    }
}

/// The loss terms at one step (unweighted) and the weighted total.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StrotssTerms {
    pub content: f64,
    pub moments: f64,
    pub remd: f64,
    pub palette: f64,
    pub total: f64,
}

/// Region masks for guided transfer: label maps with values 0..R, the same
/// label meaning corresponding regions. Build them with [`crate::masks`].
#[derive(Debug)]
pub struct Guidance {
    /// `[H, W]` int64 labels at the content image's full resolution.
    pub content: Tensor,
    /// One `[H', W']` int64 label map per style image, at its full resolution.
    pub styles: Vec<Tensor>,
    pub regions: i64,
}

/// A style image and its weight in ℓr, ℓm and ℓp.
pub struct StyleInput<'a> {
    pub image: &'a Tensor,
    pub weight: f64,
}

/// RGB in [0, 1] → the optimisation space [−1, 1] (the published code's "uniform" space).
fn to_space(x: &Tensor) -> Tensor {
    x * 2.0 - 1.0
}

fn from_space(z: &Tensor) -> Tensor {
    (z + 1.0) * 0.5
}

fn resize(x: &Tensor, h: i64, w: i64) -> Tensor {
    nst_core::resize_to(x, h, w)
}

/// x − upsample(downsample(x)): the detail band of `x`.
pub fn detail_band(x: &Tensor) -> Tensor {
    let (_, _, h, w) = x.size4().unwrap_or((1, 3, 2, 2));
    x - resize(&resize(x, (h / 2).max(1), (w / 2).max(1)), h, w)
}

/// Splits `x` into `levels` detail bands plus a low-pass residual.
pub fn laplacian_pyramid(x: &Tensor, levels: usize) -> Vec<Tensor> {
    let mut bands = Vec::with_capacity(levels + 1);
    let mut cur = x.shallow_clone();
    for _ in 0..levels {
        let (_, _, h, w) = cur.size4().unwrap_or((1, 3, 1, 1));
        if h < 2 || w < 2 {
            break;
        }
        let down = resize(&cur, h / 2, w / 2);
        bands.push(&cur - resize(&down, h, w));
        cur = down;
    }
    bands.push(cur);
    bands
}

/// Inverse of [`laplacian_pyramid`].
pub fn fold_pyramid(bands: &[Tensor]) -> Tensor {
    let mut cur = bands[bands.len() - 1].shallow_clone();
    for b in bands[..bands.len() - 1].iter().rev() {
        let (_, _, h, w) = b.size4().unwrap_or((1, 3, 1, 1));
        cur = b + resize(&cur, h, w);
    }
    cur
}

/// The optimiser of the pyramid coefficients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StrotssOptimizer {
    /// RMSprop (α = 0.99, ε = 1e-8, no momentum), torch.optim.RMSprop's defaults, as published.
    #[default]
    Rmsprop,
    /// Adam (β = 0.9, 0.999, ε = 1e-8).
    Adam,
}

/// RMSprop or Adam over the pyramid bands.
struct PyramidOpt {
    kind: StrotssOptimizer,
    lr: f64,
    t: i32,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl PyramidOpt {
    fn new(kind: StrotssOptimizer, params: &[Tensor], lr: f64) -> Self {
        let z = || params.iter().map(|p| p.zeros_like()).collect();
        Self {
            kind,
            lr,
            t: 0,
            m: z(),
            v: z(),
        }
    }

    fn step(&mut self, params: &mut [Tensor]) {
        self.t += 1;
        tch::no_grad(|| {
            for ((p, m), v) in params
                .iter_mut()
                .zip(self.m.iter_mut())
                .zip(self.v.iter_mut())
            {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let upd = match self.kind {
                    StrotssOptimizer::Rmsprop => {
                        *v *= 0.99;
                        *v += g.square() * 0.01;
                        &g / (v.sqrt() + 1e-8) * self.lr
                    }
                    StrotssOptimizer::Adam => {
                        *m *= 0.9;
                        *m += &g * 0.1;
                        *v *= 0.999;
                        *v += g.square() * 0.001;
                        let (b1, b2) = (1.0 - 0.9f64.powi(self.t), 1.0 - 0.999f64.powi(self.t));
                        (&*m / b1) / ((&*v / b2).sqrt() + 1e-8) * self.lr
                    }
                };
                *p -= upd;
                p.zero_grad();
            }
        });
    }
}

/// Per-style data fixed for one scale: the sampled hypercolumns, pixels and labels.
struct StylePool {
    /// The sampled hypercolumns as unit rows (ℓr only needs their directions),
    /// normalised and cast to the compute precision once per scale.
    unit: UnitPool,
    pixels: Tensor,
    labels: Option<Tensor>,
    /// Mean and covariance of `feats` (index 0: all samples; r + 1: region r).
    moments: Vec<Option<(Tensor, Tensor)>>,
    weight: f64,
}

/// A STROTSS problem bound to a VGG.
pub struct Strotss<'a> {
    vgg: &'a Vgg,
    cfg: StrotssConfig,
}

/// The indices of the `coords` that lie in `core`, if any.
fn in_core(coords: &Tensor, core: &Rect) -> Option<Tensor> {
    let (r, c) = (coords.select(1, 0), coords.select(1, 1));
    let inside = r
        .ge(core.y)
        .logical_and(&r.lt(core.y + core.h))
        .logical_and(&c.ge(core.x))
        .logical_and(&c.lt(core.x + core.w));
    let idx = inside.nonzero().squeeze_dim(1);
    (idx.size()[0] > 0).then_some(idx)
}

/// A style image resized so that its long side is `side` (at least 16 px
/// per side), on `device`, with its height and width.
fn style_at(image: &Tensor, side: i64, device: tch::Device) -> (Tensor, i64, i64) {
    let s_img = image.to_device(device).to_kind(Kind::Float);
    let (sh, sw) = (s_img.size()[2], s_img.size()[3]);
    let scale = side as f64 / sh.max(sw) as f64;
    let (th, tw) = (
        ((sh as f64 * scale).round() as i64).max(16),
        ((sw as f64 * scale).round() as i64).max(16),
    );
    (resize(&s_img, th, tw), th, tw)
}

fn label_at(labels: &Tensor, coords: &Tensor, h: i64, w: i64) -> Tensor {
    // Nearest label at each sampled pixel of an h×w image.
    let (lh, lw) = (labels.size()[0], labels.size()[1]);
    let r = ((coords.select(1, 0).to_kind(Kind::Double) + 0.5) * (lh as f64 / h as f64))
        .floor()
        .clamp(0.0, (lh - 1) as f64);
    let c = ((coords.select(1, 1).to_kind(Kind::Double) + 0.5) * (lw as f64 / w as f64))
        .floor()
        .clamp(0.0, (lw - 1) as f64);
    let idx = r.to_kind(Kind::Int64) * lw + c.to_kind(Kind::Int64);
    labels
        .flatten(0, -1)
        .index_select(0, &idx.to_device(labels.device()))
}

impl<'a> Strotss<'a> {
    pub fn new(vgg: &'a Vgg, cfg: StrotssConfig) -> Result<Self> {
        if cfg.scales == 0
            || cfg.steps_per_scale == 0
            || cfg.output_samples < 2
            || cfg.style_samples < 2
        {
            return Err(Error::Config(
                "scales, steps, and sample counts must be positive".into(),
            ));
        }
        if !(cfg.alpha > 0.0 && cfg.alpha.is_finite()) {
            return Err(Error::Config(format!(
                "alpha must be positive, got {}",
                cfg.alpha
            )));
        }
        if cfg.layers.is_empty() {
            return Err(Error::Config("at least one VGG layer is needed".into()));
        }
        Ok(Self { vgg, cfg })
    }

    pub fn config(&self) -> &StrotssConfig {
        &self.cfg
    }

    /// Multiplier bringing features to torchvision's scale: its input gain is
    /// 1/0.226 (ImageNet std), Caffe's is 255.
    fn feature_gain(&self) -> f64 {
        let p = self.vgg.preprocessing();
        (1.0 / 0.226) / p.input_gain() * FEATURE_CALIBRATION
    }

    /// The VGG maps of the configured layers, at the VGG's own scale; the
    /// calibration gain is applied to the sampled hypercolumns instead (the
    /// same values, without a pass over every full map and its gradient).
    pub(crate) fn features(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let f = self.vgg.encode_with(x, &self.cfg.layers, MAPS)?;
        Ok(self
            .cfg
            .layers
            .iter()
            .map(|&t| f[t].shallow_clone())
            .collect())
    }

    /// Calibrated hypercolumns and pixel colours at `coords`.
    pub(crate) fn sample(
        &self,
        feats: &[Tensor],
        image: &Tensor,
        coords: &Tensor,
    ) -> (Tensor, Tensor) {
        let (h, w) = (image.size()[2], image.size()[3]);
        let refs: Vec<&Tensor> = feats.iter().collect();
        let hc = hypercolumns(&refs, coords, (h, w)) * self.feature_gain();
        let px = hypercolumns(&[image], coords, (h, w));
        (hc, px)
    }

    /// The region penalty `[N, M]` between output samples (labels `lo`) and style samples (`ls`).
    fn cross_penalty(&self, lo: Option<&Tensor>, ls: Option<&Tensor>) -> Option<Tensor> {
        match (lo, ls) {
            (Some(lo), Some(ls)) => Some(
                lo.unsqueeze(1)
                    .ne_tensor(&ls.unsqueeze(0))
                    .to_kind(Kind::Float)
                    * self.cfg.region_penalty,
            ),
            _ => None,
        }
    }

    /// The style pool's moments: all samples, then each region's (None if too few samples).
    fn pool_moments(
        feats: &Tensor,
        labels: Option<&Tensor>,
        regions: i64,
    ) -> Vec<Option<(Tensor, Tensor)>> {
        let mut m = vec![Some(nst_losses::strotss::mean_and_cov(feats))];
        if let Some(ls) = labels {
            for r in 0..regions {
                let is = ls.eq(r).nonzero().squeeze_dim(1);
                m.push(
                    (is.size()[0] >= 2)
                        .then(|| nst_losses::strotss::mean_and_cov(&feats.index_select(0, &is))),
                );
            }
        }
        m
    }

    fn moments(&self, out: &Tensor, pool: &StylePool, lo: Option<&Tensor>, regions: i64) -> Tensor {
        let moment_to = |m: &Option<(Tensor, Tensor)>, x: &Tensor| match m {
            Some((mu, cov)) => {
                nst_losses::strotss::moment_loss_to_fast_at(mu, cov, x, self.cfg.precision)
            }
            None => Tensor::zeros([], (Kind::Float, x.device())),
        };
        match lo {
            Some(lo) if pool.moments.len() > 1 => {
                let mut total = Tensor::zeros([], (Kind::Float, out.device()));
                let n = out.size()[0] as f64;
                for r in 0..regions {
                    let io = lo.eq(r).nonzero().squeeze_dim(1);
                    if io.size()[0] < 2 {
                        continue;
                    }
                    let share = io.size()[0] as f64 / n;
                    total +=
                        moment_to(&pool.moments[r as usize + 1], &out.index_select(0, &io)) * share;
                }
                total
            }
            _ => moment_to(&pool.moments[0], out),
        }
    }

    /// The strides of the configured taps, in their order.
    fn strides(&self) -> Vec<i64> {
        self.cfg
            .layers
            .iter()
            .map(|&t| self.vgg.arch().stride(t))
            .collect()
    }

    /// Calibrated hypercolumns at `coords` (pixels of the whole `hw` image,
    /// inside `window`) from the window's maps `feats`.
    fn window_rows(
        &self,
        feats: &[Tensor],
        coords: &Tensor,
        hw: (i64, i64),
        window: &Rect,
    ) -> Tensor {
        let maps: Vec<(&Tensor, i64)> = feats.iter().zip(self.strides()).collect();
        hypercolumns_in_window(&maps, coords, hw, (window.y, window.x)) * self.feature_gain()
    }

    /// Calibrated hypercolumns `[N, C]` of `image` at `coords`, computed
    /// tile by tile on `grid` (each sample from the tile whose core holds
    /// it), without gradients.
    pub(crate) fn sample_tiled(
        &self,
        image: &Tensor,
        coords: &Tensor,
        grid: &Grid,
    ) -> Result<Tensor> {
        let hw = (grid.height, grid.width);
        let n = coords.size()[0];
        let mut out: Option<Tensor> = None;
        grid.for_each(|tile| -> Result<()> {
            let Some(idx) = in_core(coords, &tile.core) else {
                return Ok(());
            };
            tch::no_grad(|| -> Result<()> {
                let f = self.features(&tile.window.crop(image).to_device(self.vgg.device()))?;
                let rows = self.window_rows(&f, &coords.index_select(0, &idx), hw, &tile.window);
                let o = out.get_or_insert_with(|| {
                    Tensor::zeros([n, rows.size()[1]], (Kind::Float, rows.device()))
                });
                let _ = o.index_copy_(0, &idx, &rows);
                Ok(())
            })?;
            nst_tiling::report("STROTSS samples", tile.index + 1, grid.len());
            Ok(())
        })?;
        out.ok_or_else(|| Error::Config("no tile holds a sample".into()))
    }

    /// The gradient with respect to `x` of Σ ⟨rows(x), `grad_rows`⟩, the
    /// hypercolumns at `coords` computed tile by tile on `grid`: each
    /// window's forward and backward, summed into the image's gradient.
    pub(crate) fn backprop_tiled(
        &self,
        x: &Tensor,
        coords: &Tensor,
        grad_rows: &Tensor,
        grid: &Grid,
    ) -> Result<Tensor> {
        let hw = (grid.height, grid.width);
        let gx = x.zeros_like();
        let device = self.vgg.device();
        grid.window_grads(
            x,
            device,
            "STROTSS gradients",
            &gx,
            |tile, xw| -> Result<_> {
                let Some(idx) = in_core(coords, &tile.core) else {
                    return Ok(None);
                };
                let f = self.features(xw)?;
                let rows = self.window_rows(&f, &coords.index_select(0, &idx), hw, &tile.window);
                Ok(Some(
                    (rows * grad_rows.index_select(0, &idx)).sum(Kind::Float),
                ))
            },
        )?;
        Ok(gx)
    }

    /// The loss terms of `x: [1, 3, H, W]` at one fixed draw of samples
    /// (`seed`), whole: a yardstick to compare two results, such as a
    /// tiled run's and a whole run's (the optimisation's own terms are
    /// noisy, drawn afresh at every step). `alpha` is the effective α.
    pub fn measure(
        &self,
        x: &Tensor,
        content: &Tensor,
        styles: &[StyleInput],
        alpha: f64,
        seed: i64,
    ) -> Result<StrotssTerms> {
        let d = self.vgg.device();
        let x = x.to_device(d).to_kind(Kind::Float);
        let (h, w) = (x.size()[2], x.size()[3]);
        let c = resize(&content.to_device(d).to_kind(Kind::Float), h, w);
        tch::manual_seed(seed);
        tch::no_grad(|| {
            let xf = self.features(&x)?;
            let cf = self.features(&c)?;
            let coords = random_coords(h, w, self.cfg.output_samples, d);
            let (of, op) = self.sample(&xf, &x, &coords);
            let (cf, _) = self.sample(&cf, &c, &coords);
            let lc = self_similarity_loss_fast_at(&cf, &of, self.cfg.precision)
                * coords.size()[0] as f64;
            let wsum: f64 = styles.iter().map(|s| s.weight).sum();
            let mut lr = Tensor::zeros([], (Kind::Float, d));
            let mut lm = Tensor::zeros([], (Kind::Float, d));
            let mut lp = Tensor::zeros([], (Kind::Float, d));
            for st in styles {
                let (s, th, tw) = style_at(st.image, h.max(w), d);
                let sf = self.features(&s)?;
                let sc = random_coords(th, tw, self.cfg.style_samples, d);
                let (feats, pixels) = self.sample(&sf, &s, &sc);
                let wt = st.weight / wsum;
                let (mu, cov) = nst_losses::strotss::mean_and_cov(&feats);
                lr += remd_cosine(&of, &UnitPool::new(&feats, self.cfg.precision), None) * wt;
                lm +=
                    nst_losses::strotss::moment_loss_to_fast_at(&mu, &cov, &of, self.cfg.precision)
                        * wt;
                lp += remd_euclidean(&op, &pixels, None) * wt;
            }
            let total = nst_losses::strotss_total(alpha, &lc, &lm, &lr, &lp);
            Ok(StrotssTerms {
                content: lc.double_value(&[]),
                moments: lm.double_value(&[]),
                remd: lr.double_value(&[]),
                palette: lp.double_value(&[]),
                total: total.double_value(&[]),
            })
        })
    }

    /// Runs all scales. `observe(scale, step, terms)` is called after every
    /// step; returning `false` stops with [`Error::Interrupted`]. Returns the
    /// result of each scale (RGB in [0, 1]), the last at full size.
    ///
    /// # Shapes
    /// `content: [1, 3, H, W]`; each style `[1, 3, H', W']`; RGB in [0, 1].
    pub fn run<F>(
        &self,
        content: &Tensor,
        styles: &[StyleInput],
        guidance: Option<&Guidance>,
        observe: F,
    ) -> Result<Vec<Tensor>>
    where
        F: FnMut(usize, usize, &StrotssTerms) -> bool,
    {
        self.run_tiled(content, styles, guidance, |_, _| Ok(None), observe)
    }

    /// [`Strotss::run`] with the scales that `plan(height, width)` tiles
    /// (`Some`) computed tile by tile, in memory bounded by the tile:
    /// * the style pool's hypercolumns are gathered from the style's tiles;
    /// * at every step, the output's and the content's hypercolumns at the
    ///   step's samples come from the tiles whose cores hold them (pass 1,
    ///   without gradients); the loss, a function of those rows alone, is
    ///   computed whole and gives their gradient; pass 2 runs each window
    ///   forward and backward with that gradient held fixed, summed into the
    ///   image's gradient, which then flows to the pyramid bands. This is the
    ///   whole step's gradient up to the halo's error (features near a
    ///   window's edge see padding instead of the image);
    /// * the grid moves at every step, so no boundary stays in one place.
    ///
    /// When the scale's whole maps fit in the tiling's cache budget
    /// ([`Strotss::staged_tiling`]), only VGG's layers up to relu3_1 run in
    /// windows, with a 16-px halo, and the deeper layers run whole (module
    /// `staged`): the content's and the style's maps are encoded that way
    /// once, and each step's gradient is the whole step's up to float
    /// rounding.
    ///
    /// The samples are drawn as in the whole run, so with the same seed a
    /// tiled and a whole run see the same samples.
    pub fn run_tiled<P, F>(
        &self,
        content: &Tensor,
        styles: &[StyleInput],
        guidance: Option<&Guidance>,
        mut plan: P,
        mut observe: F,
    ) -> Result<Vec<Tensor>>
    where
        P: FnMut(i64, i64) -> Result<Option<Tiling>>,
        F: FnMut(usize, usize, &StrotssTerms) -> bool,
    {
        let cfg = &self.cfg;
        if styles.is_empty() {
            return Err(Error::Config("at least one style image is needed".into()));
        }
        if let Some(g) = guidance {
            if g.styles.len() != styles.len() {
                return Err(Error::Config(format!(
                    "{} style masks for {} styles",
                    g.styles.len(),
                    styles.len()
                )));
            }
        }
        let device = self.vgg.device();
        let content = content.to_device(device).to_kind(Kind::Float);
        let (ch, cw) = (content.size()[2], content.size()[3]);
        let long = ch.max(cw);
        let wsum: f64 = styles.iter().map(|s| s.weight).sum();
        let mut results = Vec::new();
        let mut prev: Option<Tensor> = None;
        let sides = cfg.scale_sizes(long);
        for (si, sc) in cfg.schedule(ch, cw).into_iter().enumerate() {
            let (side, h, w) = (sides[si], sc.height, sc.width);
            let alpha = cfg.alpha_at(si);
            let c = resize(&content, h, w);
            let last = si + 1 == cfg.scales;
            let tiling = plan(h, w)?;
            let staged = tiling.and_then(|t| self.staged_tiling(&t, h, w));
            // Fixed per scale: content features (whole and staged scales), style pools.
            let (content_feats, pools) = tch::no_grad(|| -> Result<_> {
                let cf = match (tiling, &staged) {
                    (None, _) => Some(self.features(&c)?),
                    (Some(_), Some(t)) => Some(self.features_staged(&c, &t.grid(h, w)?)?),
                    (Some(_), None) => None,
                };
                let mut pools = Vec::new();
                for (k, st) in styles.iter().enumerate() {
                    let (s, th, tw) = style_at(st.image, side, device);
                    let coords = random_coords(th, tw, cfg.style_samples, device);
                    // A staged style fits where the content's maps do.
                    let staged_style = staged.filter(|_| th * tw <= h * w);
                    let (feats, pixels) = match (&tiling, staged_style) {
                        (None, _) => self.sample(&self.features(&s)?, &s, &coords),
                        (Some(_), Some(t)) => {
                            let f = self.features_staged(&s, &t.grid_or_whole(th, tw))?;
                            self.sample(&f, &s, &coords)
                        }
                        (Some(t), None) => (
                            self.sample_tiled(&s, &coords, &t.grid_or_whole(th, tw))?,
                            hypercolumns(&[&s], &coords, (th, tw)),
                        ),
                    };
                    let labels = guidance.map(|g| label_at(&g.styles[k], &coords, th, tw));
                    let moments = Self::pool_moments(
                        &feats,
                        labels.as_ref(),
                        guidance.map_or(0, |g| g.regions),
                    );
                    pools.push(StylePool {
                        unit: UnitPool::new(&feats, cfg.precision),
                        pixels,
                        labels,
                        moments,
                        weight: st.weight / wsum,
                    });
                }
                Ok((cf, pools))
            })?;
            let style_mean = tch::no_grad(|| {
                let mut m = Tensor::zeros([1, 3, 1, 1], (Kind::Float, device));
                for (st, p) in styles.iter().zip(&pools) {
                    m += st.image.to_device(device).mean_dim(
                        [2i64, 3].as_slice(),
                        true,
                        Kind::Float,
                    ) * p.weight;
                }
                m
            });
            let init = match &prev {
                None => detail_band(&c) + style_mean,
                Some(p) if last => resize(p, h, w),
                Some(p) => resize(p, h, w) + detail_band(&c),
            };
            let mut bands: Vec<Tensor> = laplacian_pyramid(&to_space(&init), cfg.pyramid_levels)
                .into_iter()
                .map(|b| b.detach().set_requires_grad(true))
                .collect();
            let lr = if last && si > 0 { cfg.lr / 2.0 } else { cfg.lr };
            let mut opt = PyramidOpt::new(cfg.optimizer, &bands, lr);
            let content_labels_full = guidance.map(|g| g.content.to_device(device));
            if let Some(t) = &tiling {
                t.grid(h, w)?;
            }
            let step_tiling = staged.or(tiling);
            let interior = step_tiling.map_or(1, |t| (t.tile - 2 * t.halo).max(1)) as f64;
            for step in 1..=sc.steps {
                let x = from_space(&fold_pyramid(&bands));
                let coords = random_coords(h, w, cfg.output_samples, device);
                // Irrational fractions of the interior tile: the boundaries
                // never come back to the same rows and columns.
                let grid = match &step_tiling {
                    Some(t) => Some(t.grid_shifted(
                        h,
                        w,
                        (
                            (step as f64 * 0.618_034 * interior) as i64,
                            (step as f64 * 0.414_214 * interior) as i64,
                        ),
                    )?),
                    None => None,
                };
                let mut staged_rows = None;
                let (of, op, cf) = match (&grid, &content_feats) {
                    (Some(g), Some(content_feats)) if staged.is_some() => {
                        let rows = self.sample_staged(&x.detach(), &coords, g)?;
                        let of = rows.rows.shallow_clone();
                        staged_rows = Some(rows);
                        let (cf, _) = tch::no_grad(|| self.sample(content_feats, &c, &coords));
                        (of, hypercolumns(&[&x], &coords, (h, w)), cf)
                    }
                    (Some(g), _) => {
                        let of = self.sample_tiled(&x.detach(), &coords, g)?;
                        let cf = self.sample_tiled(&c, &coords, g)?;
                        let op = hypercolumns(&[&x], &coords, (h, w));
                        (of.set_requires_grad(true), op, cf)
                    }
                    (None, Some(content_feats)) => {
                        let xf = self.features(&x)?;
                        let (of, op) = self.sample(&xf, &x, &coords);
                        let (cf, _) = tch::no_grad(|| self.sample(content_feats, &c, &coords));
                        (of, op, cf)
                    }
                    (None, None) => return Err(Error::Config("no content features".into())),
                };
                let lo = content_labels_full
                    .as_ref()
                    .map(|l| label_at(l, &coords, h, w));
                let lc =
                    self_similarity_loss_fast_at(&cf, &of, cfg.precision) * coords.size()[0] as f64;
                let mut lr = Tensor::zeros([], (Kind::Float, device));
                let mut lm = Tensor::zeros([], (Kind::Float, device));
                let mut lp = Tensor::zeros([], (Kind::Float, device));
                for p in &pools {
                    let ls = p.labels.as_ref();
                    let penalty = self.cross_penalty(lo.as_ref(), ls);
                    lr += remd_cosine(&of, &p.unit, penalty.as_ref()) * p.weight;
                    lm += self.moments(&of, p, lo.as_ref(), guidance.map_or(0, |g| g.regions))
                        * p.weight;
                    lp += remd_euclidean(&op, &p.pixels, penalty.as_ref()) * p.weight;
                }
                let total = nst_losses::strotss_total(alpha, &lc, &lm, &lr, &lp);
                let terms = StrotssTerms {
                    content: lc.double_value(&[]),
                    moments: lm.double_value(&[]),
                    remd: lr.double_value(&[]),
                    palette: lp.double_value(&[]),
                    total: total.double_value(&[]),
                };
                if !terms.total.is_finite() {
                    return Err(Error::NonFinite {
                        eval: step,
                        term: format!("total at scale {}", si + 1),
                        value: terms.total,
                    });
                }
                total.backward();
                if let Some(g) = &grid {
                    // Pass 2: the rows' gradient through each window, then
                    // the image's gradient through the pyramid to the bands.
                    let gx = match &staged_rows {
                        Some(r) => self.backprop_staged(&x.detach(), &coords, r, g)?,
                        None => self.backprop_tiled(&x.detach(), &coords, &of.grad(), g)?,
                    };
                    let x2 = from_space(&fold_pyramid(&bands));
                    (x2 * gx).sum(Kind::Float).backward();
                }
                opt.step(&mut bands);
                if !observe(si, step, &terms) {
                    return Err(Error::Interrupted);
                }
            }
            let out = tch::no_grad(|| from_space(&fold_pyramid(&bands)).clamp(0.0, 1.0)).detach();
            prev = Some(out.shallow_clone());
            results.push(out);
        }
        Ok(results)
    }
}
