//! The AdaIN decoder and training model.
use crate::ops::{adain, adain_with, mean_std, EPS};
use nst_model::{Error, Model, Result, StepOutput, TrainModel};
use nst_tiling::{FeatureCache, Grid, Tiling};
use nst_vgg::{Tap, Vgg};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Kind, Reduction, Tensor};

/// `[model]` for `kind = "adain"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdainModelConfig {
    /// VGG19 weights (default: checkpoints/vgg19.safetensors).
    #[serde(default)]
    pub vgg_weights: Option<std::path::PathBuf>,
    /// Channel width of the decoder relative to the paper's (1.0 = 256/128/64).
    #[serde(default = "one")]
    pub width: f64,
}

/// `[loss]` for `kind = "adain"`: L = content_weight·L_c + style_weight·L_s with
/// L_c = MSE(φ_relu4_1(g(t)), t) and L_s = Σ_l MSE(μ(φ_l(g(t))), μ(φ_l(s))) + MSE(σ(…), σ(…)).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdainLoss {
    #[serde(default = "one")]
    pub content_weight: f64,
    #[serde(default = "ten")]
    pub style_weight: f64,
    #[serde(default = "style_layers")]
    pub style_layers: Vec<Tap>,
}

fn one() -> f64 {
    1.0
}
fn ten() -> f64 {
    10.0
}
fn style_layers() -> Vec<Tap> {
    (1..=4).map(|b| Tap::relu(b, 1)).collect()
}

impl Default for AdainLoss {
    fn default() -> Self {
        Self {
            content_weight: 1.0,
            style_weight: 10.0,
            style_layers: style_layers(),
        }
    }
}

/// The AdaIN decoder: the mirror of VGG19 from `relu4_1` (parameters
/// `decoder.conv4_1.weight`, …, `decoder.conv1_1.bias`).
pub type Decoder = nst_vgg::MirrorDecoder;

/// The AdaIN decoder at `width` (1.0 = the paper's 256/128/64 channels);
/// `input_scale` divides the incoming features (255 for Caffe-scaled VGG weights).
/// It starts near mid grey (issue 31): with the default initialisation the
/// untrained output swings far outside [0, 1], a short run ends with an
/// almost black image after the clamp, and the first losses are inflated.
pub fn decoder(vs: &nn::Path, width: f64, input_scale: f64) -> Decoder {
    let options = nst_vgg::MirrorOptions {
        grey_start: true,
        ..nst_vgg::MirrorOptions::adain(width, input_scale)
    };
    nst_vgg::MirrorDecoder::new(vs, 4, options)
}

/// Frozen VGG19 encoder to `relu4_1`, AdaIN, trained decoder.
pub struct AdainModel {
    vs: nn::VarStore,
    pub decoder: Decoder,
    pub vgg: Vgg,
    pub loss: AdainLoss,
    style_taps: Vec<Tap>,
}

pub const KIND: &str = "adain";

impl AdainModel {
    pub fn new(vgg: Vgg, width: f64, loss: AdainLoss) -> Result<Self> {
        let style_taps = loss
            .style_layers
            .iter()
            .map(|t| t.check_for(vgg.arch()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Config(format!("loss.style_layers: {e}")))?;
        let vs = nn::VarStore::new(vgg.device());
        let decoder = decoder(&(vs.root() / "decoder"), width, vgg.preprocessing().scale);
        Ok(Self {
            vs,
            decoder,
            vgg,
            loss,
            style_taps,
        })
    }

    fn encode(&self, x: &Tensor, taps: &[Tap]) -> Result<nst_vgg::Features> {
        self.vgg.encode(x, taps).map_err(Error::from)
    }

    /// Stylises `content` with `style`; `alpha` in [0, 1] blends the AdaIN
    /// target with the content features (1 = full style).
    pub fn stylize(&self, content: &Tensor, style: &Tensor, alpha: f64) -> Result<Tensor> {
        let r41 = [Tap::relu(4, 1)];
        let fc = self.encode(content, &r41)?;
        let fs = self.encode(style, &r41)?;
        let t = adain(&fc[r41[0]], &fs[r41[0]]);
        let t = &t * alpha + &fc[r41[0]] * (1.0 - alpha);
        Ok(self.decoder.forward(&t))
    }

    /// [`AdainModel::stylize`] for one image of any size: with `tiling`,
    /// tile by tile ([`nst_tiling`]). The content's and the style's channel
    /// statistics are those of the whole images, accumulated over the
    /// tiles; each tile is then encoded with its halo, normalised with them,
    /// decoded, and cross-faded into place. Without `tiling`, one tile is
    /// the whole image. Returns `[1, 3, H, W]` fp32 on the CPU.
    pub fn stylize_tiled(
        &self,
        content: &Tensor,
        style: &Tensor,
        alpha: f64,
        tiling: Option<&Tiling>,
    ) -> Result<Tensor> {
        let r41 = Tap::relu(4, 1);
        let device = self.vgg.device();
        let encode = |x: &Tensor| -> Result<Tensor> {
            Ok(self.encode(&x.to_device(device), &[r41])?[r41].shallow_clone())
        };
        let grid = |x: &Tensor, main: bool| -> Result<Grid> {
            let (h, w) = (x.size()[2], x.size()[3]);
            Ok(match tiling {
                None => Grid::whole(h, w),
                Some(t) if main => t.grid(h, w)?,
                Some(t) => t.grid_or_whole(h, w),
            })
        };
        let stride = STRIDE;
        let cg = grid(content, true)?;
        let mut cache = FeatureCache::new(tiling.and_then(|t| t.cache_bytes));
        let (mc, sc) = cg
            .feature_moments(content, stride, false, &mut cache, encode)?
            .mean_std(EPS);
        let (ms, ss) = grid(style, false)?
            .feature_moments(style, stride, false, &mut FeatureCache::none(), encode)?
            .mean_std(EPS);
        tch::no_grad(|| {
            cg.stitch(3, |tile| {
                let f = match cache.take(tile.index) {
                    Some(f) => f.to_device(device),
                    None => encode(&tile.window.crop(content))?,
                };
                let t = adain_with(&f, (&mc, &sc), (&ms, &ss));
                let t = &t * alpha + f.to_kind(Kind::Float) * (1.0 - alpha);
                Ok(self.decoder.forward(&t))
            })
        })
    }
}

/// The decoder's upsampling factor (the stride of `relu4_1`): tiled images
/// are cut on multiples of it.
pub const STRIDE: i64 = 8;

/// The context a tile needs on each side for its interior to match the
/// whole-image result (encoder to `relu4_1` and decoder), in px: chosen by
/// `tiled_adain_matches_whole_image` (PSNR ≥ 40 dB at 1024², tiles of 256).
pub const HALO: i64 = 64;

impl Model for AdainModel {
    const KIND: &'static str = KIND;
    const TRAIN_CONFIG: &'static str = "configs/adain.toml";
    /// Measured: 9,391 B/px.
    const STEP_BYTES_PER_PIXEL: Option<u64> = Some(9400);
    type Config = AdainModelConfig;
    type Loss = AdainLoss;

    fn vgg_options(m: &AdainModelConfig) -> (Option<std::path::PathBuf>, nst_vgg::Pooling) {
        (m.vgg_weights.clone(), nst_vgg::Pooling::Max)
    }

    fn build(vgg: Vgg, config: AdainModelConfig, loss: AdainLoss) -> Result<Self> {
        if !(config.width > 0.0 && config.width <= 4.0) {
            return Err(Error::Config("model.width must be in (0, 4]".into()));
        }
        Self::new(vgg, config.width, loss)
    }
}

impl TrainModel for AdainModel {
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn step(&mut self, content: &Tensor, style: &Tensor) -> Result<StepOutput> {
        let r41 = Tap::relu(4, 1);
        let (t, style_feats) = tch::no_grad(|| -> Result<_> {
            let fc = self.encode(content, &[r41])?;
            let fs = self.encode(style, &self.style_taps)?;
            let fs_r41 = if self.style_taps.contains(&r41) {
                fs[r41].shallow_clone()
            } else {
                self.encode(style, &[r41])?[r41].shallow_clone()
            };
            let t = adain(&fc[r41], &fs_r41);
            let stats: Vec<(Tensor, Tensor)> = self
                .style_taps
                .iter()
                .map(|&tap| mean_std(&fs[tap], EPS))
                .collect();
            Ok((t, stats))
        })?;
        let g = self.decoder.forward(&t);
        let mut taps = self.style_taps.clone();
        taps.push(r41);
        let fg = self.encode(&g, &taps)?;
        let content_loss = fg[r41].mse_loss(&t, Reduction::Mean) * self.loss.content_weight;
        let mut style_loss = Tensor::zeros([], (Kind::Float, content.device()));
        for (&tap, (ms, ss)) in self.style_taps.iter().zip(&style_feats) {
            let (mg, sg) = mean_std(&fg[tap], EPS);
            style_loss += mg.mse_loss(ms, Reduction::Mean) + sg.mse_loss(ss, Reduction::Mean);
        }
        let style_loss = style_loss * self.loss.style_weight;
        let loss = &content_loss + &style_loss;
        Ok(StepOutput {
            loss,
            terms: vec![
                ("content".into(), content_loss),
                ("style".into(), style_loss),
            ],
        })
    }

    fn set_precision(&mut self, precision: nst_vgg::Precision) -> Result<()> {
        self.vgg.set_precision(precision)?;
        self.decoder.set_precision(precision);
        Ok(())
    }

    fn sample_grid(&self, content: &Tensor, style: &Tensor) -> Result<Tensor> {
        let (c, s) = (
            nst_model::sample_items(content),
            nst_model::sample_items(style),
        );
        let out = self.stylize(&c, &s, 1.0)?.clamp(0.0, 1.0);
        // columns: content | style | output
        Ok(nst_model::sample_grid(&[c, s, out]))
    }
}
