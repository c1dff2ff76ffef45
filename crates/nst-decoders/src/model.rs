//! The set of level decoders, its training objective, and the transfer
//! procedures built on it: Optimal Textures, AdaIN and WCT.
use crate::decoder::{level_decoder, LevelDecoder};
use crate::staged;
use crate::transforms::{match_features, pca_basis, sliced_ot, MomentMap, SlicedOtMap, Strategy};
use nst_model::{Error, Model, Result, StepOutput, TrainModel};
use nst_tiling::{CoreMap, FeatureCache, Grid, Tiling};
use nst_vgg::{Tap, Vgg};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Kind, Reduction, Tensor};

/// The `model.kind` of the decoder set.
pub const KIND: &str = "decoders";

/// `[model]` for `kind = "decoders"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodersConfig {
    /// VGG19 weights (default: checkpoints/vgg19.safetensors).
    #[serde(default)]
    pub vgg_weights: Option<std::path::PathBuf>,
    /// Hidden channel width relative to VGG's.
    #[serde(default = "one")]
    pub width: f64,
    /// Levels to train (1 = relu1_1 … 5 = relu5_1).
    #[serde(default = "all_levels")]
    pub levels: Vec<u8>,
}

/// `[loss]` for `kind = "decoders"`: per level L,
/// pixel_weight·MSE(D_L(φ_L(x)), x) + feature_weight·MSE(φ_L(D_L(φ_L(x))), φ_L(x)),
/// summed over the levels (features per unit of [0, 1] input).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodersLoss {
    #[serde(default = "one")]
    pub pixel_weight: f64,
    #[serde(default = "one")]
    pub feature_weight: f64,
}

fn one() -> f64 {
    1.0
}
fn all_levels() -> Vec<u8> {
    crate::decoder::LEVELS.to_vec()
}

impl Default for DecodersConfig {
    fn default() -> Self {
        Self {
            vgg_weights: None,
            width: 1.0,
            levels: all_levels(),
        }
    }
}

impl Default for DecodersLoss {
    fn default() -> Self {
        Self {
            pixel_weight: 1.0,
            feature_weight: 1.0,
        }
    }
}

/// The frozen VGG19 and one trained decoder per level.
pub struct Decoders {
    vs: nn::VarStore,
    pub vgg: Vgg,
    pub config: DecodersConfig,
    pub loss: DecodersLoss,
    decoders: Vec<LevelDecoder>,
    pub(crate) feature_scale: f64,
}

impl Decoders {
    pub fn new(vgg: Vgg, config: DecodersConfig, loss: DecodersLoss) -> Result<Self> {
        if config.levels.is_empty() || config.levels.iter().any(|l| !(1..=5).contains(l)) {
            return Err(Error::Config(format!(
                "model.levels must be a non-empty subset of 1..=5, got {:?}",
                config.levels
            )));
        }
        if !(config.width > 0.0 && config.width <= 4.0) {
            return Err(Error::Config(format!(
                "model.width must be in (0, 4], got {}",
                config.width
            )));
        }
        let p = vgg.preprocessing();
        let feature_scale = 1.0 / p.input_gain();
        let vs = nn::VarStore::new(vgg.device());
        let mut levels = config.levels.clone();
        levels.sort_unstable();
        levels.dedup();
        let decoders = levels
            .iter()
            .map(|&l| level_decoder(&(vs.root() / format!("relu{l}_1")), l, config.width))
            .collect();
        Ok(Self {
            vs,
            vgg,
            config,
            loss,
            decoders,
            feature_scale,
        })
    }

    /// The trained levels, ascending.
    pub fn levels(&self) -> Vec<u8> {
        self.decoders.iter().map(|d| d.level).collect()
    }

    pub(crate) fn decoder(&self, level: u8) -> Result<&LevelDecoder> {
        self.decoders
            .iter()
            .find(|d| d.level == level)
            .ok_or_else(|| {
                Error::Config(format!(
                    "this checkpoint has no decoder for relu{level}_1 (it has {:?})",
                    self.levels()
                ))
            })
    }

    /// VGG19 `relu{level}_1` features of `x`, per unit of [0, 1] input.
    pub fn encode(&self, x: &Tensor, level: u8) -> Result<Tensor> {
        let mut f = self.encode_levels(x, &[level])?;
        f.pop()
            .ok_or_else(|| Error::Model(format!("no features for relu{level}_1")))
    }

    /// `relu{level}_1` features of `x` at each of `levels` (any order), from
    /// one VGG pass.
    pub fn encode_levels(&self, x: &Tensor, levels: &[u8]) -> Result<Vec<Tensor>> {
        let taps: Vec<Tap> = levels.iter().map(|&l| Tap::relu(l, 1)).collect();
        let f = self.vgg.encode(x, &taps)?;
        Ok(taps.iter().map(|&t| &f[t] * self.feature_scale).collect())
    }

    /// Decodes `relu{level}_1` features (per unit of input) to an image.
    pub fn decode(&self, features: &Tensor, level: u8) -> Result<Tensor> {
        Ok(self.decoder(level)?.forward(features))
    }
}

impl Model for Decoders {
    const KIND: &'static str = KIND;
    const TRAIN_CONFIG: &'static str = "configs/decoders.toml";
    /// Measured: 33,870 B/px with the feature term, all five levels at width 1.
    const STEP_BYTES_PER_PIXEL: Option<u64> = Some(34000);
    type Config = DecodersConfig;
    type Loss = DecodersLoss;

    fn vgg_options(m: &DecodersConfig) -> (Option<std::path::PathBuf>, nst_vgg::Pooling) {
        (m.vgg_weights.clone(), nst_vgg::Pooling::Max)
    }

    fn build(vgg: Vgg, config: DecodersConfig, loss: DecodersLoss) -> Result<Self> {
        Self::new(vgg, config, loss)
    }
}

impl TrainModel for Decoders {
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// Both streams are just images here: content and style batches are
    /// reconstructed alike.
    fn step(&mut self, content: &Tensor, style: &Tensor) -> Result<StepOutput> {
        let x = Tensor::cat(&[content, style], 0);
        let mut terms = Vec::new();
        let mut total = Tensor::zeros([], (Kind::Float, x.device()));
        // The targets of every level from one VGG pass.
        let targets = tch::no_grad(|| self.encode_levels(&x, &self.levels()))?;
        for (d, f) in self.decoders.iter().zip(&targets) {
            let l = d.level;
            let y = d.forward(f);
            let pixel = y.mse_loss(&x, Reduction::Mean) * self.loss.pixel_weight;
            total = total + &pixel;
            terms.push((format!("pixel_relu{l}_1"), pixel));
            // The feature term costs a VGG pass and its backward per level:
            // skipped when its weight is 0 (pixel-only training).
            if self.loss.feature_weight != 0.0 {
                let feat =
                    self.encode(&y, l)?.mse_loss(f, Reduction::Mean) * self.loss.feature_weight;
                total = total + &feat;
                terms.push((format!("feature_relu{l}_1"), feat));
            }
        }
        Ok(StepOutput { loss: total, terms })
    }

    fn set_precision(&mut self, precision: nst_vgg::Precision) -> Result<()> {
        self.vgg.set_precision(precision)?;
        for d in &mut self.decoders {
            d.precision = precision;
        }
        Ok(())
    }

    fn sample_grid(&self, content: &Tensor, _style: &Tensor) -> Result<Tensor> {
        let x = nst_model::sample_items(content);
        let mut cols = vec![x.shallow_clone()];
        for d in &self.decoders {
            let f = self.encode(&x, d.level)?;
            cols.push(d.forward(&f).clamp(0.0, 1.0));
        }
        // columns: input | reconstruction at each level
        Ok(nst_model::sample_grid(&cols))
    }
}

/// Reconstruction PSNR (dB) of each level on `x: [B, 3, H, W]`.
pub fn psnr_per_level(model: &Decoders, x: &Tensor) -> Result<Vec<(u8, f64)>> {
    tch::no_grad(|| {
        model
            .levels()
            .into_iter()
            .map(|l| {
                let y = model.decode(&model.encode(x, l)?, l)?.clamp(0.0, 1.0);
                Ok((l, nst_core::psnr(&y, x, 1.0)))
            })
            .collect()
    })
}

/// How the output's colours are treated at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorMode {
    /// As the decoders produce them.
    #[default]
    Keep,
    /// Match the pixel colour distribution to the style's (sliced OT in RGB).
    Transfer,
    /// Keep the content's chrominance (luminance transfer); needs a content.
    Preserve,
}

/// Settings of an Optimal Textures run (Risser et al., arXiv 2010.14702).
#[derive(Debug, Clone)]
pub struct OptexConfig {
    pub strategy: Strategy,
    /// Rotations per level for `Strategy::Cdf`.
    pub passes: usize,
    /// PCA variance fraction kept (≥ 1: no reduction).
    pub pca: f64,
    /// Levels, deepest first.
    pub levels: Vec<u8>,
    /// Pyramid scales: synthesise at size/2^(k−1), upsample, refine, … up to size.
    pub pyramid: usize,
    /// Style transfer: weight of the content's features at relu5_1 (×½ at relu4_1, ×¼ at relu3_1).
    pub content_strength: f64,
    pub color: ColorMode,
}

impl Default for OptexConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::Cdf,
            passes: 4,
            pca: 0.9,
            levels: vec![5, 4, 3, 2, 1],
            pyramid: 3,
            content_strength: 0.5,
            color: ColorMode::Keep,
        }
    }
}

impl OptexConfig {
    /// The content's weight at `level`: strength × (1, ½, ¼) at relu5_1, relu4_1, relu3_1, else 0.
    pub fn content_weight(&self, level: u8) -> f64 {
        let w = match level {
            5 => 1.0,
            4 => 0.5,
            3 => 0.25,
            _ => 0.0,
        };
        (self.content_strength * w).clamp(0.0, 1.0)
    }
}

/// `[1, C, H, W]` → `[HW, C]`.
fn to_rows(f: &Tensor) -> Tensor {
    let c = f.size()[1];
    f.squeeze_dim(0).reshape([c, -1]).transpose(0, 1)
}

/// `[HW, C]` → `[1, C, H, W]`.
fn from_rows(r: &Tensor, h: i64, w: i64) -> Tensor {
    let c = r.size()[1];
    r.transpose(0, 1).reshape([1, c, h, w])
}

/// Rounds a size to a multiple of 16 (the relu5_1 stride), at least 32.
fn round16(v: i64) -> i64 {
    ((v + 8) / 16 * 16).max(32)
}

/// Optimal Textures: texture synthesis and style transfer by sliced optimal
/// transport of VGG features, decoded level by level. `styles` are
/// `(image [1, 3, H, W], weight)`; with several, the target distribution at
/// each level mixes their feature samples in proportion to the weights.
/// `content` turns synthesis into transfer (and starts from it); otherwise
/// the start is uniform noise. Returns RGB `[1, 3, h, w]` with (h, w) the
/// requested size rounded to multiples of 16.
///
/// With `tiling`, the finest pyramid scale runs tile by tile when it is
/// larger than a tile, and a coarser one only when it does not fit whole
/// in the budget either ([`fits_whole`]).
pub fn optimal_textures(
    model: &Decoders,
    styles: &[(Tensor, f64)],
    content: Option<&Tensor>,
    size: (i64, i64),
    cfg: &OptexConfig,
    tiling: Option<&Tiling>,
) -> Result<Tensor> {
    if styles.is_empty() {
        return Err(Error::Config("at least one style is needed".into()));
    }
    if cfg.color == ColorMode::Preserve && content.is_none() {
        return Err(Error::Config(
            "colour preservation needs a content image".into(),
        ));
    }
    let device = model.vgg.device();
    let (h_out, w_out) = (round16(size.0), round16(size.1));
    let wsum: f64 = styles.iter().map(|s| s.1).sum();
    if wsum.is_nan() || wsum <= 0.0 || styles.iter().any(|s| s.1.is_nan() || s.1 < 0.0) {
        return Err(Error::Config(
            "style weights must be ≥ 0 with a positive sum".into(),
        ));
    }
    tch::no_grad(|| {
        let mut x: Option<Tensor> = None;
        for p in 0..cfg.pyramid.max(1) {
            let div = 1i64 << (cfg.pyramid.max(1) - 1 - p);
            let (h, w) = (round16(h_out / div), round16(w_out / div));
            let c_img = content.map(|c| nst_core::resize_to(&c.to_device(device), h, w));
            let mut cur = match (&x, &c_img) {
                (Some(prev), _) => nst_core::resize_to(prev, h, w),
                (None, Some(c)) => c.shallow_clone(),
                (None, None) => Tensor::rand([1, 3, h, w], (Kind::Float, device)),
            };
            // Style images at this pyramid scale: their size relative to the output's.
            let s_imgs: Vec<(Tensor, f64)> = styles
                .iter()
                .map(|(s, wt)| {
                    let (sh, sw) = (s.size()[2], s.size()[3]);
                    let (th, tw) = (((sh / div).max(32)), ((sw / div).max(32)));
                    (
                        nst_core::resize_to(&s.to_device(device), th, tw),
                        *wt / wsum,
                    )
                })
                .collect();
            // The styles' (and the content's) features at every level come
            // from one VGG pass each per scale; only the image being
            // synthesised is encoded again at each level.
            let per_style: Vec<Vec<Tensor>> = s_imgs
                .iter()
                .map(|(s, _)| model.encode_levels(s, &cfg.levels))
                .collect::<Result<_>>()?;
            // Tiled scales encode the content tile by tile (in
            // `tiled_level`): its whole-image features at relu1_1 alone
            // take 256 B per pixel, which is what tiling avoids.
            let finest = p + 1 == cfg.pyramid.max(1);
            let tiled =
                tiling.is_some_and(|t| t.tile < h.max(w) && (finest || !fits_whole(t, h, w)));
            let content_feats = match &c_img {
                Some(c) if !tiled && cfg.levels.iter().any(|&l| cfg.content_weight(l) > 0.0) => {
                    Some(model.encode_levels(c, &cfg.levels)?)
                }
                _ => None,
            };
            for (li, &level) in cfg.levels.iter().enumerate() {
                // Target samples: each style contributes in proportion to its
                // weight (all of a style's samples when it is the only one;
                // their order does not matter to any matching strategy).
                let styles_rows: Vec<Tensor> =
                    per_style.iter().map(|fs| to_rows(&fs[li])).collect();
                let budget = styles_rows.iter().map(|t| t.size()[0]).min().unwrap_or(1);
                let mut parts = Vec::new();
                for (t, (_, wt)) in styles_rows.iter().zip(&s_imgs) {
                    let n = t.size()[0];
                    let k = ((budget as f64 * wt * s_imgs.len() as f64).round() as i64).clamp(1, n);
                    if k == n {
                        parts.push(t.shallow_clone());
                    } else {
                        let idx = Tensor::randperm(n, (Kind::Int64, device)).narrow(0, 0, k);
                        parts.push(t.index_select(0, &idx));
                    }
                }
                let target = if parts.len() == 1 {
                    parts.remove(0)
                } else {
                    Tensor::cat(&parts, 0)
                };
                if let (true, Some(t)) = (tiled, tiling) {
                    cur = tiled_level(model, &cur, c_img.as_ref(), &target, level, cfg, t)?;
                    continue;
                }
                let f = model.encode(&cur.to_device(device), level)?;
                let (fh, fw) = (f.size()[2], f.size()[3]);
                let rows = to_rows(&f);
                let mut m = match_features(&rows, &target, cfg.strategy, cfg.passes, cfg.pca);
                if let Some(fc) = &content_feats {
                    let a = cfg.content_weight(level);
                    if a > 0.0 {
                        m = m * (1.0 - a) + to_rows(&fc[li]) * a;
                    }
                }
                cur = model.decode(&from_rows(&m, fh, fw), level)?.clamp(0.0, 1.0);
            }
            x = Some(cur);
        }
        let mut out =
            x.unwrap_or_else(|| Tensor::zeros([1, 3, h_out, w_out], (Kind::Float, device)));
        match cfg.color {
            ColorMode::Keep => {}
            ColorMode::Transfer => {
                let px = to_rows(&out);
                let target = Tensor::cat(
                    &styles
                        .iter()
                        .map(|(s, _)| to_rows(&s.to_device(out.device())))
                        .collect::<Vec<_>>(),
                    0,
                );
                let (h, w) = (out.size()[2], out.size()[3]);
                out = from_rows(&sliced_ot(&px, &target, cfg.passes.max(4)), h, w).clamp(0.0, 1.0);
            }
            ColorMode::Preserve => {
                if let Some(c) = content {
                    out = nst_core::preserve_color(&c.to_device(out.device()), &out);
                }
            }
        }
        Ok(out)
    })
}

/// The context a tile needs on each side at `level` (the encoder to
/// `relu{level}_1` and its decoder), in px: about their joint receptive
/// radius. Measured with the trained decoders (docs/high-resolution.md):
/// halving every halo drops tiled-vs-whole WCT at 1024² from 58 to 24 dB.
pub fn halo(level: u8) -> i64 {
    match level {
        1 => 8,
        2 => 16,
        3 => 32,
        4 => 64,
        _ => 128,
    }
}

/// The context the encoder alone, and the decoder alone, need at a deep
/// `level` when its features are encoded whole before any is decoded
/// ([`Kept::Whole`]): each 5/8 of the joint [`halo`], rounded up to 16 px.
/// Measured (docs/high-resolution.md): 5-level WCT at 1024² in tiles of
/// 512, 75.4 dB against the whole image (the joint halo: 61.4 dB); at 4/8,
/// 51.7 dB; an encoder halo of 3/8, 29.3 dB.
pub fn split_halo(level: u8) -> i64 {
    (halo(level) * 5 / 8 + STRIDE - 1) / STRIDE * STRIDE
}

/// The levels whose encoder and decoder run in separate passes when tiled:
/// the deep ones, whose halo is large and whose whole-image feature map is
/// small (`C / stride²` values a pixel: 8 B/px at relu5_1, 32 at relu4_1).
const SPLIT_FROM_LEVEL: u8 = 4;

/// For a tiled deep `level` whose `maps` whole feature maps fit in the
/// tiling's cache budget: the grid to encode on, then decode on, with
/// [`split_halo`]. `None`: encode and decode each window together, with
/// the joint [`halo`].
fn split_grid(
    model: &Decoders,
    tiling: &Tiling,
    level: u8,
    (h, w): (i64, i64),
    maps: i64,
) -> Option<Result<Grid>> {
    let stride = 1i64 << (level - 1);
    let channels = model.vgg.arch().channels(Tap::relu(level, 1));
    let bytes = (maps * channels * (h / stride) * (w / stride) * 4) as u64;
    if level < SPLIT_FROM_LEVEL || tiling.cache_bytes.is_some_and(|c| bytes > c) {
        return None;
    }
    // The smallest tile stays the joint halo's, whether or not the map fits.
    let grid = Tiling::new(tiling.tile, halo(level), STRIDE)
        .and_then(|_| Tiling::new(tiling.tile, split_halo(level), STRIDE))
        .and_then(|t| t.grid(h, w));
    Some(grid.map_err(Error::from))
}

/// How a level's features are kept between its encoding and decoding.
enum Pass {
    /// Staged ([`crate::staged`]) with tiles of this size: the whole map.
    Staged(i64, Tensor),
    /// Decoded window by window on this grid.
    Tiles(Grid, Kept),
}

/// Where a tiled level's decoding pass finds each window's features.
enum Kept {
    /// Windows encoded with the joint halo, while the cache had room
    /// (encoded again otherwise).
    Windows(FeatureCache),
    /// The whole image's feature map, assembled from the cores of windows
    /// encoded with the encoder's halo.
    Whole(Tensor),
}

impl Kept {
    /// Encodes `x` on `grid` (cut with [`split_halo`]) into one whole map of
    /// the cores' features, handing each core's features to `on_core`.
    fn encode_whole(
        grid: &Grid,
        x: &Tensor,
        stride: i64,
        encode: impl Fn(&Tensor) -> Result<Tensor>,
        mut on_core: impl FnMut(&Tensor),
    ) -> Result<Self> {
        let mut map = CoreMap::new(grid.height, grid.width, stride, tch::Device::Cpu);
        grid.for_each(|t| -> Result<()> {
            let f = encode(&t.window.crop(x))?;
            let core = t.core_in_window().scaled_down(stride).crop(&f);
            on_core(&core);
            map.put(t, &core);
            nst_tiling::report("encode", t.index + 1, grid.len());
            Ok(())
        })?;
        map.into_map()
            .map(Self::Whole)
            .ok_or_else(|| Error::Model("an empty grid of tiles".into()))
    }

    /// The features of `tile`'s window, if kept.
    fn take(&mut self, tile: &nst_tiling::Tile, stride: i64) -> Option<Tensor> {
        match self {
            Self::Windows(cache) => cache.take(tile.index),
            Self::Whole(map) => Some(tile.window.scaled_down(stride).crop(map)),
        }
    }
}

/// Tiles are cut on multiples of the deepest stride (relu5_1's).
pub const STRIDE: i64 = 16;

/// `x: [B, C, H, W]` reflect-padded at the bottom and right to multiples of
/// [`STRIDE`], so that every level's map covers it exactly; cut the result
/// back with [`crop_to`]. Unchanged when it already is.
pub fn pad_to_stride(x: &Tensor) -> Tensor {
    let (h, w) = (x.size()[2], x.size()[3]);
    let (ph, pw) = (
        (STRIDE - h % STRIDE) % STRIDE,
        (STRIDE - w % STRIDE) % STRIDE,
    );
    if ph == 0 && pw == 0 {
        return x.shallow_clone();
    }
    // Reflection needs a side longer than the pad; replicate below that.
    if h > ph && w > pw {
        x.reflection_pad2d([0, pw, 0, ph])
    } else {
        x.replication_pad2d([0, pw, 0, ph])
    }
}

/// The top-left `height × width` of `x: [B, C, H, W]` (undoes [`pad_to_stride`]).
pub fn crop_to(x: &Tensor, (height, width): (i64, i64)) -> Tensor {
    x.narrow(2, 0, height.min(x.size()[2]))
        .narrow(3, 0, width.min(x.size()[3]))
}

/// At most this many feature vectors of the image being synthesised are
/// sampled, per level, to fit a tiled level's transport map (all of them
/// below it: up to 1024² at relu1_1, where the tiled map is then exact),
/// and at most [`OT_SAMPLE_BYTES`] of them.
pub const OT_SAMPLE: i64 = 1 << 20;

/// The most a tiled level's sample for its transport map may take (fp32,
/// after the PCA projection): 32 MiB, 131,072 vectors of relu1_1's 64
/// channels or 16,384 of relu5_1's 512 without PCA, 8 to 32 times more in
/// the 90 %-variance subspace the CLI uses by default.
pub const OT_SAMPLE_BYTES: i64 = 32 << 20;

/// What a style image's features at all five levels keep per style pixel
/// while the tiles run (fp32: 64 + 128/4 + 256/16 + 512/64 + 512/256 = 122
/// floats). Encoding it takes more, but before the tiles, not beside them.
pub const STYLE_FEATURE_BYTES_PER_PIXEL: u64 = 488;

/// Memory a tiled Optimal Textures run needs beside its tiles for fitting a
/// level's transport map: the sample, its rotated and sorted copies and the
/// sort's indices while a pass is fitted (about 7 samples' worth; the
/// fitted map is small, [`crate::transforms::MAP_KNOTS`] ranks a pass).
/// Measured: 2048×1376 in `--max-memory 2G` peaked at 2.25 GiB before the
/// sample was bounded and the map cut to its knots.
pub const OT_FIT_BYTES: u64 = 7 * OT_SAMPLE_BYTES as u64;

/// Whether a coarse pyramid scale of `h × w` runs whole in a tiled run: its
/// whole-image work needs no more than one tile's plus the room the plan
/// left beside it (the budget). Each tiled scale differs slightly from
/// the whole run, and the next scale amplifies the difference
/// (docs/high-resolution.md), so only the scales that must be tiled are.
fn fits_whole(tiling: &Tiling, h: i64, w: i64) -> bool {
    let fp = crate::OPTEX_FOOTPRINT;
    tiling
        .cache_bytes
        .is_none_or(|room| fp.bytes(w, h, 1) <= room + fp.bytes(tiling.tile, tiling.tile, 1))
}

/// One level of [`optimal_textures`] tile by tile. When the budget holds the
/// level's whole feature maps and their matching, only the encoder and
/// decoder are tiled ([`crate::staged`]: exact) and the matching is the
/// whole run's. Otherwise the features of every
/// window are encoded once (kept in a [`FeatureCache`] while the budget
/// allows); the matching map is fitted on the whole image's features (all
/// of them, or [`OT_SAMPLE`] of them drawn uniformly over the cores, for
/// sliced OT; their exact moments for the closed-form strategies), then each
/// tile is mapped, mixed with the content's features, decoded and stitched.
fn tiled_level(
    model: &Decoders,
    cur: &Tensor,
    content: Option<&Tensor>,
    target: &Tensor,
    level: u8,
    cfg: &OptexConfig,
    tiling: &Tiling,
) -> Result<Tensor> {
    let device = model.vgg.device();
    let (h, w) = (cur.size()[2], cur.size()[3]);
    let a = cfg.content_weight(level);
    let mixed = content.filter(|_| a > 0.0);
    // When the level's whole feature maps and their matching fit in the
    // budget, only the encoder and decoder run tile by tile (exact, see
    // crate::staged) and the matching is the whole run's, its random draws
    // included: the level is the whole run's up to float rounding.
    if staged::matching_fits(model, tiling, level, (h, w), 1 + u64::from(mixed.is_some())) {
        let f = model.encode_whole(cur, level, tiling.tile)?;
        let (fh, fw) = (f.size()[2], f.size()[3]);
        let mut m = match_features(&to_rows(&f), target, cfg.strategy, cfg.passes, cfg.pca);
        if let Some(c) = mixed {
            m = m * (1.0 - a) + to_rows(&model.encode_whole(c, level, tiling.tile)?) * a;
        }
        let out = model.decode_staged(&from_rows(&m, fh, fw), level, tiling.tile, (h, w))?;
        return Ok(crop_to(&out, (h, w)));
    }
    let stride = 1i64 << (level - 1);
    let encode = |x: &Tensor| model.encode(&x.to_device(device), level);
    let cols_of = |f: &Tensor| f.reshape([f.size()[1], -1]); // [1, C, h, w] → [C, h·w]
    let total = (h / stride) * (w / stride);
    // The target's PCA subspace (the identity when cfg.pca >= 1).
    let (mu, basis) = if cfg.pca < 1.0 {
        let (mu, b, _) = pca_basis(target, cfg.pca);
        (Some(mu.transpose(0, 1)), Some(b))
    } else {
        (None, None)
    };
    // The sample's dimension after the projection bounds how many fit.
    let dims = basis.as_ref().map_or(target.size()[1], |b| b.size()[1]);
    let most = OT_SAMPLE.min(OT_SAMPLE_BYTES / (4 * dims.max(1)));
    let keep = (most as f64 / total as f64).min(1.0);
    let project = |x: &Tensor| match (&mu, &basis) {
        (Some(mu), Some(b)) => b.transpose(0, 1).matmul(&(x.to_kind(Kind::Float) - mu)),
        _ => x.to_kind(Kind::Float),
    };
    let lift = |y: &Tensor| match (&mu, &basis) {
        (Some(mu), Some(b)) => mu.addmm(b, y),
        _ => y.shallow_clone(),
    };
    let mut sample = Vec::new();
    let mut moments = nst_losses::stats::Moments::new(true);
    let mut on_core = |core: &Tensor| {
        let core = project(&cols_of(core));
        if cfg.strategy == Strategy::Cdf {
            // Every (1/keep)-th vector at a fractional stride (spread over
            // rows and columns alike): no random draws, so a tiled run
            // uses the same rotations as the whole image's.
            let core = if keep < 1.0 {
                let n = core.size()[1];
                let m = ((n as f64 * keep).ceil() as i64).clamp(1, n);
                let pick = (Tensor::arange(m, (Kind::Double, core.device()))
                    * (n as f64 / m as f64))
                    .floor()
                    .to_kind(Kind::Int64);
                core.index_select(1, &pick)
            } else {
                core
            };
            sample.push(core);
        } else {
            moments.add(&core.unsqueeze(0).unsqueeze(-1));
        }
    };
    // Deep levels encode the whole feature map first when it fits (the
    // content's too when it is mixed in), then decode it on the same grid.
    let (grid, mut kept, mut content_kept) =
        match split_grid(model, tiling, level, (h, w), 1 + mixed.is_some() as i64) {
            Some(g) => {
                let g = g?;
                let kept = Kept::encode_whole(&g, cur, stride, encode, &mut on_core)?;
                let ck = match mixed {
                    Some(c) => Some(Kept::encode_whole(&g, c, stride, encode, |_| {})?),
                    None => None,
                };
                (g, kept, ck)
            }
            None => {
                let g = Tiling::new(tiling.tile, halo(level), STRIDE)?.grid_or_whole(h, w);
                let mut cache = FeatureCache::new(tiling.cache_bytes);
                g.for_each(|t| -> Result<()> {
                    let f = encode(&t.window.crop(cur))?;
                    on_core(&t.core_in_window().scaled_down(stride).crop(&f));
                    cache.offer(t.index, f);
                    Ok(())
                })?;
                (g, Kept::Windows(cache), None)
            }
        };
    let tgt = project(&target.transpose(0, 1));
    enum Map {
        Ot(SlicedOtMap),
        Moments(MomentMap),
    }
    let map = if cfg.strategy == Strategy::Cdf {
        Map::Ot(SlicedOtMap::fit_cols(
            &Tensor::cat(&sample, 1),
            &tgt,
            cfg.passes,
        ))
    } else {
        let t = nst_losses::stats::Moments::of(&tgt.unsqueeze(0).unsqueeze(-1), true);
        Map::Moments(MomentMap::new(
            (&moments.mean(), &moments.covariance()),
            (&t.mean(), &t.covariance()),
            cfg.strategy,
        ))
    };
    drop(sample);
    // The mapped features of a window (or of the whole map), mixed with the
    // content's `fc`.
    let transfer = |f: &Tensor, fc: Option<&Tensor>| {
        let (c, fh, fw) = (f.size()[1], f.size()[2], f.size()[3]);
        let y = project(&cols_of(f));
        let mapped = match &map {
            Map::Ot(m) => m.apply_cols(&y),
            Map::Moments(m) => m.apply(&y.transpose(0, 1)).transpose(0, 1),
        };
        let mut m = lift(&mapped);
        if let Some(fc) = fc {
            m = m * (1.0 - a) + cols_of(fc) * a;
        }
        m.reshape([1, c, fh, fw])
    };
    let out = grid.stitch(3, |t| -> Result<Tensor> {
        let f = match kept.take(t, stride) {
            Some(f) => f.to_device(device),
            None => encode(&t.window.crop(cur))?,
        };
        let fc = match mixed {
            Some(c_img) => Some(
                match content_kept.as_mut().and_then(|k| k.take(t, stride)) {
                    Some(fc) => fc.to_device(device),
                    None => encode(&t.window.crop(c_img))?,
                },
            ),
            None => None,
        };
        Ok(model
            .decode(&transfer(&f, fc.as_ref()), level)?
            .clamp(0.0, 1.0))
    })?;
    Ok(crop_to(&out, (h, w)))
}

/// Closed-form transfer with the decoders: at each level (deepest first), the
/// features of the current image are replaced by AdaIN's (channel mean and
/// std of the style) or WCT's (whitening–colouring to the style's covariance),
/// blended with the unmodified features by `alpha`, then decoded.
///
/// With `tiling`, each level runs tile by tile ([`nst_tiling`]): the
/// content's and the style's statistics are those of the whole images,
/// accumulated over the tiles, and each tile is computed with the level's
/// [`halo`]. Returns `[1, 3, H, W]` fp32 on the CPU.
pub fn closed_form(
    model: &Decoders,
    content: &Tensor,
    style: &Tensor,
    wct: bool,
    levels: &[u8],
    alpha: f64,
    tiling: Option<&Tiling>,
) -> Result<Tensor> {
    let device = model.vgg.device();
    tch::no_grad(|| {
        // The style's statistics at every level, from one VGG pass to the
        // deepest level: over the whole style, or, when it is larger than a
        // tile, staged (exact) or else over windows with the deepest level's
        // [`split_halo`] (only the encoder runs on the style).
        let (sh, sw) = (style.size()[2], style.size()[3]);
        let mut style_moments: Vec<nst_losses::stats::Moments> = levels
            .iter()
            .map(|_| nst_losses::stats::Moments::new(wct))
            .collect();
        match tiling.filter(|t| t.tile < sh.max(sw)) {
            Some(t) if staged::middle_fits(model, t, (sh, sw)) => {
                let deep = model.encode_staged(style, levels, t.tile, |li, _, core| {
                    style_moments[li].add(core)
                })?;
                for (m, f) in style_moments.iter_mut().zip(deep) {
                    if let Some(f) = f {
                        m.add(&f);
                    }
                }
            }
            t => {
                let deepest = levels.iter().copied().max().unwrap_or(1);
                let grid = match t {
                    Some(t) => {
                        Tiling::new(t.tile, split_halo(deepest), STRIDE)?.grid_or_whole(sh, sw)
                    }
                    None => Grid::whole(sh, sw),
                };
                grid.for_each(|t| -> Result<()> {
                    let feats =
                        model.encode_levels(&t.window.crop(style).to_device(device), levels)?;
                    for ((m, f), &level) in style_moments.iter_mut().zip(&feats).zip(levels) {
                        m.add(&t.core_in_window().scaled_down(1 << (level - 1)).crop(f));
                    }
                    nst_tiling::report("style statistics", t.index + 1, grid.len());
                    Ok(())
                })?;
            }
        }
        let mut x = content.to_device(tch::Device::Cpu);
        for (li, &level) in levels.iter().enumerate() {
            let stride = 1i64 << (level - 1);
            let encode = |t: &Tensor| model.encode(&t.to_device(device), level);
            let (h, w) = (x.size()[2], x.size()[3]);
            // Deep levels run staged when their middle fits (exact); else
            // they encode their whole map first when it fits, then decode it
            // on the same grid; else encode and decode window by window.
            let staged = tiling.filter(|t| staged::runs_staged(model, t, level, (h, w)));
            let mut mc = nst_losses::stats::Moments::new(wct);
            let pass = match staged {
                Some(t) => {
                    let f = model.encode_whole(&x, level, t.tile)?;
                    mc.add(&f);
                    Pass::Staged(t.tile, f)
                }
                None => match tiling.and_then(|t| split_grid(model, t, level, (h, w), 1)) {
                    Some(g) => {
                        let g = g?;
                        let kept = Kept::encode_whole(&g, &x, stride, encode, |core| mc.add(core))?;
                        Pass::Tiles(g, kept)
                    }
                    None => {
                        let g = match tiling {
                            None => Grid::whole(h, w),
                            Some(t) => Tiling::new(t.tile, halo(level), STRIDE)?.grid(h, w)?,
                        };
                        let mut cache = FeatureCache::new(tiling.and_then(|t| t.cache_bytes));
                        mc = g.feature_moments(&x, stride, wct, &mut cache, encode)?;
                        Pass::Tiles(g, Kept::Windows(cache))
                    }
                },
            };
            let ms = &style_moments[li];
            let map = wct.then(|| {
                MomentMap::new(
                    (&mc.mean(), &mc.covariance()),
                    (&ms.mean(), &ms.covariance()),
                    Strategy::Symmetric,
                )
            });
            let (stats_c, stats_s) = (
                mc.mean_std(nst_losses::stats::EPS),
                ms.mean_std(nst_losses::stats::EPS),
            );
            let transfer = |f: &Tensor| {
                let t = match &map {
                    Some(map) => from_rows(&map.apply(&to_rows(f)), f.size()[2], f.size()[3]),
                    None => nst_losses::stats::adain_with(
                        f,
                        (&stats_c.0, &stats_c.1),
                        (&stats_s.0, &stats_s.1),
                    ),
                };
                t * alpha + f.to_kind(Kind::Float) * (1.0 - alpha)
            };
            x = match pass {
                Pass::Staged(tile, f) => model.decode_staged(&transfer(&f), level, tile, (h, w))?,
                Pass::Tiles(g, mut kept) => g.stitch(3, |tile| {
                    let f = match kept.take(tile, stride) {
                        Some(f) => f.to_device(device),
                        None => encode(&tile.window.crop(&x))?,
                    };
                    Ok::<_, Error>(model.decode(&transfer(&f), level)?.clamp(0.0, 1.0))
                })?,
            };
        }
        Ok(x)
    })
}
