//! PO, AdaPO and ProPO as one trainable model family (`model.kind = "po"`).
use crate::net::{NetShape, Norm, Padding, PoNet};
use crate::texture::{TargetGrams, TextureLoss, DEFAULT_LAYERS, DEFAULT_LAYER_WEIGHT};
use nst_model::{Error, Model, Result, StepOutput, TrainModel};
use nst_vgg::{Tap, Vgg};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

mod staged;
pub use staged::StagedPlan;

/// The `model.kind` of the pseudo-optimizers.
pub const KIND: &str = "po";

/// Which of the three solvers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// One network per target (train it on a single image).
    Po,
    /// One network over a set of targets; new targets at inference.
    Adapo,
    /// One network per layer-prefix, applied in sequence (5 stages for 5 layers).
    Propo,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Po => "po",
            Variant::Adapo => "adapo",
            Variant::Propo => "propo",
        }
    }
}

impl std::str::FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "po" => Ok(Variant::Po),
            "adapo" => Ok(Variant::Adapo),
            "propo" => Ok(Variant::Propo),
            _ => Err(format!(
                "unknown pseudo-optimizer {s:?}: expected po, adapo or propo"
            )),
        }
    }
}

/// `[model]` for `kind = "po"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoConfig {
    pub variant: Variant,
    /// VGG19 weights (default: checkpoints/vgg19.safetensors). Average pooling is used.
    #[serde(default)]
    pub vgg_weights: Option<std::path::PathBuf>,
    /// Texture layers, shallow to deep (ProPO's stage s uses the first s+1).
    #[serde(default = "d_layers")]
    pub layers: Vec<Tap>,
    /// Weight w_l of each layer in L_tex (images in [0, 1]).
    #[serde(default = "d_layer_weights")]
    pub layer_weights: Vec<f64>,
    /// Network channels at stride 1, 2, 4, 8, 16.
    #[serde(default = "d_channels")]
    pub channels: Vec<i64>,
    /// Residual blocks per level.
    #[serde(default = "d_res")]
    pub res_blocks: usize,
    #[serde(default = "d_norm")]
    pub norm: Norm,
    /// Padding of the network's 3×3 convolutions: "zeros" (published) or "reflect".
    #[serde(default)]
    pub padding: Padding,
    /// Noise inputs per target in a batch (AdaPO: "many noise inputs per target").
    #[serde(default = "d_noise")]
    pub noise_per_target: i64,
}

fn d_layers() -> Vec<Tap> {
    DEFAULT_LAYERS.to_vec()
}
fn d_layer_weights() -> Vec<f64> {
    vec![DEFAULT_LAYER_WEIGHT; 5]
}
fn d_channels() -> Vec<i64> {
    vec![32, 64, 128, 128, 128]
}
fn d_res() -> usize {
    2
}
fn d_norm() -> Norm {
    Norm::Batch
}
fn d_noise() -> i64 {
    1
}

/// `[loss]` for `kind = "po"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoLoss {
    /// ProPO: the weight λ_s of stage s's loss S^[s+1](x^(s+1)) (default 1 each).
    /// PO/AdaPO have one stage.
    #[serde(default)]
    pub stage_weights: Vec<f64>,
    /// λ_div of an optional diversity term (Ulyanov, Vedaldi and Lempitsky,
    /// "Improved Texture Networks", 2017), off by default as in the paper.
    /// With d the mean pairwise L1 distance between the deepest texture
    /// layer's features of the outputs of one target (see
    /// [`output_diversity`]), the loss becomes L − λ_div · L̄ · ln d, with L̄
    /// the batch's loss held constant. So λ_div is a relative price: a 1 %
    /// gain in diversity is worth λ_div % of texture loss, whatever the
    /// loss's scale. Needs `model.noise_per_target` ≥ 2.
    #[serde(default)]
    pub diversity_weight: f64,
    /// Local statistics: with t > 1 the training loss is the mean of L_tex
    /// over a t × t grid of tiles of every output (at every layer, the
    /// tile's Gram against the whole target's), instead of L_tex of the
    /// whole output. An output that meets the target's statistics only on
    /// average (one exaggerated patch over flat noise) then pays in every
    /// other tile. Off (1) by default, as in the paper; the logged
    /// `tex_output` and the evaluation stay whole-image.
    #[serde(default = "d_tiles")]
    pub local_tiles: i64,
}

fn d_tiles() -> i64 {
    1
}

impl Default for PoLoss {
    fn default() -> Self {
        Self {
            stage_weights: Vec::new(),
            diversity_weight: 0.0,
            local_tiles: d_tiles(),
        }
    }
}

impl PoConfig {
    pub fn new(variant: Variant) -> Self {
        Self {
            variant,
            vgg_weights: None,
            layers: d_layers(),
            layer_weights: d_layer_weights(),
            channels: d_channels(),
            res_blocks: d_res(),
            norm: d_norm(),
            padding: Padding::default(),
            noise_per_target: d_noise(),
        }
    }
}

/// The frozen VGG19 texture loss and the trained stage networks.
pub struct PseudoOptimizer {
    vs: nn::VarStore,
    pub loss: TextureLoss,
    pub config: PoConfig,
    stage_weights: Vec<f64>,
    diversity_weight: f64,
    local_tiles: i64,
    stages: Vec<PoNet>,
}

/// The result of running the solver: the pre-activation after each stage.
#[derive(Debug)]
pub struct Run {
    /// z⁽⁰⁾ (the noise) … z⁽ˢ⁾.
    pub z: Vec<Tensor>,
}

impl Run {
    /// The images x⁽ˢ⁾ = sigmoid(z⁽ˢ⁾), s = 0 … stages.
    pub fn images(&self) -> Vec<Tensor> {
        self.z.iter().map(|z| z.sigmoid()).collect()
    }
    /// The final image.
    pub fn output(&self) -> Tensor {
        self.z
            .last()
            .expect("a run has at least its input")
            .sigmoid()
    }
}

impl PseudoOptimizer {
    pub fn new(mut vgg: Vgg, config: PoConfig, loss: PoLoss) -> Result<Self> {
        // Circular padding holds for the loss network too: a border in
        // either network would tell the solver where it is.
        vgg.set_circular_padding(config.padding == Padding::Circular);
        if vgg.pooling() != nst_vgg::Pooling::Avg {
            return Err(Error::Config(
                "the texture loss uses VGG19 with average pooling".into(),
            ));
        }
        let taps = config
            .layers
            .iter()
            .map(|t| t.check_for(vgg.arch()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Config(format!("model.layers: {e}")))?;
        if config.channels.is_empty() || config.channels.iter().any(|&c| c < 1) {
            return Err(Error::Config(format!(
                "model.channels must be positive, got {:?}",
                config.channels
            )));
        }
        if config.noise_per_target < 1 {
            return Err(Error::Config(
                "model.noise_per_target must be at least 1".into(),
            ));
        }
        let tex =
            TextureLoss::new(vgg, taps, config.layer_weights.clone()).map_err(|e| match e {
                Error::Config(m) => Error::Config(format!("model.layers/layer_weights: {m}")),
                e => e,
            })?;
        let n = tex.layers.len();
        let counts = stage_layer_counts(config.variant, n);
        let stage_weights = if loss.stage_weights.is_empty() {
            vec![1.0; counts.len()]
        } else {
            loss.stage_weights.clone()
        };
        if stage_weights.len() != counts.len()
            || stage_weights.iter().any(|w| w.is_nan() || *w < 0.0)
        {
            return Err(Error::Config(format!(
                "loss.stage_weights needs {} non-negative values for {} ({} stages), got {:?}",
                counts.len(),
                config.variant.name(),
                counts.len(),
                loss.stage_weights
            )));
        }
        if !(loss.diversity_weight >= 0.0 && loss.diversity_weight.is_finite()) {
            return Err(Error::Config(format!(
                "loss.diversity_weight must be a finite value ≥ 0, got {}",
                loss.diversity_weight
            )));
        }
        if loss.diversity_weight > 0.0 && config.noise_per_target < 2 {
            return Err(Error::Config(format!(
                "loss.diversity_weight = {} compares the outputs of one target, so it needs \
                 model.noise_per_target ≥ 2 (got {})",
                loss.diversity_weight, config.noise_per_target
            )));
        }
        if !(1..=8).contains(&loss.local_tiles) {
            return Err(Error::Config(format!(
                "loss.local_tiles must be 1 (whole image) to 8, got {}",
                loss.local_tiles
            )));
        }
        let shape = NetShape {
            channels: config.channels.clone(),
            res_blocks: config.res_blocks,
            norm: config.norm,
            padding: config.padding,
        };
        let vs = nn::VarStore::new(tex.vgg.device());
        let chans = tex.channels();
        let strides: Vec<i64> = tex
            .layers
            .iter()
            .map(|t| tex.vgg.arch().stride(*t))
            .collect();
        let stages = counts
            .iter()
            .enumerate()
            .map(|(s, &k)| {
                let layers: Vec<(i64, i64)> = (0..k).map(|i| (chans[i], strides[i])).collect();
                PoNet::new(&(vs.root() / format!("stage{}", s + 1)), &layers, &shape)
            })
            .collect();
        Ok(Self {
            vs,
            loss: tex,
            config,
            stage_weights,
            diversity_weight: loss.diversity_weight,
            local_tiles: loss.local_tiles,
            stages,
        })
    }

    pub fn variant(&self) -> Variant {
        self.config.variant
    }

    /// How many layers each stage sees.
    pub fn stage_layer_counts(&self) -> Vec<usize> {
        self.stages.iter().map(|s| s.n_layers()).collect()
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Mutable access for loading weights.
    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    /// Uniform noise in [−1, 1] pre-activation space, `[n, 3, h, w]`.
    pub fn noise(n: i64, h: i64, w: i64, device: Device) -> Tensor {
        Tensor::rand([n, 3, h, w], (Kind::Float, device)) * 2.0 - 1.0
    }

    /// Runs every stage from `z0` against `target`, one target row per `z0` row.
    ///
    /// In training mode the graph is kept through z and the returned
    /// features of each stage's output (for the loss), and the noise input's
    /// per-layer losses are returned (for the log); the gradient maps fed to
    /// the networks are always detached inputs.
    ///
    /// VGG runs only as deep as the next use needs: at inference, stage s's
    /// input to its own k_s layers and the last output not at all (for ProPO
    /// at 256², about a third of the work of six full passes to `pool4`); in
    /// training, each output to the layers of its own loss and of the next
    /// stage, the last to all layers.
    fn run_inner(
        &self,
        z0: &Tensor,
        target: &TargetGrams,
        train: bool,
    ) -> Result<(Run, Vec<Vec<Tensor>>, Vec<Tensor>)> {
        let (_, _, h, w) = z0.size4()?;
        let min = self.loss.min_side();
        if h.min(w) < min {
            return Err(Error::Model(format!(
                "the texture layers need images of at least {min}×{min} pixels, got {h}×{w}"
            )));
        }
        let vgg_err = Error::Vgg;
        let n_all = self.loss.layers.len();
        let counts = self.stage_layer_counts();
        let mut zs = vec![z0.shallow_clone()];
        let mut stage_feats = Vec::new();
        let first = if train { n_all } else { counts[0] };
        let mut feats =
            tch::no_grad(|| self.loss.features_first(&z0.sigmoid(), first)).map_err(vgg_err)?;
        let input_losses = if train {
            tch::no_grad(|| self.loss.layer_losses(&feats, target, n_all))
        } else {
            Vec::new()
        };
        for (s, net) in self.stages.iter().enumerate() {
            let detached: Vec<Tensor> = feats.iter().take(counts[s]).map(|f| f.detach()).collect();
            let grads = self.loss.feature_gradients(&detached, target);
            let delta = net.forward_t(&grads, h, w, train);
            let z = zs.last().expect("non-empty") + delta;
            let next = counts.get(s + 1).copied();
            feats = if train {
                let need = next.map_or(n_all, |k| k.max(counts[s]));
                self.loss
                    .features_first(&z.sigmoid(), need)
                    .map_err(vgg_err)?
            } else if let Some(k) = next {
                tch::no_grad(|| self.loss.features_first(&z.sigmoid(), k)).map_err(vgg_err)?
            } else {
                Vec::new()
            };
            if train {
                stage_feats.push(feats.iter().map(|f| f.shallow_clone()).collect());
            }
            zs.push(z);
        }
        Ok((Run { z: zs }, stage_feats, input_losses))
    }

    /// The output image of a training-mode run (batch statistics), for tests.
    #[cfg(test)]
    pub(crate) fn run_train_mode(&self, z0: &Tensor, target: &TargetGrams) -> Tensor {
        tch::no_grad(|| {
            self.run_inner(z0, target, true)
                .expect("a valid input")
                .0
                .output()
        })
    }

    /// Synthesises from the noise `z0: [B, 3, H, W]` against `target` (one
    /// target row, or one per `z0` row), without gradients, in inference mode.
    pub fn run(&self, z0: &Tensor, target: &TargetGrams) -> Result<Run> {
        let b = z0.size()[0];
        let t = if target.0[0].size()[0] == 1 && b > 1 {
            TargetGrams(
                target
                    .0
                    .iter()
                    .map(|g| g.expand([b, g.size()[1], g.size()[2]], false))
                    .collect(),
            )
        } else {
            TargetGrams(target.0.iter().map(|g| g.shallow_clone()).collect())
        };
        tch::no_grad(|| self.run_inner(z0, &t, false).map(|r| r.0))
    }
}

impl PseudoOptimizer {
    /// Context, in px, each tile of [`PseudoOptimizer::run_tiled`] gets:
    /// VGG's (the 96 px Gatys's tiling found enough at `relu5_1`, deeper than
    /// `pool4`) plus the widest stage network's receptive radius, on
    /// multiples of 16.
    pub fn tile_halo(&self) -> i64 {
        let net = self
            .stages
            .iter()
            .map(|s| s.receptive_radius())
            .max()
            .unwrap_or(0);
        (crate::texture::DEEP_HALO + net + 15) / 16 * 16
    }

    /// Why this model's networks cannot run tile by tile, if they cannot.
    pub fn untileable(&self) -> Option<&'static str> {
        self.stages.iter().find_map(|s| s.untileable())
    }

    /// Tile boundaries fall on multiples of `pool4`'s stride.
    pub const TILE_ALIGN: i64 = 16;

    /// [`PseudoOptimizer::run`] for one noise input `z0: [1, 3, H, W]`, tile
    /// by tile on `tiling`, in memory bounded by the tile.
    ///
    /// When the tiling's feature room ([`nst_tiling::Tiling::cache_bytes`])
    /// and halo allow one of [`PseudoOptimizer::staged_plans`], each stage
    /// runs staged (see the `staged` module): VGG's and the network's
    /// coarse parts whole, the fine ones in windows with the plan's halo,
    /// the whole run's result up to rounding. Otherwise everything runs in
    /// windows, which needs [`PseudoOptimizer::tile_halo`]: at each stage,
    /// pass 1 sums FᵀF over the tiles' cores, which gives the whole image's
    /// Grams; pass 2 computes each window's gradient maps with them (and the
    /// whole image's root-mean-square of each map, from the Grams alone),
    /// runs the stage network on the window and keeps its core's update,
    /// the untiled run's up to the halo's error (VGG features near a
    /// window's edge). Networks with instance norm or circular padding do
    /// not tile: an error.
    ///
    /// With `keep_stages` false, the run holds only z⁽⁰⁾ and the last
    /// stage's z: at 4096² each stage's z is 200 MB.
    pub fn run_tiled(
        &self,
        z0: &Tensor,
        target: &TargetGrams,
        tiling: &nst_tiling::Tiling,
        keep_stages: bool,
    ) -> Result<Run> {
        let (b, _, h, w) = z0.size4()?;
        if b != 1 {
            return Err(Error::Model("a tiled run makes one image at a time".into()));
        }
        if let Some(why) = self.stages.iter().find_map(|s| s.untileable()) {
            return Err(Error::Model(format!(
                "this network does not tile: {why}; use a size that fits whole"
            )));
        }
        let staged = self.staged_plan(tiling, h, w);
        if (staged.is_none() && tiling.halo < self.tile_halo())
            || tiling.align % Self::TILE_ALIGN != 0
        {
            let cheapest = self.staged_plans(h, w).pop();
            return Err(Error::Model(format!(
                "this network's tiles need a halo of at least {} px on multiples of {} px \
                 ({} px with {:.2}G of room for its whole maps)",
                self.tile_halo(),
                Self::TILE_ALIGN,
                cheapest.map_or(0, |p| p.halo),
                cheapest.map_or(0, |p| p.bytes) as f64 / (1u64 << 30) as f64
            )));
        }
        let grid = match staged {
            Some(p) => {
                let t = nst_tiling::Tiling::new(tiling.tile, p.halo, tiling.align);
                t.and_then(|t| t.grid(h, w))
            }
            None => tiling.grid(h, w),
        }
        .map_err(|e| Error::Model(e.to_string()))?;
        let target = TargetGrams(target.0.iter().map(|g| g.narrow(0, 0, 1)).collect());
        let counts = self.stage_layer_counts();
        tch::no_grad(|| {
            let mut zs = vec![z0.shallow_clone()];
            for (net, &n) in self.stages.iter().zip(&counts) {
                let z = zs.last().expect("non-empty");
                let delta = if let Some(p) = staged {
                    let room = (tiling.cache_bytes).map(|c| c.saturating_sub(p.bytes));
                    self.stage_update_staged(net, n, z, &target, &grid, p.k, room)?
                } else {
                    self.stage_update_windows(net, n, z, &target, &grid)?
                };
                let next = z + delta;
                if !keep_stages && zs.len() > 1 {
                    zs.pop();
                }
                zs.push(next);
            }
            Ok(Run { z: zs })
        })
    }

    /// One stage of [`PseudoOptimizer::run_tiled`] all in windows.
    fn stage_update_windows(
        &self,
        net: &PoNet,
        n: usize,
        z: &Tensor,
        target: &TargetGrams,
        grid: &nst_tiling::Grid,
    ) -> Result<Tensor> {
        let x = z.sigmoid();
        let sums = self.loss.gram_sums(&x, n, grid).map_err(Error::Vgg)?;
        let delta = z.zeros_like();
        grid.for_each(|tile| -> Result<()> {
            let feats = (self.loss.features_first(&tile.window.crop(&x), n)).map_err(Error::Vgg)?;
            let (grads, rms) = self.loss.feature_gradients_global(&feats, 0, target, &sums);
            let (wh, ww) = (tile.window.h, tile.window.w);
            let d = net.forward_scaled(&grads, wh, ww, false, Some(&rms));
            let core = tile.core_in_window();
            tile.core.crop(&delta).copy_(&core.crop(&d));
            nst_tiling::report("texture updates", tile.index + 1, grid.len());
            Ok(())
        })?;
        Ok(delta)
    }
}

/// The mean pairwise L1 distance E_{i≠j} mean|F_i − F_j| between the rows of
/// `feats: [B·k, …]`, taken within each group of `k` consecutive rows (the
/// outputs of one target) and averaged over the B groups; a scalar with the
/// graph kept.
pub fn output_diversity(feats: &Tensor, k: i64) -> Tensor {
    let n = feats.size()[0];
    assert!(k >= 2 && n % k == 0, "{n} rows in groups of {k}");
    let f = feats.reshape([n / k, k, -1]).to_kind(Kind::Float);
    // [B, k, 1, D] − [B, 1, k, D]: the diagonal is zero, so divide by k(k−1).
    let d = (f.unsqueeze(2) - f.unsqueeze(1))
        .abs()
        .mean_dim([3i64].as_slice(), false, Kind::Float);
    d.sum(Kind::Float) / ((n / k) * k * (k - 1)) as f64
}

/// The layers each stage sees: PO/AdaPO one stage with all `n`; ProPO stage
/// s (1-based) the first s layers, s = 1 … n.
pub fn stage_layer_counts(variant: Variant, n: usize) -> Vec<usize> {
    match variant {
        Variant::Po | Variant::Adapo => vec![n],
        Variant::Propo => (1..=n).collect(),
    }
}

impl Model for PseudoOptimizer {
    const KIND: &'static str = KIND;
    const TRAIN_CONFIG: &'static str = "configs/propo.toml";
    /// Measured: 68,082 B/px for configs/propo.toml, its noise samples per target included.
    const STEP_BYTES_PER_PIXEL: Option<u64> = Some(68100);
    type Config = PoConfig;
    type Loss = PoLoss;

    fn vgg_options(m: &PoConfig) -> (Option<std::path::PathBuf>, nst_vgg::Pooling) {
        (m.vgg_weights.clone(), nst_vgg::Pooling::Avg)
    }

    fn build(vgg: Vgg, config: PoConfig, loss: PoLoss) -> Result<Self> {
        Self::new(vgg, config, loss)
    }
}

impl TrainModel for PseudoOptimizer {
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn uses_content(&self) -> bool {
        false
    }

    /// Only the style stream is read: its images are the targets x̃. Each
    /// target gets `noise_per_target` noise inputs z⁽⁰⁾ ~ U[−1, 1]; the loss
    /// is Σ_s λ_s · mean_b L_tex(sigmoid(z⁽ˢ⁾), x̃; first k_s layers).
    fn step(&mut self, _content: &Tensor, style: &Tensor) -> Result<StepOutput> {
        let k = self.config.noise_per_target;
        let (b, _, h, w) = style.size4()?;
        let target = self.loss.target(style)?.repeat_interleave(k);
        let z0 = Self::noise(b * k, h, w, style.device());
        let (_, stage_feats, input_losses) = self.run_inner(&z0, &target, true)?;
        let mut terms = Vec::new();
        let n_all = self.loss.layers.len();
        let noise_loss = Tensor::stack(&input_losses, 0)
            .sum_dim_intlist([0i64].as_slice(), false, Kind::Float)
            .mean(Kind::Float);
        terms.push(("tex_noise_input".to_string(), noise_loss));
        let mut total = Tensor::zeros([], (Kind::Float, style.device()));
        let counts = self.stage_layer_counts();
        let t = self.local_tiles;
        let tile_target = (t > 1).then(|| target.repeat_interleave(t * t));
        for (s, feats) in stage_feats.iter().enumerate() {
            let per = match &tile_target {
                None => self.loss.layer_losses(feats, &target, counts[s]),
                Some(tt) => {
                    let tiled = feats
                        .iter()
                        .take(counts[s])
                        .map(|f| {
                            crate::texture::tiles(f, t).ok_or_else(|| {
                                Error::Config(format!(
                                    "loss.local_tiles = {t} leaves no pixel per tile at a \
                                     {:?} feature map: use fewer tiles or larger crops",
                                    &f.size()[2..]
                                ))
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    self.loss.layer_losses(&tiled, tt, counts[s])
                }
            };
            let l = Tensor::stack(&per, 0)
                .sum_dim_intlist([0i64].as_slice(), false, Kind::Float)
                .mean(Kind::Float);
            total += &l * self.stage_weights[s];
            if self.stages.len() > 1 {
                terms.push((format!("tex_stage{}", s + 1), l));
            }
        }
        // The full-layer loss of the output, comparable across variants.
        let last = stage_feats.last().expect("at least one stage");
        let full = tch::no_grad(|| {
            let per = self.loss.layer_losses(last, &target, n_all);
            Tensor::stack(&per, 0)
                .sum_dim_intlist([0i64].as_slice(), false, Kind::Float)
                .mean(Kind::Float)
        });
        terms.push(("tex_output".to_string(), full));
        // Diversity among the outputs of each target, at the deepest layer.
        if k >= 2 {
            let scale = self.loss.vgg.preprocessing().input_gain();
            let d = output_diversity(&(&last[n_all - 1] / scale), k);
            if self.diversity_weight > 0.0 {
                let price = total.detach() * self.diversity_weight;
                total -= price * d.clamp_min(1e-12).log();
            }
            terms.push(("diversity".to_string(), d.detach()));
        }
        Ok(StepOutput { loss: total, terms })
    }

    fn set_precision(&mut self, precision: nst_vgg::Precision) -> Result<()> {
        self.loss.vgg.set_precision(precision)?;
        for net in &mut self.stages {
            net.precision = precision;
        }
        Ok(())
    }

    /// Rows: target | noise input | each stage's output.
    fn sample_grid(&self, _content: &Tensor, style: &Tensor) -> Result<Tensor> {
        let t = nst_model::sample_items(style);
        let (n, _, h, w) = t.size4()?;
        let target = self.loss.target(&t)?;
        let run = self.run(&Self::noise(n, h, w, t.device()), &target)?;
        let mut cols = vec![t];
        cols.extend(run.images());
        Ok(nst_model::sample_grid(&cols))
    }
}

impl PseudoOptimizer {
    /// The parameter names (`stage{s}.s{stride}.…`), sorted.
    pub fn var_store_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.vs.variables().into_keys().collect();
        v.sort();
        v
    }
}
