//! The flexible solver as a trainable model (`model.kind = "puy_perez"`):
//! N unrolled updates X⁽ᵗ⁺¹⁾ = X⁽ᵗ⁾ − g_t(X⁽ᵗ⁾) from X⁽⁰⁾ = X_content,
//! trained to minimise Gatys's loss L = λc·Lc + λs·Ls of the output, in the
//! paper's normalisation:
//!
//! - Lc = (1/(n₄c₄))·‖F₄ − C₄‖²_F at `conv4_2`;
//! - Ls = (1/|I|)·Σ_ℓ (1/c_ℓ²)·‖(1/n_ℓ)F_ℓᵀF_ℓ − (1/n'_ℓ)S_ℓᵀS_ℓ‖²_F.
//!
//! At run time a projection can follow every update (the photorealistic
//! mode): X⁽ᵗ⁺¹⁾ = P[X⁽ᵗ⁾ − g_t(X⁽ᵗ⁾)], with no retraining.
use crate::net::{gram_per_pixel, CubicNorm, UpdateNet};
use nst_model::{Error, Model, Result, StepOutput, TrainModel};
use nst_vgg::{Pooling, Tap, Vgg};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Reduction, Tensor};

/// The `model.kind` of the flexible solver.
pub const KIND: &str = "puy_perez";

/// `[model]` for `kind = "puy_perez"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PuyConfig {
    /// VGG19 weights for the loss (default: checkpoints/vgg19.safetensors).
    #[serde(default)]
    pub vgg_weights: Option<std::path::PathBuf>,
    /// VGG pooling in the loss: "avg" (as `nst-infer gatys`) or "max".
    #[serde(default = "d_pooling")]
    pub pooling: Pooling,
    /// Unrolled updates N (each g_t has its own weights).
    #[serde(default = "d_steps")]
    pub steps: usize,
    /// Width of each level of the forward/backward maps (each level halves the resolution).
    #[serde(default = "d_channels")]
    pub channels: Vec<i64>,
    /// The content layer of Lc.
    #[serde(default = "d_content_layer")]
    pub content_layer: Tap,
    /// The style layers I_s of Ls.
    #[serde(default = "d_style_layers")]
    pub style_layers: Vec<Tap>,
    /// Normalisation of the cubic term D_ℓ: "rms" (its own RMS: direction
    /// only) or "gram" (the activations' scale: keeps the size of the Gram
    /// mismatch). Checkpoints saved before this option use "rms".
    #[serde(default)]
    pub cubic_norm: CubicNorm,
}

fn d_pooling() -> Pooling {
    Pooling::Avg
}
fn d_steps() -> usize {
    4
}
fn d_channels() -> Vec<i64> {
    vec![16, 32, 64, 128]
}
fn d_content_layer() -> Tap {
    Tap::conv(4, 2)
}
fn d_style_layers() -> Vec<Tap> {
    (1..=5).map(|b| Tap::relu(b, 1)).collect()
}

impl Default for PuyConfig {
    fn default() -> Self {
        Self {
            vgg_weights: None,
            pooling: d_pooling(),
            steps: d_steps(),
            channels: d_channels(),
            content_layer: d_content_layer(),
            style_layers: d_style_layers(),
            cubic_norm: CubicNorm::default(),
        }
    }
}

/// `[loss]` for `kind = "puy_perez"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PuyLossConfig {
    /// λc.
    #[serde(default = "d_content_weight")]
    pub content_weight: f64,
    /// λs.
    #[serde(default = "d_style_weight")]
    pub style_weight: f64,
    /// Weight of L(X⁽ᵗ⁾) for t = 1 … N in the training loss (default: the
    /// output X⁽ᴺ⁾ only, as in the paper).
    #[serde(default)]
    pub step_weights: Vec<f64>,
}

fn d_content_weight() -> f64 {
    1.0
}
fn d_style_weight() -> f64 {
    DEFAULT_STYLE_WEIGHT
}

/// λs for λc = 1 with Keras VGG19 features (Caffe preprocessing, average
/// pooling): chosen so Gatys's optimum of this loss is a clear stylisation
/// that keeps the content (see `docs/puy-perez.md`).
pub const DEFAULT_STYLE_WEIGHT: f64 = 2e-4;

impl Default for PuyLossConfig {
    fn default() -> Self {
        Self {
            content_weight: d_content_weight(),
            style_weight: d_style_weight(),
            step_weights: vec![],
        }
    }
}

/// Gatys's loss in Puy and Pérez's normalisation, with its targets computed once.
pub struct StyleLoss {
    pub vgg: Vgg,
    pub content_layer: Tap,
    pub style_layers: Vec<Tap>,
    pub content_weight: f64,
    pub style_weight: f64,
    taps: Vec<Tap>,
}

/// Targets of [`StyleLoss`]: content features C₄ and style Grams (1/n')SᵀS.
pub struct Targets {
    pub content: Tensor,
    pub style_grams: Vec<Tensor>,
}

/// The two terms, unweighted, as differentiable scalars (means over the batch).
pub struct Terms {
    pub content: Tensor,
    pub style: Tensor,
}

impl StyleLoss {
    pub fn new(
        vgg: Vgg,
        content_layer: Tap,
        style_layers: Vec<Tap>,
        content_weight: f64,
        style_weight: f64,
    ) -> Result<Self> {
        if style_layers.is_empty() {
            return Err(Error::Config("model.style_layers is empty".into()));
        }
        for (name, w) in [
            ("content_weight", content_weight),
            ("style_weight", style_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(Error::Config(format!(
                    "loss.{name} must be a non-negative number, got {w}"
                )));
            }
        }
        let mut taps = style_layers.clone();
        taps.push(content_layer);
        Ok(Self {
            vgg,
            content_layer,
            style_layers,
            content_weight,
            style_weight,
            taps,
        })
    }

    fn vgg_err(e: nst_vgg::Error) -> Error {
        Error::Vgg(e)
    }

    /// The targets, under `no_grad`.
    ///
    /// # Shapes
    /// `content: [B, 3, H, W]`, `style: [B or 1, 3, H', W']`
    pub fn targets(&self, content: &Tensor, style: &Tensor) -> Result<Targets> {
        tch::no_grad(|| {
            let c = self
                .vgg
                .encode(content, &[self.content_layer])
                .map_err(Self::vgg_err)?;
            let s = self
                .vgg
                .encode(style, &self.style_layers)
                .map_err(Self::vgg_err)?;
            Ok(Targets {
                content: c[self.content_layer].detach(),
                style_grams: self
                    .style_layers
                    .iter()
                    .map(|&t| gram_per_pixel(&s[t]))
                    .collect(),
            })
        })
    }

    /// Lc and Ls at `x` (unweighted, averaged over the batch).
    pub fn terms(&self, x: &Tensor, targets: &Targets) -> Result<Terms> {
        let f = self.vgg.encode(x, &self.taps).map_err(Self::vgg_err)?;
        let content = f[self.content_layer]
            .to_kind(Kind::Float)
            .mse_loss(&targets.content.to_kind(Kind::Float), Reduction::Mean);
        let mut style = Tensor::zeros([], (Kind::Float, x.device()));
        for (&t, s) in self.style_layers.iter().zip(&targets.style_grams) {
            let g = gram_per_pixel(&f[t]);
            // (1/c²)·‖G − S‖²_F is the mean over the c² entries.
            style += g.mse_loss(&s.expand_as(&g), Reduction::Mean);
        }
        let style = style / self.style_layers.len() as f64;
        Ok(Terms { content, style })
    }

    /// λc·Lc + λs·Ls.
    pub fn total(&self, t: &Terms) -> Tensor {
        &t.content * self.content_weight + &t.style * self.style_weight
    }

    /// The same loss in `nst_optim::GatysConfig` weights: Gatys's Gram is
    /// FᵀF/(c·n), so w_ℓ = c_ℓ² and style_weight = λs/|I| reproduce it.
    pub fn gatys_weights(&self) -> (f64, f64, Vec<f64>) {
        let arch = self.vgg.arch();
        (
            self.content_weight,
            self.style_weight / self.style_layers.len() as f64,
            self.style_layers
                .iter()
                .map(|&t| (arch.channels(t) * arch.channels(t)) as f64)
                .collect(),
        )
    }
}

/// The flexible solver: N learned updates and the loss they were trained on.
pub struct FlexibleSolver {
    vs: nn::VarStore,
    pub loss: StyleLoss,
    pub config: PuyConfig,
    step_weights: Vec<f64>,
    updates: Vec<UpdateNet>,
}

/// A projection applied after every update (the photorealistic mode).
pub type Projection<'a> = &'a dyn Fn(&Tensor) -> Tensor;

impl FlexibleSolver {
    pub fn new(vgg: Vgg, config: PuyConfig, loss: PuyLossConfig) -> Result<Self> {
        if config.steps == 0 || config.steps > 64 {
            return Err(Error::Config(format!(
                "model.steps must be in 1..=64, got {}",
                config.steps
            )));
        }
        if config.channels.is_empty()
            || config.channels.len() > 8
            || config.channels.iter().any(|&c| c < 1)
        {
            return Err(Error::Config(format!(
                "model.channels needs 1 to 8 positive widths, got {:?}",
                config.channels
            )));
        }
        let arch = vgg.arch();
        let content_layer = config
            .content_layer
            .check_for(arch)
            .map_err(|e| Error::Config(format!("model.content_layer: {e}")))?;
        let style_layers = config
            .style_layers
            .iter()
            .map(|t| t.check_for(arch))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Config(format!("model.style_layers: {e}")))?;
        let step_weights = if loss.step_weights.is_empty() {
            let mut w = vec![0.0; config.steps];
            w[config.steps - 1] = 1.0;
            w
        } else {
            loss.step_weights.clone()
        };
        if step_weights.len() != config.steps
            || step_weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
            || step_weights.iter().all(|w| *w == 0.0)
        {
            return Err(Error::Config(format!(
                "loss.step_weights needs {} non-negative values, not all zero, got {:?}",
                config.steps, loss.step_weights
            )));
        }
        let style_loss = StyleLoss::new(
            vgg,
            content_layer,
            style_layers,
            loss.content_weight,
            loss.style_weight,
        )?;
        let vs = nn::VarStore::new(style_loss.vgg.device());
        let updates = (0..config.steps)
            .map(|t| {
                UpdateNet::new(
                    &(vs.root() / format!("step{t}")),
                    &config.channels,
                    config.cubic_norm,
                )
            })
            .collect();
        Ok(Self {
            vs,
            loss: style_loss,
            config,
            step_weights,
            updates,
        })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The number of trained updates N.
    pub fn steps(&self) -> usize {
        self.updates.len()
    }

    /// The smallest image side the solver accepts.
    pub fn min_side(&self) -> i64 {
        self.updates[0].min_side().max(16)
    }

    /// Mutable access for loading weights.
    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    /// H^s_{ℓ,t} for every update t: the style through each g_t's forward maps.
    pub fn style_grams(&self, style: &Tensor) -> Vec<Vec<Tensor>> {
        self.updates.iter().map(|u| u.style_grams(style)).collect()
    }

    /// X⁽⁰⁾ = content, …, X⁽ˢᵗᵉᵖˢ⁾, each followed by `project` if given.
    /// Gradients flow unless the caller is under `no_grad`.
    ///
    /// # Shapes
    /// `content: [B, 3, H, W]`, `style: [B or 1, 3, H', W']`, RGB in [0, 1]
    /// → `steps + 1` tensors `[B, 3, H, W]` (not clamped).
    pub fn unroll(
        &self,
        content: &Tensor,
        style: &Tensor,
        steps: usize,
        project: Option<Projection>,
    ) -> Result<Vec<Tensor>> {
        self.iterate(content, steps, project, |g, x| {
            Ok(g.forward(x, &g.style_grams(style)))
        })
    }

    /// X⁽ᵗ⁺¹⁾ = P(X⁽ᵗ⁾ − update(g_t, X⁽ᵗ⁾)) from the content for `steps`
    /// steps, after checking them and the content: the iteration shared by
    /// the whole and the tiled runs.
    fn iterate(
        &self,
        content: &Tensor,
        steps: usize,
        project: Option<Projection>,
        mut update: impl FnMut(&UpdateNet, &Tensor) -> Result<Tensor>,
    ) -> Result<Vec<Tensor>> {
        if steps > self.updates.len() {
            return Err(Error::Model(format!(
                "this solver was trained with {} steps; --steps must be at most that, got {steps}",
                self.updates.len()
            )));
        }
        let (_, c, h, w) = content.size4()?;
        let min = self.min_side();
        if c != 3 || h.min(w) < min {
            return Err(Error::Model(format!(
                "the solver needs RGB images of at least {min}×{min} pixels, got {:?}",
                content.size()
            )));
        }
        let mut xs = vec![content.shallow_clone()];
        for g in self.updates.iter().take(steps) {
            let x = xs.last().expect("non-empty");
            let mut next = x - update(g, x)?;
            if let Some(p) = project {
                next = p(&next);
            }
            xs.push(next);
        }
        Ok(xs)
    }

    /// Stylises without gradients: the iterates X⁽⁰⁾ … X⁽ˢᵗᵉᵖˢ⁾.
    pub fn run(
        &self,
        content: &Tensor,
        style: &Tensor,
        steps: usize,
        project: Option<Projection>,
    ) -> Result<Vec<Tensor>> {
        tch::no_grad(|| self.unroll(content, style, steps, project))
    }

    /// What a staged tiled run at `h × w` keeps whole
    /// (`UpdateNet::staged_bytes`), for a memory plan to leave room for
    /// it; `None` when the updates cannot run staged (one level).
    pub fn staged_reserve(&self, h: i64, w: i64) -> Option<u64> {
        let net = self.updates.first()?;
        net.staged_halo().map(|_| net.staged_bytes(h, w))
    }

    /// Context each tile of [`FlexibleSolver::run_tiled`] needs, in px.
    pub fn tile_halo(&self) -> i64 {
        self.updates[0].tile_halo()
    }

    /// Tile boundaries of [`FlexibleSolver::run_tiled`] fall on multiples of this.
    pub fn tile_align(&self) -> i64 {
        self.updates[0].tile_align()
    }

    /// [`FlexibleSolver::run`] for one image, tile by tile, in memory bounded
    /// by `tiling`'s tile: each update's Grams are summed over the tiles'
    /// cores and held fixed while each window computes its core's update
    /// (see `UpdateNet::forward_tiled`); the style's Grams are summed over
    /// its own tiles when it is larger than a tile. The projection, if any,
    /// runs on the whole image (the photorealistic one works on a small
    /// grid and a per-pixel guided upsampling, linear in memory). The
    /// result is the untiled one up to rounding when the halo is at least
    /// [`FlexibleSolver::tile_halo`]. When the coarse levels' whole maps
    /// fit in `tiling`'s feature room, only the fine levels run in windows
    /// (`UpdateNet::forward_staged`, with a 16-px halo).
    ///
    /// # Shapes
    /// `content: [1, 3, H, W]`, `style: [1, 3, H', W']`.
    pub fn run_tiled(
        &self,
        content: &Tensor,
        style: &Tensor,
        steps: usize,
        project: Option<Projection>,
        tiling: &nst_tiling::Tiling,
    ) -> Result<Vec<Tensor>> {
        let (b, _, h, w) = content.size4()?;
        if b != 1 {
            return Err(Error::Model(format!(
                "a tiled run takes one image, got a batch of {b}"
            )));
        }
        if tiling.halo < self.tile_halo() || tiling.align % self.tile_align() != 0 {
            return Err(Error::Model(format!(
                "this solver's tiles need a halo of at least {} px on multiples of {} px",
                self.tile_halo(),
                self.tile_align()
            )));
        }
        let grid = tiling.grid(h, w).map_err(|e| Error::Model(e.to_string()))?;
        let style_grid = tiling.grid_or_whole(style.size()[2], style.size()[3]);
        // Staged (the coarse levels whole) when their maps fit in the
        // feature room; what is left keeps pass 1's maps.
        let net = &self.updates[0];
        let whole = self.staged_reserve(h, w).unwrap_or(u64::MAX);
        let staged_tiling = (net.staged_halo())
            .filter(|_| tiling.cache_bytes.is_none_or(|c| whole <= c))
            .and_then(|halo| nst_tiling::Tiling::new(tiling.tile, halo, tiling.align).ok());
        let staged = (staged_tiling.map(|t| t.grid(h, w)).transpose())
            .map_err(|e| Error::Model(e.to_string()))?;
        // The style's Grams staged too when it is no larger than the content.
        let (sh, sw) = (style.size()[2], style.size()[3]);
        let style_staged =
            (staged_tiling.filter(|_| sh * sw <= h * w)).map(|t| t.grid_or_whole(sh, sw));
        tch::no_grad(|| {
            self.iterate(content, steps, project, |g, x| {
                let grams = match &style_staged {
                    Some(sg) => g.grams_staged(style, sg),
                    None => g.grams_tiled(style, &style_grid),
                };
                Ok(match &staged {
                    Some(sg) => {
                        let keep = tiling.cache_bytes.map(|c| c - whole);
                        g.forward_staged(x, &grams, sg, keep)
                    }
                    None => g.forward_tiled(x, &grams, &grid, tiling.cache_bytes),
                })
            })
        })
    }

    /// The parameter names (`step{t}.level{ℓ}.fwd0.weight` …), sorted.
    pub fn var_store_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.vs.variables().into_keys().collect();
        v.sort();
        v
    }
}

impl Model for FlexibleSolver {
    const KIND: &'static str = KIND;
    const TRAIN_CONFIG: &'static str = "configs/puy_perez.toml";
    /// Measured: 9,845 B/px.
    const STEP_BYTES_PER_PIXEL: Option<u64> = Some(9900);
    type Config = PuyConfig;
    type Loss = PuyLossConfig;

    fn vgg_options(m: &PuyConfig) -> (Option<std::path::PathBuf>, Pooling) {
        (m.vgg_weights.clone(), m.pooling)
    }

    fn build(vgg: Vgg, config: PuyConfig, loss: PuyLossConfig) -> Result<Self> {
        Self::new(vgg, config, loss)
    }
}

impl TrainModel for FlexibleSolver {
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// Loss Σ_t w_t·L(X⁽ᵗ⁾) with X⁽⁰⁾ = content and each row's own style.
    fn step(&mut self, content: &Tensor, style: &Tensor) -> Result<StepOutput> {
        let targets = self.loss.targets(content, style)?;
        let xs = self.unroll(content, style, self.updates.len(), None)?;
        let mut total = Tensor::zeros([], (Kind::Float, content.device()));
        let mut last = None;
        for (t, x) in xs.iter().enumerate().skip(1) {
            let w = self.step_weights[t - 1];
            if w == 0.0 && t < xs.len() - 1 {
                continue;
            }
            let terms = self.loss.terms(x, &targets)?;
            total += self.loss.total(&terms) * w;
            last = Some(terms);
        }
        let last = last.expect("the output is always evaluated");
        let input = tch::no_grad(|| self.loss.terms(content, &targets))?;
        let out_total = tch::no_grad(|| self.loss.total(&last));
        let terms = vec![
            ("content".to_string(), last.content.detach()),
            ("style".to_string(), last.style.detach()),
            ("loss_output".to_string(), out_total),
            ("loss_input".to_string(), self.loss.total(&input)),
        ];
        Ok(StepOutput { loss: total, terms })
    }

    fn set_precision(&mut self, precision: nst_vgg::Precision) -> Result<()> {
        self.loss.vgg.set_precision(precision)?;
        for u in &mut self.updates {
            u.set_precision(precision);
        }
        Ok(())
    }

    /// Rows: content | style | X⁽¹⁾ … X⁽ᴺ⁾.
    fn sample_grid(&self, content: &Tensor, style: &Tensor) -> Result<Tensor> {
        let (c, s) = (
            nst_model::sample_items(content),
            nst_model::sample_items(style),
        );
        let xs = self.run(&c, &s, self.updates.len(), None)?;
        let mut cols = vec![
            c.shallow_clone(),
            s.upsample_bilinear2d([c.size()[2], c.size()[3]], false, None, None),
        ];
        cols.extend(xs.iter().skip(1).map(|x| x.clamp(0.0, 1.0)));
        Ok(nst_model::sample_grid(&cols))
    }
}
