//! Gatys at sizes larger than memory allows: the loss and its gradient
//! tile by tile, and a coarse-to-fine schedule (docs/high-resolution.md).
//!
//! The style loss Σ_l w_l‖G_l(x) − G_l(s)‖²/C_l² is global: G_l sums over
//! every pixel. Each evaluation therefore makes two passes over the tiles:
//!
//! 1. without gradients, it sums F Fᵀ over the tiles' cores (each feature
//!    counted once), which gives G_l(x) and the loss;
//! 2. with gradients, each tile's window runs forward and backward on the
//!    surrogate ⟨D_l, F_core F_coreᵀ⟩/(C_l N_l), with D_l = ∂L/∂G_l held
//!    fixed from pass 1. Its gradient with respect to the core's features
//!    is exactly the global loss's, so the window gradients, summed into the
//!    image's, give the whole-image gradient up to the halo's error (the
//!    features near a window's edge see padding instead of the image).
//!
//! The content term is a sum over positions and splits over the cores; its
//! targets are the whole content's features, computed once per scale. The
//! grid moves at every evaluation, so no boundary stays in one place.
use super::{Gatys, LossTerms};
use crate::{Error, Lbfgs, LbfgsReport, Result};
use nst_losses::total_variation;
use nst_tiling::{CoreMap, Grid, Tiling};
use nst_vgg::{Tap, Vgg};
use tch::{Device, Kind, Tensor};

/// Context per side for each tile, in px: chosen by
/// `tiled_gatys_matches_the_whole_loss_and_gradient`.
pub const HALO: i64 = 96;

/// Tiles are cut on multiples of the deepest default tap's stride (`relu5_1`).
pub const ALIGN: i64 = 16;

/// Whole-image state of a tiled run per pixel, besides the tiles' working
/// memory: the image, its gradient and L-BFGS's direction and previous
/// iterate and gradient (fp32 RGB, 12 B each), the content features at
/// `relu4_2` (512 channels at 1/64 of the pixels, 32 B), and the image
/// buffers (40 B). L-BFGS's history adds [`HISTORY_BYTES_PER_PIXEL`] per pair.
pub const STATE_BYTES_PER_PIXEL: u64 = 5 * 12 + 32 + 40;

/// L-BFGS keeps two RGB fp32 images per history pair.
pub const HISTORY_BYTES_PER_PIXEL: u64 = 24;

/// The L-BFGS history that fits: at most `max`, at least 3, within
/// `budget` bytes for an image of `pixels` (all of `max` without a budget).
pub fn history_within(pixels: i64, budget: Option<u64>, max: usize) -> usize {
    match budget {
        None => max,
        Some(b) => {
            let per = HISTORY_BYTES_PER_PIXEL * pixels.max(1) as u64;
            ((b / per.max(1)) as usize).clamp(3, max.max(3))
        }
    }
}

/// The whole-image feature maps of `image` at `taps`, assembled from the
/// tiles' cores of `grid` (on the CPU).
fn features_tiled(vgg: &Vgg, image: &Tensor, taps: &[Tap], grid: &Grid) -> Result<Vec<Tensor>> {
    let d = vgg.device();
    let stride = |t: Tap| vgg.arch().stride(t);
    let mut maps: Vec<CoreMap> = (taps.iter())
        .map(|&t| CoreMap::new(grid.height, grid.width, stride(t), Device::Cpu))
        .collect();
    grid.for_each(|tile| -> Result<()> {
        let f = tch::no_grad(|| vgg.encode(&tile.window.crop(image).to_device(d), taps))?;
        for (m, &t) in maps.iter_mut().zip(taps) {
            m.put(
                tile,
                &tile.core_in_window().scaled_down(stride(t)).crop(&f[t]),
            );
        }
        Ok(())
    })?;
    maps.into_iter()
        .map(|m| m.into_map().ok_or_else(|| Error::Config("no tiles".into())))
        .collect()
}

/// The part of a whole map at stride `s` under `tile`'s core (the core's
/// size as its window's features have it: VGG floors each pooling).
fn at_core(whole: &Tensor, tile: &nst_tiling::Tile, s: i64) -> Tensor {
    let core = tile.core_in_window().scaled_down(s);
    let at = tile.core.scaled_down(s);
    whole.narrow(2, at.y, core.h).narrow(3, at.x, core.w)
}

/// The error of a tiled evaluation with the photorealism term.
fn regularizer_not_tiled() -> Error {
    Error::Config(
        "the photorealism term (matting Laplacian) is not tiled: use a --size that fits in memory"
            .into(),
    )
}

/// The core's features `[C, n]` of a window's map at `tap`.
fn core_rows(vgg: &Vgg, f: &Tensor, tap: Tap, tile: &nst_tiling::Tile) -> Tensor {
    let core = tile.core_in_window().scaled_down(vgg.arch().stride(tap));
    let x = core.crop(f).to_kind(Kind::Float);
    let c = x.size()[1];
    x.reshape([c, -1])
}

/// The window's maps at `taps` with their strides, for [`Grid::gram_sums`].
fn tap_maps(vgg: &Vgg, f: &nst_vgg::Features, taps: &[Tap]) -> Vec<(Tensor, i64)> {
    taps.iter()
        .map(|&t| (f[t].shallow_clone(), vgg.arch().stride(t)))
        .collect()
}

/// The Gram matrices `[1, C, C]` (fp32) from sums over tiles, normalised
/// as [`nst_losses::gram`] does (C·N).
fn grams(sums: &nst_tiling::GramSums) -> Vec<Tensor> {
    sums.grams()
        .into_iter()
        .map(|g| {
            let c = g.size()[0];
            (g / c as f64).unsqueeze(0)
        })
        .collect()
}

impl Gatys<'_> {
    /// The TV term of `x` and, with `want_grad`, its gradient (zeros
    /// without the term): the start of the image's gradient.
    fn tv_term(&self, x: &Tensor, want_grad: bool) -> (f64, Option<Tensor>) {
        if self.cfg.tv_weight <= 0.0 {
            return (0.0, want_grad.then(|| Tensor::zeros_like(x)));
        }
        let xv = x.detach().set_requires_grad(want_grad);
        let l = total_variation(&xv) * self.cfg.tv_weight;
        let grad =
            want_grad.then(|| Tensor::run_backward(&[&l], &[&xv], false, false)[0].shallow_clone());
        (l.double_value(&[]), grad)
    }

    /// Runs every window of `grid` forward to `taps` and backward on
    /// `surrogate(tile, features)`, adding each window's image gradient
    /// into `grad`.
    fn window_grads(
        &self,
        x: &Tensor,
        grid: &Grid,
        taps: &[Tap],
        grad: &Tensor,
        surrogate: impl Fn(&nst_tiling::Tile, &nst_vgg::Features) -> Tensor,
    ) -> Result<()> {
        grid.window_grads(x, self.vgg.device(), "gradients", grad, |tile, xw| {
            Ok(Some(surrogate(tile, &self.vgg.encode(xw, taps)?)))
        })
    }
}

impl<'a> Gatys<'a> {
    /// [`Gatys::new`] with the targets computed tile by tile when `tiling`
    /// is given: the style's Gram matrices summed over the cores of its
    /// grid, and the content's features assembled from its tiles' cores
    /// (kept on the CPU). The result is what [`Gatys::new`] gives, up to the
    /// halo's error.
    pub fn new_tiled(
        vgg: &'a Vgg,
        cfg: super::GatysConfig,
        content: Option<&Tensor>,
        style: &Tensor,
        tiling: Option<&Tiling>,
    ) -> Result<Self> {
        let Some(t) = tiling else {
            return Self::new(vgg, cfg, content, style);
        };
        if cfg.style_layers.is_empty() {
            return Err(Error::Config("at least one style layer is needed".into()));
        }
        // Validate everything else on a tiny problem, then swap the targets in.
        let tiny = Tensor::zeros([1, 3, 32, 32], (Kind::Float, vgg.device()));
        let mut g = Self::new(vgg, cfg, content.map(|_| &tiny), &tiny)?;
        let (sh, sw) = (style.size()[2], style.size()[3]);
        let sg = t.grid_or_whole(sh, sw);
        let d = vgg.device();
        let taps = &g.cfg.style_layers;
        let sums = sg.gram_sums(style, "style Gram matrices", |_, w| -> Result<_> {
            let f = tch::no_grad(|| vgg.encode(&w.to_device(d), taps))?;
            Ok(tap_maps(vgg, &f, taps))
        })?;
        g.style_grams = grams(&sums);
        if let Some(c) = content {
            let (ch, cw) = (c.size()[2], c.size()[3]);
            let grid = t.grid_or_whole(ch, cw);
            g.content_targets = features_tiled(vgg, c, &g.cfg.content_layers, &grid)?;
            g.content = Some(c.shallow_clone());
        }
        Ok(g)
    }

    /// The loss at `x: [1, 3, H, W]` and its gradient (on `x`'s device),
    /// computed tile by tile on `grid` (see the module docs). The extra
    /// regulariser of [`Gatys::with_regularizer`] is not tiled: an error.
    pub fn loss_grad_tiled(&self, x: &Tensor, grid: &Grid) -> Result<(LossTerms, Tensor)> {
        let (terms, grad) = self.evaluate_tiled(x, grid, true)?;
        Ok((terms, grad.unwrap_or_else(|| Tensor::zeros_like(x))))
    }

    /// The loss at `x` measured tile by tile, without its gradient: what
    /// the tiled run optimises, and a yardstick for images too large to
    /// evaluate whole.
    pub fn loss_tiled(&self, x: &Tensor, grid: &Grid) -> Result<LossTerms> {
        self.evaluate_tiled(x, grid, false).map(|(t, _)| t)
    }

    fn evaluate_tiled(
        &self,
        x: &Tensor,
        grid: &Grid,
        want_grad: bool,
    ) -> Result<(LossTerms, Option<Tensor>)> {
        if self.regularizer.is_some() {
            return Err(regularizer_not_tiled());
        }
        let d = self.vgg.device();
        let styles = &self.cfg.style_layers;
        let contents: &[Tap] = if self.content.is_some() {
            &self.cfg.content_layers
        } else {
            &[]
        };
        // The content term's part on a tile's core (differentiable when f is).
        let content_part = |f: &nst_vgg::Features, tile: &nst_tiling::Tile| -> Tensor {
            let mut sum = Tensor::zeros([], (Kind::Float, d));
            for (&t, target) in contents.iter().zip(&self.content_targets) {
                let s = self.vgg.arch().stride(t);
                let core = tile.core_in_window().scaled_down(s);
                let fc = core.crop(&f[t]).to_kind(Kind::Float);
                let at = tile.core.scaled_down(s);
                let tg = target
                    .narrow(2, at.y, core.h)
                    .narrow(3, at.x, core.w)
                    .to_device(d);
                sum += (fc - tg).square().sum(Kind::Float)
                    * (self.cfg.content_weight / target.numel() as f64);
            }
            sum
        };
        // Pass 1: the Gram matrices of x over the whole image, and the content term.
        let mut content = 0.0;
        let sums = grid.gram_sums(x, "Gram matrices", |tile, w| -> Result<_> {
            let f = tch::no_grad(|| self.vgg.encode(&w.to_device(d), &self.taps))?;
            content += tch::no_grad(|| content_part(&f, tile)).double_value(&[]);
            Ok(tap_maps(self.vgg, &f, styles))
        })?;
        let counts = &sums.counts;
        let mut style = 0.0;
        // D_l = ∂(sw·w_l·MSE(G_l, S_l))/∂G_l = sw·w_l·2(G_l − S_l)/C², fixed in pass 2.
        let mut dl = Vec::with_capacity(styles.len());
        for (i, (s, w)) in self.style_grams.iter().zip(&self.style_weights).enumerate() {
            let ff = sums
                .ffs
                .get(i)
                .ok_or_else(|| Error::Config("no tiles".into()))?;
            let c = ff.size()[0];
            let g = (ff / (c * counts[i].max(1)) as f64).to_kind(Kind::Float);
            let diff = g - s.squeeze_dim(0).to_device(d);
            let cc = (c * c) as f64;
            style +=
                diff.square().sum(Kind::Double).double_value(&[]) / cc * w * self.cfg.style_weight;
            dl.push(diff * (2.0 * w * self.cfg.style_weight / cc));
        }
        let (tv, grad) = self.tv_term(x, want_grad);
        let terms = LossTerms {
            content,
            style,
            tv,
            reg: 0.0,
        };
        let Some(grad) = grad else {
            return Ok((terms, None));
        };
        // Pass 2: each window's gradient of the surrogate, summed into the image's.
        self.window_grads(x, grid, &self.taps, &grad, |tile, f| {
            let mut sur = content_part(f, tile);
            for (i, &t) in styles.iter().enumerate() {
                let r = core_rows(self.vgg, &f[t], t, tile);
                let c = r.size()[0];
                let ff = r.matmul(&r.transpose(0, 1));
                sur += (ff * &dl[i]).sum(Kind::Float) / (c * counts[i].max(1)) as f64;
            }
            sur
        })?;
        Ok((terms, Some(grad)))
    }

    /// Optimises from `init` (any device; kept on the CPU) with L-BFGS,
    /// tile by tile, the grid moved at every evaluation. `history` is
    /// L-BFGS's (see [`history_within`]). `observe(eval, terms)` as in
    /// [`Gatys::run`].
    pub fn run_tiled<F>(
        &self,
        init: &Tensor,
        tiling: &Tiling,
        history: usize,
        mut observe: F,
    ) -> Result<(Tensor, Option<LbfgsReport>)>
    where
        F: FnMut(usize, &LossTerms) -> bool,
    {
        let lr = match self.cfg.optimizer {
            super::OptimizerKind::Lbfgs { lr } => lr,
            _ => {
                return Err(Error::Config(
                    "a tiled run optimises with L-BFGS (--optimizer lbfgs)".into(),
                ))
            }
        };
        // A copy: L-BFGS updates x in place, and `init` is the caller's.
        let mut x = init
            .detach()
            .to_kind(Kind::Float)
            .to_device(Device::Cpu)
            .copy();
        let (h, w) = (x.size()[2], x.size()[3]);
        tiling.grid(h, w)?;
        let staged = self.staged_tiling(tiling, h, w);
        let lbfgs = Lbfgs {
            lr,
            history,
            ..Lbfgs::scale_free()
        };
        let mut eval = 0usize;
        let r = lbfgs.minimize(&mut x, self.cfg.steps, |x| -> Result<(f64, Tensor)> {
            eval += 1;
            let (terms, g) = match &staged {
                Some(t) => self.evaluate_staged(x, &eval_grid(t, h, w, eval)?)?,
                None => self.loss_grad_tiled(x, &eval_grid(tiling, h, w, eval)?)?,
            };
            super::check_terms(&terms, eval)?;
            if !observe(eval, &terms) {
                return Err(Error::Interrupted);
            }
            Ok((terms.total(), g))
        })?;
        Ok((x.clamp(0.0, 1.0), Some(r)))
    }
}

/// Bytes the whole middle of a staged evaluation ([`Gatys::evaluate_staged`])
/// holds for an `h × w` image: VGG from [`nst_vgg::HANDOVER`] on with its
/// gradients, counted as 16 fp32 maps of the handover's size (the deeper
/// layers' inputs and outputs kept for the backward pass, at most about 13
/// such maps, and the map and its gradient).
pub fn staged_bytes(vgg: &Vgg, h: i64, w: i64) -> u64 {
    let s = vgg.arch().stride(nst_vgg::HANDOVER);
    let (hh, ww) = (h / s, w / s);
    (16 * vgg.arch().channels(nst_vgg::HANDOVER) * hh * ww * 4) as u64
}

/// What a staged Gatys run at `h × w` needs kept whole
/// ([`staged_bytes`]), for a memory plan to leave room for it: `None` when
/// the run would not be staged (no layer deeper than the handover, or the
/// photorealism term, which is not tiled at all).
pub fn staged_reserve(
    vgg: &Vgg,
    cfg: &super::GatysConfig,
    with_content: bool,
    photoreal: bool,
    (h, w): (i64, i64),
) -> Option<u64> {
    let arch = vgg.arch();
    let contents = cfg.content_layers.iter().filter(|_| with_content);
    let deep = (cfg.style_layers.iter().chain(contents))
        .any(|&t| arch.position(t) > arch.position(nst_vgg::HANDOVER));
    (deep && !photoreal).then(|| staged_bytes(vgg, h, w))
}

impl Gatys<'_> {
    /// Whether `tap` lies deeper than the handover.
    fn is_deep(&self, tap: Tap) -> bool {
        let arch = self.vgg.arch();
        arch.position(tap) > arch.position(nst_vgg::HANDOVER)
    }

    /// The tiling of a staged run ([`Gatys::evaluate_staged`]): `tiling`'s
    /// tiles with [`nst_vgg::HANDOVER_HALO`], when some layer lies deeper
    /// than the handover and the middle ([`staged_bytes`]) fits in the
    /// tiling's cache budget. `None`: the window path.
    pub fn staged_tiling(&self, tiling: &Tiling, h: i64, w: i64) -> Option<Tiling> {
        let deep = self.taps.iter().any(|&t| self.is_deep(t));
        let fits = (tiling.cache_bytes).is_none_or(|c| staged_bytes(self.vgg, h, w) <= c);
        let t = Tiling::new(tiling.tile, nst_vgg::HANDOVER_HALO, ALIGN).ok()?;
        (deep && fits && self.regularizer.is_none()).then_some(t)
    }

    /// The loss at `x` and its exact gradient, with only VGG's layers up to
    /// [`nst_vgg::HANDOVER`] run tile by tile (on `grid`, cut with
    /// [`nst_vgg::HANDOVER_HALO`], which covers their receptive radius):
    ///
    /// 1. the windows, without gradients, give the shallow layers' Gram sums
    ///    over the cores and the whole handover map;
    /// 2. VGG goes on from that map whole, with gradients, to the deep
    ///    layers: their Gram matrices and content term, the loss, and the
    ///    loss's gradient at the handover map (∂L/∂G held fixed);
    /// 3. each window runs forward and backward on the shallow surrogate of
    ///    [`Gatys::loss_grad_tiled`] plus ⟨∂L/∂F, F⟩ at the handover's core.
    ///
    /// The gradient is the whole image's up to float rounding, and the deep
    /// layers run once per evaluation instead of twice with a wide halo.
    pub fn evaluate_staged(&self, x: &Tensor, grid: &Grid) -> Result<(LossTerms, Tensor)> {
        if self.regularizer.is_some() {
            return Err(regularizer_not_tiled());
        }
        let d = self.vgg.device();
        let arch = self.vgg.arch();
        let hand = nst_vgg::HANDOVER;
        let (h, w) = (x.size()[2], x.size()[3]);
        let mut wtaps: Vec<Tap> = self
            .taps
            .iter()
            .copied()
            .filter(|&t| !self.is_deep(t))
            .collect();
        wtaps.push(hand);
        let deep_taps: Vec<Tap> = self
            .taps
            .iter()
            .copied()
            .filter(|&t| self.is_deep(t))
            .collect();
        let contents: Vec<(Tap, &Tensor)> = match self.content {
            Some(_) => self
                .cfg
                .content_layers
                .iter()
                .copied()
                .zip(&self.content_targets)
                .collect(),
            None => vec![],
        };
        let content_w = |target: &Tensor| self.cfg.content_weight / target.numel() as f64;
        // The shallow content terms on a window's core.
        let content_part = |f: &nst_vgg::Features, tile: &nst_tiling::Tile| -> Tensor {
            let mut sum = Tensor::zeros([], (Kind::Float, d));
            for &(t, target) in contents.iter().filter(|(t, _)| !self.is_deep(*t)) {
                let s = arch.stride(t);
                let core = tile.core_in_window().scaled_down(s);
                let tg = at_core(target, tile, s).to_device(d);
                sum += (core.crop(&f[t]).to_kind(Kind::Float) - tg)
                    .square()
                    .sum(Kind::Float)
                    * content_w(target);
            }
            sum
        };
        let styles = &self.cfg.style_layers;
        let shallow_styles: Vec<Tap> = styles
            .iter()
            .copied()
            .filter(|&t| !self.is_deep(t))
            .collect();
        // Pass 1: the shallow Gram sums and content, and the handover map.
        let s = arch.stride(hand);
        let mut map = CoreMap::new(h, w, s, d);
        let mut content = 0.0;
        let sums = grid.gram_sums(x, "Gram matrices", |tile, win| -> Result<_> {
            let f = tch::no_grad(|| self.vgg.encode(&win.to_device(d), &wtaps))?;
            content += tch::no_grad(|| content_part(&f, tile)).double_value(&[]);
            map.put(tile, &tile.core_in_window().scaled_down(s).crop(&f[hand]));
            Ok(tap_maps(self.vgg, &f, &shallow_styles))
        })?;
        // Pass 2: the deep layers whole, with gradients from the map.
        let map = map.into_map();
        let mv = map
            .ok_or_else(|| Error::Config("no tiles".into()))?
            .set_requires_grad(true);
        let fd = self.vgg.encode_from(&mv, hand, &deep_taps)?;
        let mut deep_sur = Tensor::zeros([], (Kind::Float, d));
        for &(t, target) in contents.iter().filter(|(t, _)| self.is_deep(*t)) {
            let l = (fd[t].to_kind(Kind::Float) - target.to_device(d))
                .square()
                .sum(Kind::Float)
                * content_w(target);
            content += l.double_value(&[]);
            deep_sur += l;
        }
        let mut style = 0.0;
        let mut dl = Vec::with_capacity(styles.len());
        let mut next_shallow = 0;
        for ((&t, s), wl) in styles
            .iter()
            .zip(&self.style_grams)
            .zip(&self.style_weights)
        {
            // G_l = F Fᵀ / (C N): summed over the cores, or whole (with gradients).
            let (ff, n) = if self.is_deep(t) {
                let r = fd[t].to_kind(Kind::Float);
                let r = r.reshape([r.size()[1], -1]);
                let n = r.size()[1];
                (r.matmul(&r.transpose(0, 1)), n)
            } else {
                let i = next_shallow;
                next_shallow += 1;
                let ff = sums
                    .ffs
                    .get(i)
                    .ok_or_else(|| Error::Config("no tiles".into()))?;
                (ff.to_kind(Kind::Float), sums.counts[i])
            };
            let c = ff.size()[0];
            let diff = (&ff / (c * n.max(1)) as f64).detach() - s.squeeze_dim(0).to_device(d);
            let cc = (c * c) as f64;
            style +=
                diff.square().sum(Kind::Double).double_value(&[]) / cc * wl * self.cfg.style_weight;
            let dlt = diff * (2.0 * wl * self.cfg.style_weight / cc);
            if self.is_deep(t) {
                deep_sur += (ff * &dlt).sum(Kind::Float) / (c * n.max(1)) as f64;
            } else {
                dl.push((dlt, c, n));
            }
        }
        let g_map = Tensor::run_backward(&[&deep_sur], &[&mv], false, false)[0].shallow_clone();
        let (tv, grad) = self.tv_term(x, true);
        let grad = grad.unwrap_or_else(|| Tensor::zeros_like(x));
        let terms = LossTerms {
            content,
            style,
            tv,
            reg: 0.0,
        };
        // Pass 3: each window's shallow surrogate and the map's gradient.
        self.window_grads(x, grid, &wtaps, &grad, |tile, f| {
            let mut sur = content_part(f, tile);
            for (&t, (dlt, c, n)) in shallow_styles.iter().zip(&dl) {
                let r = core_rows(self.vgg, &f[t], t, tile);
                sur +=
                    (r.matmul(&r.transpose(0, 1)) * dlt).sum(Kind::Float) / (c * n.max(&1)) as f64;
            }
            let core = tile.core_in_window().scaled_down(s).crop(&f[hand]);
            sur + (core.to_kind(Kind::Float) * at_core(&g_map, tile, s)).sum(Kind::Float)
        })?;
        Ok((terms, grad))
    }
}

/// The grid of evaluation `eval` (from 1) of [`Gatys::run_tiled`] on an
/// `h`×`w` image: shifted by irrational fractions of the tile's interior,
/// so the boundaries never come back to the same rows and columns.
pub fn eval_grid(tiling: &Tiling, h: i64, w: i64, eval: usize) -> Result<Grid> {
    let step = (tiling.tile - 2 * tiling.halo).max(1) as f64;
    let shift = (
        (eval as f64 * 0.618_034 * step) as i64,
        (eval as f64 * 0.414_214 * step) as i64,
    );
    Ok(tiling.grid_shifted(h, w, shift)?)
}

/// One scale of a coarse-to-fine run: its size and L-BFGS evaluations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub height: i64,
    pub width: i64,
    pub steps: usize,
}

/// The long side up to which Gatys runs at one scale.
pub const BASE_SIDE: i64 = 512;

/// The coarse-to-fine schedule of an output of `height × width`: one scale
/// up to a long side of [`BASE_SIDE`]; above, the output's size last and
/// halved sizes before it down to a long side of at most 512, the coarsest
/// with `steps` evaluations and each finer one half as many as the one
/// before (at least 10). 4096² with 200 steps: 512² × 200, 1024² × 100,
/// 2048² × 50, 4096² × 25. Each scale starts from the previous result,
/// upsampled: the coarse scales place the style's large structures cheaply,
/// the fine ones refine details.
pub fn schedule(height: i64, width: i64, steps: usize) -> Vec<Scale> {
    let mut sizes = vec![(height, width)];
    let (mut h, mut w) = (height, width);
    while h.max(w) > BASE_SIDE {
        h = (h + 1) / 2;
        w = (w + 1) / 2;
        sizes.push((h, w));
    }
    sizes.reverse();
    let mut s = steps;
    sizes
        .into_iter()
        .enumerate()
        .map(|(i, (height, width))| {
            if i > 0 {
                s = (s / 2).max(10).min(steps);
            }
            Scale {
                height,
                width,
                steps: s,
            }
        })
        .collect()
}

/// What one scale of [`run_multiscale`] did.
#[derive(Debug, Clone)]
pub struct ScaleReport {
    pub scale: Scale,
    /// The tiling it ran with (`None`: whole).
    pub tiling: Option<Tiling>,
    /// The L-BFGS report (`None` for Adam).
    pub report: Option<LbfgsReport>,
    pub seconds: f64,
}

/// Gatys over a coarse-to-fine [`schedule`] of `(height, width)` with
/// `cfg.steps` at the coarsest scale. At each scale the content is resized
/// to it and the style by the same factor; `plan(height, width)` says
/// whether the scale runs whole (`None`) or tiled, and `history(pixels)`
/// the tiled runs' L-BFGS history. The first scale starts from
/// [`Gatys::initial_image`], each next one from the previous result
/// upsampled. `observe(scale index, eval, terms)` as in [`Gatys::run`].
/// With one scale and no tiling this is exactly [`Gatys::run_report`].
#[allow(clippy::too_many_arguments)]
pub fn run_multiscale<P, H, F>(
    vgg: &Vgg,
    cfg: &super::GatysConfig,
    content: Option<&Tensor>,
    style: &Tensor,
    (height, width): (i64, i64),
    mut plan: P,
    history: H,
    mut observe: F,
    photoreal: Option<f64>,
) -> Result<(Tensor, Vec<ScaleReport>)>
where
    P: FnMut(i64, i64) -> Result<Option<Tiling>>,
    H: Fn(i64) -> usize,
    F: FnMut(usize, usize, &LossTerms) -> bool,
{
    let scales = schedule(height, width, cfg.steps);
    let last = scales.len() - 1;
    let mut x: Option<Tensor> = None;
    let mut reports = Vec::with_capacity(scales.len());
    for (i, sc) in scales.iter().enumerate() {
        let t0 = std::time::Instant::now();
        let f = sc.height as f64 / height as f64;
        let ck = content.map(|c| nst_core::image_io::resize_to(c, sc.height, sc.width));
        let (sh, sw) = (style.size()[2], style.size()[3]);
        let sk = if i == last {
            style.shallow_clone()
        } else {
            let side = |v: i64| ((v as f64 * f).round() as i64).max(32);
            nst_core::image_io::resize_to(style, side(sh), side(sw))
        };
        let tiling = plan(sc.height, sc.width)?;
        let cfg_k = super::GatysConfig {
            steps: sc.steps,
            ..cfg.clone()
        };
        let mut g = Gatys::new_tiled(vgg, cfg_k, ck.as_ref(), &sk, tiling.as_ref())?;
        if let (Some(l), true) = (photoreal, ck.is_some()) {
            g = g.with_photorealism(l)?;
        }
        let init = match &x {
            None => g.initial_image(sc.height, sc.width),
            Some(prev) => nst_core::image_io::resize_to(prev, sc.height, sc.width),
        };
        let obs = |e: usize, t: &LossTerms| observe(i, e, t);
        let (y, report) = match &tiling {
            Some(t) => g.run_tiled(&init, t, history(sc.height * sc.width), obs)?,
            None => g.run_report(&init, obs)?,
        };
        x = Some(y);
        reports.push(ScaleReport {
            scale: *sc,
            tiling,
            report,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    let x = x.ok_or_else(|| Error::Config("no scale to run".into()))?;
    Ok((x, reports))
}
