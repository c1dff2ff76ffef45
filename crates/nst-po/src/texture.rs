//! The Gatys texture loss the pseudo-optimizers are trained on, and its
//! gradient with respect to each layer's feature map.
//!
//! With F_l the VGG19 (average pooling) map of layer l, divided by the
//! weights' input gain so that it is "per unit of [0, 1] input", flattened to
//! `[N_l, C_l]`:
//!
//! * G_l = F_lᵀF_l / N_l
//! * L_tex(x, x̃) = Σ_l w_l · mean_ij (G_l(x) − G_l(x̃))²_ij  (mean over the C_l² entries)
//! * ∂L_tex/∂F_l = 4 w_l / (N_l C_l²) · F_l (G_l(x) − G_l(x̃))
//!
//! The default layers are `conv1_1, pool1, pool2, pool3, pool4` with
//! w_l = 1e5 each, the published setup.
use nst_model::{Error, Result};
use nst_vgg::{Tap, Vgg};
use tch::{Kind, Tensor};

/// The published texture layers, shallow to deep.
pub const DEFAULT_LAYERS: [Tap; 5] = [
    Tap::conv(1, 1),
    Tap::pool(1),
    Tap::pool(2),
    Tap::pool(3),
    Tap::pool(4),
];
/// The context, in px, that keeps VGG's features within a window's core
/// the whole image's down to `relu5_1` (found for Gatys's tiling).
pub const DEEP_HALO: i64 = 96;

/// The published per-layer weight (images in [0, 1]).
pub const DEFAULT_LAYER_WEIGHT: f64 = 1e5;

/// A Gram texture loss over named VGG layers.
#[derive(Debug)]
pub struct TextureLoss {
    pub vgg: Vgg,
    /// Shallow to deep (the order ProPO's stages add them in).
    pub layers: Vec<Tap>,
    pub weights: Vec<f64>,
    pub(crate) gain: f64,
}

/// The target statistics: one Gram matrix per layer, `[B, C_l, C_l]`.
#[derive(Debug)]
pub struct TargetGrams(pub Vec<Tensor>);

impl TargetGrams {
    /// Repeats every target `k` times along the batch (target i → rows i·k … i·k+k−1).
    pub fn repeat_interleave(&self, k: i64) -> TargetGrams {
        TargetGrams(
            self.0
                .iter()
                .map(|g| g.repeat_interleave_self_int(k, Some(0), None))
                .collect(),
        )
    }
}

/// The PO papers' Gram matrices, G = FᵀF / (H·W), in fp32: `[B, C, H, W]` → `[B, C, C]`.
fn gram(f: &Tensor) -> Tensor {
    nst_losses::gram_with(f, nst_losses::GramNorm::Pixels)
}

impl TextureLoss {
    /// `layers` must be taps of `vgg` (shallow to deep); `weights` one per layer.
    pub fn new(vgg: Vgg, layers: Vec<Tap>, weights: Vec<f64>) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::Config(
                "the texture loss needs at least one layer".into(),
            ));
        }
        if layers.len() != weights.len() {
            return Err(Error::Config(format!(
                "{} texture layers but {} layer weights",
                layers.len(),
                weights.len()
            )));
        }
        let pos: Vec<usize> = layers
            .iter()
            .map(|t| {
                vgg.arch()
                    .position(*t)
                    .ok_or_else(|| Error::Config(format!("{t} is not a layer of {}", vgg.arch())))
            })
            .collect::<Result<_>>()?;
        if pos.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::Config(format!(
                "texture layers must be listed shallow to deep without repeats, got {}",
                layers
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )));
        }
        let gain = vgg.preprocessing().input_gain();
        Ok(Self {
            vgg,
            layers,
            weights,
            gain,
        })
    }

    /// The published setup: `conv1_1, pool1 … pool4`, weight 1e5 each.
    pub fn published(vgg: Vgg) -> Result<Self> {
        let n = DEFAULT_LAYERS.len();
        Self::new(vgg, DEFAULT_LAYERS.to_vec(), vec![DEFAULT_LAYER_WEIGHT; n])
    }

    /// Channels of each layer.
    pub fn channels(&self) -> Vec<i64> {
        self.layers
            .iter()
            .map(|t| self.vgg.arch().channels(*t))
            .collect()
    }

    /// The smallest image side the layers accept.
    pub fn min_side(&self) -> i64 {
        self.layers
            .iter()
            .map(|t| self.vgg.arch().stride(*t))
            .max()
            .unwrap_or(1)
    }

    /// Feature maps per unit of [0, 1] input, one per layer, for `x: [B, 3, H, W]` in [0, 1].
    pub fn features(&self, x: &Tensor) -> Result<Vec<Tensor>, nst_vgg::Error> {
        self.features_first(x, self.layers.len())
    }

    /// The maps of the first `n` layers only: VGG runs no deeper than the
    /// n-th layer (ProPO's early stages need only shallow layers).
    pub fn features_first(&self, x: &Tensor, n: usize) -> Result<Vec<Tensor>, nst_vgg::Error> {
        let taps = &self.layers[..n.min(self.layers.len())];
        let f = self.vgg.encode(x, taps)?;
        Ok(taps.iter().map(|t| &f[*t] / self.gain).collect())
    }

    /// The target statistics of `target: [B, 3, H, W]` (no gradient).
    pub fn target(&self, target: &Tensor) -> Result<TargetGrams, nst_vgg::Error> {
        tch::no_grad(|| {
            Ok(TargetGrams(
                self.features(target)?.iter().map(gram).collect(),
            ))
        })
    }

    /// [`TextureLoss::target`] of a single image `[1, 3, H, W]`, its Gram
    /// matrices summed over `tiling`'s tiles (whole when it fits in one):
    /// a target as large as a tiled output is never encoded whole (at
    /// 4096² its VGG maps alone would take several GB); see
    /// [`TextureLoss::sums_tiled`].
    pub fn target_tiled(
        &self,
        target: &Tensor,
        tiling: &nst_tiling::Tiling,
    ) -> Result<TargetGrams> {
        let sums = self.sums_tiled(target, tiling)?;
        Ok(TargetGrams(
            sums.grams().iter().map(|g| g.unsqueeze(0)).collect(),
        ))
    }

    /// Per-sample, per-layer weighted losses `[B]` for the first `n_layers`
    /// layers, from features already computed.
    pub fn layer_losses(
        &self,
        feats: &[Tensor],
        target: &TargetGrams,
        n_layers: usize,
    ) -> Vec<Tensor> {
        feats
            .iter()
            .zip(&target.0)
            .zip(&self.weights)
            .take(n_layers)
            .map(|((f, t), w)| {
                let d = gram(f) - t.expand(gram_shape(f), false);
                d.square()
                    .mean_dim([1i64, 2].as_slice(), false, Kind::Float)
                    * *w
            })
            .collect()
    }

    /// L_tex over the first `n_layers` layers, per sample: `[B]`.
    pub fn loss_per_sample(
        &self,
        x: &Tensor,
        target: &TargetGrams,
        n_layers: usize,
    ) -> Result<Tensor, nst_vgg::Error> {
        let feats = self.features(x)?;
        Ok(
            Tensor::stack(&self.layer_losses(&feats, target, n_layers), 0).sum_dim_intlist(
                [0i64].as_slice(),
                false,
                Kind::Float,
            ),
        )
    }

    /// ∂L_tex/∂F_l for every layer, in closed form (no autograd, no graph):
    /// 4 w_l / (N_l C_l²) · (G_l − G̃_l) F_l in the `[C, N]` layout.
    pub fn feature_gradients(&self, feats: &[Tensor], target: &TargetGrams) -> Vec<Tensor> {
        tch::no_grad(|| {
            feats
                .iter()
                .zip(&target.0)
                .zip(&self.weights)
                .map(|((f, t), w)| {
                    let (b, c, h, wd) = f.size4().expect("feature maps are [B, C, H, W]");
                    let n = h * wd;
                    let ff = f.to_kind(Kind::Float).reshape([b, c, n]);
                    let g = ff.bmm(&ff.transpose(1, 2)) / n as f64;
                    let d = g - t.expand([b, c, c], false);
                    (d.bmm(&ff) * (4.0 * w / (n * c * c) as f64)).reshape([b, c, h, wd])
                })
                .collect()
        })
    }
}

/// A texture loss's statistics of one image summed over the cores of a
/// tile grid: Σ FᵀF (f64) and the pixel count per layer.
pub use nst_tiling::GramSums;

impl TextureLoss {
    /// The stride of each layer.
    pub fn strides(&self) -> Vec<i64> {
        self.layers
            .iter()
            .map(|t| self.vgg.arch().stride(*t))
            .collect()
    }

    /// Σ FᵀF over the cores of `grid` for the first `n` layers of
    /// `x: [1, 3, H, W]` (each pixel once), without gradients.
    pub fn gram_sums(
        &self,
        x: &Tensor,
        n: usize,
        grid: &nst_tiling::Grid,
    ) -> Result<GramSums, nst_vgg::Error> {
        let strides = self.strides();
        grid.gram_sums(x, "texture Grams", |_, window| {
            let f = tch::no_grad(|| self.features_first(window, n))?;
            Ok(f.into_iter().zip(strides.iter().copied()).collect())
        })
    }

    /// [`TextureLoss::gram_sums`] of every layer of `x: [1, 3, H, W]` over
    /// `tiling`'s tiles (whole when it fits in one). With a halo below
    /// [`DEEP_HALO`], VGG runs in the windows only to `relu3_1` and on from
    /// there whole.
    pub fn sums_tiled(&self, x: &Tensor, tiling: &nst_tiling::Tiling) -> Result<GramSums> {
        let grid = tiling.grid_or_whole(x.size()[2], x.size()[3]);
        let n = self.layers.len();
        if tiling.halo >= DEEP_HALO || grid.len() == 1 {
            Ok(self.gram_sums(x, n, &grid)?)
        } else {
            let k = self.vgg.arch().stride(nst_vgg::HANDOVER).trailing_zeros() as usize;
            Ok(tch::no_grad(|| self.staged_sums(x, n, &grid, k, |_, _| ()))?.0)
        }
    }

    /// L_tex from statistics summed over tiles ([`TextureLoss::gram_sums`]
    /// of all layers): Σ_l w_l · mean (G_l − G̃_l)² for a single target row.
    pub fn loss_from_sums(&self, sums: &GramSums, target: &TargetGrams) -> f64 {
        sums.ffs
            .iter()
            .zip(&sums.counts)
            .zip(&target.0)
            .zip(&self.weights)
            .map(|(((ff, &n), t), w)| {
                let g = ff / n.max(1) as f64;
                let d = g - t.get(0).to_kind(Kind::Double);
                d.square().mean(Kind::Double).double_value(&[]) * w
            })
            .sum()
    }

    /// ∂L_tex/∂F_l on a window's maps `feats` with the whole image's
    /// statistics `sums` held fixed (its Grams and pixel counts), and each
    /// layer's root-mean-square over the whole image, `[1, 1, 1, 1]`, from
    /// the Grams alone: with g = k·(G − G̃)F, k = 4w/(N C²), the mean of g²
    /// over C·N entries is k²·tr((G − G̃)G(G − G̃))/C. `feats` are the maps
    /// of the layers from index `first` on.
    pub fn feature_gradients_global(
        &self,
        feats: &[Tensor],
        first: usize,
        target: &TargetGrams,
        sums: &GramSums,
    ) -> (Vec<Tensor>, Vec<Tensor>) {
        tch::no_grad(|| {
            feats
                .iter()
                .zip(&target.0[first..])
                .zip(&self.weights[first..])
                .zip(sums.ffs[first..].iter().zip(&sums.counts[first..]))
                .map(|(((f, t), w), (ff, &n))| {
                    let (b, c, h, wd) = f.size4().expect("feature maps are [B, C, H, W]");
                    let g = ff / n.max(1) as f64;
                    let d = &g - t.squeeze_dim(0).to_kind(Kind::Double);
                    let k = 4.0 * w / (n.max(1) * c * c) as f64;
                    let ms = d.matmul(&g).matmul(&d).trace() * (k * k / c as f64);
                    let rms = (ms.clamp_min(0.0).sqrt() + 1e-20)
                        .to_kind(Kind::Float)
                        .reshape([1, 1, 1, 1]);
                    let fl = f.to_kind(Kind::Float).reshape([b, c, h * wd]);
                    let grad =
                        (d.to_kind(Kind::Float).unsqueeze(0).bmm(&fl) * k).reshape([b, c, h, wd]);
                    (grad, rms)
                })
                .unzip()
        })
    }
}

/// Splits `[B, C, H, W]` maps into a t × t grid of tiles, `[B·t², C, H/t, W/t]`
/// (tile (i, j) of sample b is row b·t² + i·t + j; a remainder of H or W
/// that t does not divide is dropped). Returns `None` when a tile would be
/// empty.
pub fn tiles(f: &Tensor, t: i64) -> Option<Tensor> {
    let (b, c, h, w) = f.size4().ok()?;
    let (th, tw) = (h / t, w / t);
    if t < 1 || th < 1 || tw < 1 {
        return None;
    }
    Some(
        f.narrow(2, 0, th * t)
            .narrow(3, 0, tw * t)
            .reshape([b, c, t, th, t, tw])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([b * t * t, c, th, tw]),
    )
}

fn gram_shape(f: &Tensor) -> [i64; 3] {
    let s = f.size();
    [s[0], s[1], s[1]]
}
