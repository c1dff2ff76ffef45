//! The AdaIN decoder and training model.
use crate::ops::{adain, mean_std, EPS};
use nst_train::{config::parse_section, Error, Result, StepOutput, TrainModel};
use nst_vgg::{Tap, Vgg};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Device, Kind, Reduction, Tensor};

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
    pub style_layers: Vec<String>,
}

fn one() -> f64 {
    1.0
}
fn ten() -> f64 {
    10.0
}
fn style_layers() -> Vec<String> {
    ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]
        .iter()
        .map(|s| s.to_string())
        .collect()
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

#[derive(Debug)]
struct Block {
    conv: nn::Conv2D,
    relu: bool,
    upsample: bool,
}

/// The mirror of VGG19 up to `relu4_1`: reflection-padded 3×3 convs with
/// ReLU, nearest-neighbour ×2 upsampling where VGG pools; the last conv maps
/// to RGB. Parameters are named after the VGG layer they mirror
/// (`decoder.conv4_1.weight`, …, `decoder.conv1_1.bias`).
#[derive(Debug)]
pub struct Decoder {
    blocks: Vec<Block>,
    input_scale: f64,
    precision: nst_vgg::Precision,
}

impl Decoder {
    /// `input_scale` divides the incoming features (255 for Caffe-scaled VGG weights).
    pub fn new(vs: &nn::Path, width: f64, input_scale: f64) -> Self {
        let c = |n: i64| ((n as f64 * width).round() as i64).max(8);
        // (name, in, out, relu, upsample after)
        let spec = [
            ("conv4_1", 512, c(256), true, true),
            ("conv3_4", c(256), c(256), true, false),
            ("conv3_3", c(256), c(256), true, false),
            ("conv3_2", c(256), c(256), true, false),
            ("conv3_1", c(256), c(128), true, true),
            ("conv2_2", c(128), c(128), true, false),
            ("conv2_1", c(128), c(64), true, true),
            ("conv1_2", c(64), c(64), true, false),
            ("conv1_1", c(64), 3, false, false),
        ];
        let blocks = spec
            .iter()
            .map(|&(name, i, o, relu, upsample)| Block {
                conv: nn::conv2d(vs / name, i, o, 3, Default::default()),
                relu,
                upsample,
            })
            .collect();
        Self {
            blocks,
            input_scale,
            precision: nst_vgg::Precision::Fp32,
        }
    }

    /// Runs the convolutions at `precision` (the weights stay fp32; the maps
    /// handed to `modulate` and the output are fp32).
    pub fn set_precision(&mut self, precision: nst_vgg::Precision) {
        self.precision = precision;
    }
}

impl Decoder {
    /// Channels at the decoder's AdaIN points, in the order [`Decoder::forward_with`]
    /// visits them: the input, then the output of each upsampling.
    pub fn level_channels(&self) -> Vec<i64> {
        let mut v = vec![self
            .blocks
            .first()
            .map(|b| b.conv.ws.size()[1])
            .unwrap_or(512)];
        v.extend(
            self.blocks
                .iter()
                .filter(|b| b.upsample)
                .map(|b| b.conv.ws.size()[0]),
        );
        v
    }

    /// The forward pass with a hook at each level: `modulate(level, h)` sees the
    /// scaled input (level 0), then the map after each ×2 upsampling (levels
    /// 1..=3), and returns the map to continue with. The variational model
    /// puts its AdaIN layers there.
    pub fn forward_with(
        &self,
        features: &Tensor,
        mut modulate: impl FnMut(usize, Tensor) -> Tensor,
    ) -> Tensor {
        let p = self.precision;
        let mut h = modulate(0, features / self.input_scale);
        let mut level = 0;
        for b in &self.blocks {
            h = p.conv2d(&b.conv, &h.reflection_pad2d([1, 1, 1, 1]), 0);
            if b.relu {
                h = h.relu();
            }
            if b.upsample {
                let (_, _, hh, ww) = h.size4().unwrap_or((0, 0, 0, 0));
                h = h.upsample_nearest2d([hh * 2, ww * 2], None, None);
                level += 1;
                // AdaIN statistics in the hook stay fp32.
                h = modulate(level, h.to_kind(tch::Kind::Float));
            }
        }
        h.to_kind(tch::Kind::Float)
    }
}

impl Module for Decoder {
    /// # Shapes
    /// `features: [B, 512, H/8, W/8]` → `[B, 3, H, W]` (RGB, roughly in [0, 1])
    fn forward(&self, features: &Tensor) -> Tensor {
        self.forward_with(features, |_, h| h)
    }
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
            .map(|s| Tap::parse_for(s, vgg.arch()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Config(format!("loss.style_layers: {e}")))?;
        let vs = nn::VarStore::new(vgg.device());
        let decoder = Decoder::new(&(vs.root() / "decoder"), width, vgg.preprocessing().scale);
        Ok(Self {
            vs,
            decoder,
            vgg,
            loss,
            style_taps,
        })
    }

    /// Builds from the `[model]` and `[loss]` sections of a training config.
    pub fn from_config(model: &toml::Table, loss: &toml::Table, device: Device) -> Result<Self> {
        let m: AdainModelConfig = parse_section(model, "model", &["kind"])?;
        let l: AdainLoss = parse_section(loss, "loss", &[])?;
        let vgg = Vgg::load_or_default(
            m.vgg_weights.as_deref(),
            nst_vgg::VggOptions {
                pooling: nst_vgg::Pooling::Max,
                device,
            },
        )
        .map_err(|e| Error::Model(e.to_string()))?;
        if !(m.width > 0.0 && m.width <= 4.0) {
            return Err(Error::Config("model.width must be in (0, 4]".into()));
        }
        Self::new(vgg, m.width, l)
    }

    fn encode(&self, x: &Tensor, taps: &[Tap]) -> Result<nst_vgg::Features> {
        self.vgg
            .encode(x, taps)
            .map_err(|e| Error::Model(e.to_string()))
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
}

impl TrainModel for AdainModel {
    /// Peak memory of one training step per crop pixel per batch element,
    /// measured by `scripts/measure_train_memory.sh 64 128 2` at the
    /// default widths (9,391 B/px).
    fn step_bytes_per_pixel(&self) -> Option<u64> {
        Some(9400)
    }

    fn kind(&self) -> &str {
        KIND
    }

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
        self.vgg
            .set_precision(precision)
            .map_err(|e| Error::Model(e.to_string()))?;
        self.decoder.set_precision(precision);
        Ok(())
    }

    fn sample_grid(&self, content: &Tensor, style: &Tensor) -> Result<Tensor> {
        let n = content.size()[0].min(4);
        let c = content.narrow(0, 0, n);
        let s = style.narrow(0, 0, n);
        let out = self.stylize(&c, &s, 1.0)?.clamp(0.0, 1.0);
        // rows: content | style | output
        let rows = Tensor::cat(&[c, s, out], 3); // [n, 3, S, 3S]
        Ok(Tensor::cat(&rows.unbind(0), 1)) // [3, nS, 3S]
    }
}
