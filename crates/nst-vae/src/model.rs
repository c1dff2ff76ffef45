//! The variational style-transfer model: E_c, E_s, the code MLP and the AdaIN decoder.
use crate::ops::{adain_with, disentanglement_loss, kl_divergence, reparameterize};
use nst_losses::stats::{mean_std, EPS};
use nst_losses::{gram, gram_loss};
use nst_model::{Error, Model, Result, StepOutput, TrainModel};
use nst_vgg::MirrorDecoder as Decoder;
use nst_vgg::{Features, Tap, Vgg};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Device, Kind, Reduction, Tensor};

/// The `model.kind` of this model.
pub const KIND: &str = "vae_adain";

mod tiled;
pub use tiled::{HALO, STRIDE};

/// What produces the content code E_c(x).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentEncoderKind {
    /// The frozen VGG19 up to `relu4_1` (as AdaIN).
    Vgg,
    /// A trained conv encoder with instance norm, to the same [B, 512, H/8, W/8] shape.
    Learned,
}

/// What E_s looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StyleEncoderKind {
    /// The channel means and standard deviations of the frozen VGG19 at
    /// `relu1_1 … relu4_1` (1,920 numbers), through a trained MLP.
    VggStats,
    /// A trained strided conv net with mean and std pooling, through the same MLP head.
    Conv,
}

/// What the content loss compares the output's features with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentTarget {
    /// The content image's VGG features at `loss.content_layers`.
    Content,
    /// AdaIN(φ_relu4_1(content), φ_relu4_1(style)), as in Huang & Belongie
    /// (only `relu4_1`).
    Adain,
}

/// `[model]` for `kind = "vae_adain"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeModelConfig {
    /// VGG19 weights (default: checkpoints/vgg19.safetensors).
    #[serde(default)]
    pub vgg_weights: Option<std::path::PathBuf>,
    /// Decoder channel width relative to AdaIN's (1.0 = 256/128/64).
    #[serde(default = "one")]
    pub width: f64,
    /// Size of the style code s.
    #[serde(default = "style_dim")]
    pub style_dim: i64,
    /// Hidden width of the MLPs of E_s and of the code → AdaIN-parameter map.
    #[serde(default = "hidden")]
    pub hidden: i64,
    #[serde(default = "content_encoder")]
    pub content_encoder: ContentEncoderKind,
    #[serde(default = "style_encoder")]
    pub style_encoder: StyleEncoderKind,
}

/// `[loss]` for `kind = "vae_adain"`:
/// L = content_weight·L_c + style_weight·L_s + disentangle_weight·L_d + β(t)·KL.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeLoss {
    #[serde(default = "one")]
    pub content_weight: f64,
    #[serde(default = "content_layers")]
    pub content_layers: Vec<Tap>,
    #[serde(default = "content_target")]
    pub content_target: ContentTarget,
    #[serde(default = "style_weight")]
    pub style_weight: f64,
    #[serde(default = "style_layers")]
    pub style_layers: Vec<Tap>,
    /// β, the KL weight.
    #[serde(default = "kl_weight")]
    pub kl_weight: f64,
    /// β rises linearly from 0 to `kl_weight` over this many steps (0: constant).
    #[serde(default)]
    pub kl_anneal_steps: u64,
    #[serde(default = "disentangle_weight")]
    pub disentangle_weight: f64,
}

fn one() -> f64 {
    1.0
}
fn style_dim() -> i64 {
    64
}
fn hidden() -> i64 {
    256
}
fn content_encoder() -> ContentEncoderKind {
    ContentEncoderKind::Vgg
}
fn style_encoder() -> StyleEncoderKind {
    StyleEncoderKind::VggStats
}
fn content_layers() -> Vec<Tap> {
    vec![Tap::relu(4, 1)]
}
fn content_target() -> ContentTarget {
    ContentTarget::Content
}
fn style_weight() -> f64 {
    3e4
}
fn style_layers() -> Vec<Tap> {
    (1..=4).map(|b| Tap::relu(b, 1)).collect()
}
fn kl_weight() -> f64 {
    1e-3
}
fn disentangle_weight() -> f64 {
    0.1
}

impl Default for VaeModelConfig {
    fn default() -> Self {
        Self {
            vgg_weights: None,
            width: 1.0,
            style_dim: style_dim(),
            hidden: hidden(),
            content_encoder: content_encoder(),
            style_encoder: style_encoder(),
        }
    }
}

impl Default for VaeLoss {
    fn default() -> Self {
        Self {
            content_weight: 1.0,
            content_layers: content_layers(),
            content_target: content_target(),
            style_weight: style_weight(),
            style_layers: style_layers(),
            kl_weight: kl_weight(),
            kl_anneal_steps: 0,
            disentangle_weight: disentangle_weight(),
        }
    }
}

/// The VGG taps E_s reads in `vgg_stats` mode.
fn stats_taps() -> Vec<Tap> {
    (1..=4).map(|b| Tap::relu(b, 1)).collect()
}

/// A trained content encoder: conv 3×3 then three stride-2 4×4 convs, with
/// instance norm and ReLU, 3 → 64 → 128 → 256 → 512 channels.
#[derive(Debug)]
struct LearnedContentEncoder {
    convs: Vec<nn::Conv2D>,
}

impl LearnedContentEncoder {
    fn new(vs: &nn::Path) -> Self {
        let c3 = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        let c4 = nn::ConvConfig {
            stride: 2,
            padding: 1,
            ..Default::default()
        };
        let convs = vec![
            nn::conv2d(vs / "conv1", 3, 64, 3, c3),
            nn::conv2d(vs / "conv2", 64, 128, 4, c4),
            nn::conv2d(vs / "conv3", 128, 256, 4, c4),
            nn::conv2d(vs / "conv4", 256, 512, 4, c4),
        ];
        Self { convs }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = x * 2.0 - 1.0;
        let n = self.convs.len();
        for (i, c) in self.convs.iter().enumerate() {
            h = c.forward(&h);
            if i + 1 < n {
                h = h.instance_norm(
                    None::<Tensor>,
                    None::<Tensor>,
                    None::<Tensor>,
                    None::<Tensor>,
                    true,
                    0.1,
                    1e-5,
                    false,
                );
            }
            h = h.relu();
        }
        h
    }
}

/// Two-layer MLP with ReLU: in → hidden → hidden → out.
#[derive(Debug)]
struct Mlp {
    layers: Vec<nn::Linear>,
}

impl Mlp {
    fn new(vs: &nn::Path, input: i64, hidden: i64, output: i64) -> Self {
        let c = Default::default();
        Self {
            layers: vec![
                nn::linear(vs / "fc1", input, hidden, c),
                nn::linear(vs / "fc2", hidden, hidden, c),
                nn::linear(vs / "fc3", hidden, output, c),
            ],
        }
    }

    /// Zero weights and a bias giving σ̂ = softplus(0.5413) = 1, μ̂ = 0 in the
    /// last layer: at initialisation every AdaIN layer only standardises its
    /// input, whatever the code, so the untrained decoder's output stays
    /// tame; the code's influence is learnt from there.
    fn init_as_identity_adain(&self, channels: &[i64]) {
        let Some(last) = self.layers.last() else {
            return;
        };
        let mut bias = Vec::new();
        for &c in channels {
            bias.extend(std::iter::repeat_n(0.5413f32, c as usize));
            bias.extend(std::iter::repeat_n(0.0f32, c as usize));
        }
        tch::no_grad(|| {
            let mut ws = last.ws.shallow_clone();
            let _ = ws.zero_();
            if let Some(bs) = &last.bs {
                let mut bs = bs.shallow_clone();
                bs.copy_(&Tensor::from_slice(&bias).to_device(bs.device()));
            }
        });
    }

    /// The style head's last layer at 1/100 of its default weights and a
    /// zero bias: q(s | x) starts near the prior, μ ≈ 0 and log σ² ≈ 0.
    /// With the default initialisation log σ² started above 10 for some
    /// dimensions (VGG statistics are large even after log1p), where the
    /// former hard clamp passed no gradient: σ stayed at e⁵ ≈ 148, training
    /// decoded only huge sampled codes, and the mean code μ that inference
    /// uses gave an all-black image (issue 31).
    fn init_near_prior(&self) {
        let Some(last) = self.layers.last() else {
            return;
        };
        tch::no_grad(|| {
            let mut ws = last.ws.shallow_clone();
            let _ = ws.g_mul_scalar_(0.01);
            if let Some(bs) = &last.bs {
                let _ = bs.shallow_clone().zero_();
            }
        });
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let n = self.layers.len();
        let mut h = x.shallow_clone();
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(&h);
            if i + 1 < n {
                h = h.relu();
            }
        }
        h
    }
}

/// E_s: image → (μ, log σ²) of q(s | x).
#[derive(Debug)]
struct StyleEncoder {
    kind: StyleEncoderKind,
    /// Conv trunk in `conv` mode (3 → 32 → 64 → 128 → 256, stride 2 each).
    convs: Vec<nn::Conv2D>,
    head: Mlp,
    style_dim: i64,
}

impl StyleEncoder {
    fn new(vs: &nn::Path, kind: StyleEncoderKind, hidden: i64, style_dim: i64) -> Self {
        let c4 = nn::ConvConfig {
            stride: 2,
            padding: 1,
            ..Default::default()
        };
        let (convs, input) = match kind {
            StyleEncoderKind::VggStats => (Vec::new(), 2 * (64 + 128 + 256 + 512)),
            StyleEncoderKind::Conv => {
                let ch = [3, 32, 64, 128, 256];
                let convs = (0..4)
                    .map(|i| nn::conv2d(vs / format!("conv{}", i + 1), ch[i], ch[i + 1], 4, c4))
                    .collect();
                (convs, 2 * 256)
            }
        };
        let head = Mlp::new(&(vs / "head"), input, hidden, 2 * style_dim);
        head.init_near_prior();
        Self {
            kind,
            convs,
            head,
            style_dim,
        }
    }

    /// (μ, log σ²) from per-channel statistics `[B, F]` (all ≥ 0: means and
    /// standard deviations of ReLU maps), compressed by log(1 + x) so that the
    /// wide range of VGG activations does not swamp the head.
    fn from_stats(&self, stats: &Tensor) -> (Tensor, Tensor) {
        let out = self.head.forward(&stats.clamp_min(0.0).log1p());
        let mu = out.narrow(1, 0, self.style_dim);
        // Keep σ² within e^±10 so that exp cannot overflow, by a soft bound
        // (10·tanh(v/10)) whose gradient never vanishes: a hard clamp passed
        // none past ±10, and a log σ² that got there stayed there.
        let logvar = (out.narrow(1, self.style_dim, self.style_dim) / 10.0).tanh() * 10.0;
        (mu, logvar)
    }

    /// The conv trunk's maps `[B, 256, H/16, W/16]`, whose channel
    /// statistics E_s reads in `conv` mode.
    fn conv_trunk(&self, x: &Tensor) -> Tensor {
        let mut h = x * 2.0 - 1.0;
        for c in &self.convs {
            h = c.forward(&h).leaky_relu();
        }
        h
    }

    fn conv_stats(&self, x: &Tensor) -> Tensor {
        let (m, s) = mean_std(&self.conv_trunk(x), EPS);
        Tensor::cat(&[m.flatten(1, -1), s.flatten(1, -1)], 1)
    }
}

/// Per-channel statistics of VGG features (already divided by the input gain).
fn vgg_stats(feats: &[Tensor]) -> Tensor {
    let mut cols = Vec::new();
    for f in feats {
        let (m, s) = mean_std(f, EPS);
        cols.push(m.flatten(1, -1));
        cols.push(s.flatten(1, -1));
    }
    Tensor::cat(&cols, 1)
}

/// The AdaIN parameters of one decoder pass: (σ̂, μ̂) per level, each `[B, C_l]`.
pub type AdainParams = Vec<(Tensor, Tensor)>;

/// Content encoder, variational style encoder, code → AdaIN-parameter MLP and
/// the mirror decoder (see the crate docs).
pub struct VaeAdainModel {
    vs: nn::VarStore,
    pub vgg: Vgg,
    pub config: VaeModelConfig,
    pub loss: VaeLoss,
    content_enc: Option<LearnedContentEncoder>,
    style_enc: StyleEncoder,
    code_mlp: Mlp,
    decoder: Decoder,
    channels: Vec<i64>,
    content_taps: Vec<Tap>,
    style_taps: Vec<Tap>,
    /// VGG features are multiplied by this: 1/(input gain), so weights of either
    /// preprocessing give features per unit of [0, 1] input.
    feature_scale: f64,
    step: u64,
}

impl VaeAdainModel {
    pub fn new(vgg: Vgg, config: VaeModelConfig, loss: VaeLoss) -> Result<Self> {
        let parse = |v: &[Tap], what: &str| -> Result<Vec<Tap>> {
            v.iter()
                .map(|t| t.check_for(vgg.arch()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Config(format!("loss.{what}: {e}")))
        };
        let content_taps = parse(&loss.content_layers, "content_layers")?;
        let style_taps = parse(&loss.style_layers, "style_layers")?;
        if content_taps.is_empty() || style_taps.is_empty() {
            return Err(Error::Config(
                "loss.content_layers and loss.style_layers need at least one layer each".into(),
            ));
        }
        if loss.content_target == ContentTarget::Adain && content_taps != [Tap::relu(4, 1)] {
            return Err(Error::Config("loss.content_target = \"adain\" compares at relu4_1 only: set content_layers = [\"relu4_1\"]".into()));
        }
        if !(config.width > 0.0 && config.width <= 4.0) {
            return Err(Error::Config(format!(
                "model.width must be in (0, 4], got {}",
                config.width
            )));
        }
        if !(1..=4096).contains(&config.style_dim) || !(8..=8192).contains(&config.hidden) {
            return Err(Error::Config(
                "model.style_dim must be in 1..=4096 and model.hidden in 8..=8192".into(),
            ));
        }
        for (name, w) in [
            ("content_weight", loss.content_weight),
            ("style_weight", loss.style_weight),
            ("kl_weight", loss.kl_weight),
            ("disentangle_weight", loss.disentangle_weight),
        ] {
            if !(w >= 0.0 && w.is_finite()) {
                return Err(Error::Config(format!("loss.{name} must be ≥ 0, got {w}")));
            }
        }
        let p = vgg.preprocessing();
        let feature_scale = 1.0 / p.input_gain();
        let vs = nn::VarStore::new(vgg.device());
        let root = vs.root();
        let content_enc = (config.content_encoder == ContentEncoderKind::Learned)
            .then(|| LearnedContentEncoder::new(&(&root / "content_encoder")));
        let style_enc = StyleEncoder::new(
            &(&root / "style_encoder"),
            config.style_encoder,
            config.hidden,
            config.style_dim,
        );
        // The VGG code is divided by the input gain inside the decoder; a learned code is used as is.
        let input_scale = match config.content_encoder {
            ContentEncoderKind::Vgg => 1.0 / feature_scale,
            ContentEncoderKind::Learned => 1.0,
        };
        let decoder = Decoder::new(
            &(&root / "decoder"),
            4,
            nst_vgg::MirrorOptions::adain(config.width, input_scale),
        );
        let channels = decoder.level_channels();
        let code_mlp = Mlp::new(
            &(&root / "code_mlp"),
            config.style_dim,
            config.hidden,
            2 * channels.iter().sum::<i64>(),
        );
        code_mlp.init_as_identity_adain(&channels);
        Ok(Self {
            vs,
            vgg,
            config,
            loss,
            content_enc,
            style_enc,
            code_mlp,
            decoder,
            channels,
            content_taps,
            style_taps,
            feature_scale,
            step: 0,
        })
    }

    pub fn style_dim(&self) -> i64 {
        self.config.style_dim
    }

    fn encode_vgg(&self, x: &Tensor, taps: &[Tap]) -> Result<Features> {
        self.vgg.encode(x, taps).map_err(Error::from)
    }

    /// VGG features at `tap`, per unit of [0, 1] input.
    fn scaled(&self, f: &Features, tap: Tap) -> Tensor {
        &f[tap] * self.feature_scale
    }

    /// E_c(x): the content code `[B, 512, H/8, W/8]`.
    pub fn encode_content(&self, x: &Tensor) -> Result<Tensor> {
        self.encode_content_from(x, None)
    }

    /// E_c(x), reusing VGG features of x already computed (without gradients)
    /// when E_c is the fixed VGG front and they include `relu4_1`.
    fn encode_content_from(&self, x: &Tensor, feats: Option<&Features>) -> Result<Tensor> {
        let t = Tap::relu(4, 1);
        match (&self.content_enc, feats.and_then(|f| f.get(t))) {
            (Some(e), _) => Ok(e.forward(x)),
            (None, Some(f)) => Ok(f.shallow_clone()),
            (None, None) => Ok(tch::no_grad(|| self.encode_vgg(x, &[t]))?[t].shallow_clone()),
        }
    }

    /// E_s(x) from VGG features of x already computed at (at least) `relu1_1…relu4_1`.
    fn encode_style_from(&self, x: &Tensor, feats: Option<&Features>) -> Result<(Tensor, Tensor)> {
        let stats = match self.style_enc.kind {
            StyleEncoderKind::Conv => self.style_enc.conv_stats(x),
            StyleEncoderKind::VggStats => {
                let owned;
                let f = match feats {
                    Some(f) => f,
                    None => {
                        owned = self.encode_vgg(x, &stats_taps())?;
                        &owned
                    }
                };
                let fs: Vec<Tensor> = stats_taps()
                    .into_iter()
                    .map(|t| self.scaled(f, t))
                    .collect();
                vgg_stats(&fs)
            }
        };
        Ok(self.style_enc.from_stats(&stats))
    }

    /// E_s(x) = (μ, log σ²), each `[B, style_dim]`.
    pub fn encode_style(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        self.encode_style_from(x, None)
    }

    /// The AdaIN parameters the code `s: [B, style_dim]` gives each decoder level;
    /// σ̂ = softplus(·) keeps the scales positive.
    pub fn adain_params(&self, s: &Tensor) -> AdainParams {
        let out = self.code_mlp.forward(s);
        let mut off = 0;
        let mut params = Vec::with_capacity(self.channels.len());
        for &c in &self.channels {
            let sigma = out.narrow(1, off, c).softplus() + 1e-4;
            let mu = out.narrow(1, off + c, c);
            off += 2 * c;
            params.push((sigma, mu));
        }
        params
    }

    /// Decodes a content code with AdaIN parameters: at every level,
    /// h ← Σ_k w_k · AdaIN(h; σ̂_k, μ̂_k); the image is sigmoid(decoder output). One entry with weight 1 is the plain
    /// decoder; two give the `--alpha` blend of stylised and content-styled features.
    pub fn decode_blend(&self, content_code: &Tensor, params: &[(&AdainParams, f64)]) -> Tensor {
        let raw = self.decoder.forward_with(content_code, |level, h| {
            let mut acc: Option<Tensor> = None;
            for (p, w) in params {
                let (sigma, mu) = &p[level];
                let y = adain_with(&h, sigma, mu) * *w;
                acc = Some(match acc {
                    Some(a) => a + y,
                    None => y,
                });
            }
            acc.unwrap_or(h)
        });
        // A sigmoid keeps the image in [0, 1]: unlike AdaIN's decoder, whose
        // input carries VGG's small scale, the AdaIN layers here feed unit-scale
        // maps, and an unbounded output made the first steps explode.
        raw.sigmoid()
    }

    /// Decodes a content code in the style of code `s`.
    pub fn decode(&self, content_code: &Tensor, s: &Tensor) -> Tensor {
        let p = self.adain_params(s);
        self.decode_blend(content_code, &[(&p, 1.0)])
    }

    /// Stylises `content` with the style code `s` (`[B or 1, style_dim]`).
    /// `alpha` in [0, 1] blends, at every AdaIN layer, the features stylised
    /// with s (weight alpha) and with the content's own code μ(E_s(content))
    /// (weight 1 − alpha): 0 reconstructs the content in its own style.
    pub fn stylize_code(&self, content: &Tensor, s: &Tensor, alpha: f64) -> Result<Tensor> {
        let b = content.size()[0];
        if s.dim() != 2
            || s.size()[1] != self.config.style_dim
            || !(s.size()[0] == 1 || s.size()[0] == b)
        {
            return Err(Error::Model(format!(
                "style code of shape {:?} does not fit a batch of {b} and style_dim {}",
                s.size(),
                self.config.style_dim
            )));
        }
        let s = if s.size()[0] == 1 && b > 1 {
            s.expand([b, s.size()[1]], false)
        } else {
            s.shallow_clone()
        };
        let code = self.encode_content(content)?;
        let ps = self.adain_params(&s);
        if alpha >= 1.0 {
            return Ok(self.decode_blend(&code, &[(&ps, 1.0)]));
        }
        let (own, _) = self.encode_style(content)?;
        let pc = self.adain_params(&own);
        Ok(self.decode_blend(&code, &[(&ps, alpha), (&pc, 1.0 - alpha)]))
    }

    /// Stylises with the mean code μ of `style` (inference uses μ, not a sample).
    pub fn stylize(&self, content: &Tensor, style: &Tensor, alpha: f64) -> Result<Tensor> {
        let (mu, _) = self.encode_style(style)?;
        self.stylize_code(content, &mu, alpha)
    }

    /// The current KL weight β(t).
    pub fn kl_weight_now(&self) -> f64 {
        match self.loss.kl_anneal_steps {
            0 => self.loss.kl_weight,
            n => self.loss.kl_weight * (self.step as f64 / n as f64).min(1.0),
        }
    }

    fn all_taps(&self) -> Vec<Tap> {
        let mut taps = self.style_taps.clone();
        taps.extend(self.content_taps.iter().copied());
        if self.style_enc.kind == StyleEncoderKind::VggStats {
            taps.extend(stats_taps());
        }
        if self.loss.content_target == ContentTarget::Adain {
            taps.push(Tap::relu(4, 1));
        }
        taps.sort_by_key(|t| (t.block, t.index, t.kind));
        taps.dedup();
        taps
    }
}

impl Model for VaeAdainModel {
    const KIND: &'static str = KIND;
    const TRAIN_CONFIG: &'static str = "configs/vae_adain.toml";
    /// Measured: 17,937 B/px.
    const STEP_BYTES_PER_PIXEL: Option<u64> = Some(18000);
    type Config = VaeModelConfig;
    type Loss = VaeLoss;

    fn vgg_options(m: &VaeModelConfig) -> (Option<std::path::PathBuf>, nst_vgg::Pooling) {
        (m.vgg_weights.clone(), nst_vgg::Pooling::Max)
    }

    fn build(vgg: Vgg, config: VaeModelConfig, loss: VaeLoss) -> Result<Self> {
        Self::new(vgg, config, loss)
    }
}

impl TrainModel for VaeAdainModel {
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn set_step(&mut self, step: u64) {
        self.step = step;
    }

    fn step(&mut self, content: &Tensor, style: &Tensor) -> Result<StepOutput> {
        let taps = self.all_taps();
        let device = content.device();
        // Fixed targets: VGG features of the style (Grams, and E_s's input) and of the content.
        let (style_feats, content_feats, target_grams, content_targets) =
            tch::no_grad(|| -> Result<_> {
                let fs = self.encode_vgg(style, &taps)?;
                let grams: Vec<Tensor> = self
                    .style_taps
                    .iter()
                    .map(|&t| gram(&self.scaled(&fs, t)))
                    .collect();
                let fc = self.encode_vgg(content, &taps)?;
                let targets: Vec<Tensor> = match self.loss.content_target {
                    ContentTarget::Content => self
                        .content_taps
                        .iter()
                        .map(|&t| self.scaled(&fc, t))
                        .collect(),
                    ContentTarget::Adain => {
                        let t = Tap::relu(4, 1);
                        vec![nst_losses::stats::adain(
                            &self.scaled(&fc, t),
                            &self.scaled(&fs, t),
                        )]
                    }
                };
                Ok((fs, fc, grams, targets))
            })?;
        // E_s is trained: run its head with gradients (the VGG statistics themselves are fixed).
        let (mu, logvar) = self.encode_style_from(style, Some(&style_feats))?;
        let eps = mu.randn_like();
        let s = reparameterize(&mu, &logvar, &eps);
        // With the VGG as E_c, the code is the content's relu4_1 computed above.
        let code = self.encode_content_from(content, Some(&content_feats))?;
        let params = self.adain_params(&s);
        let y = self.decode_blend(&code, &[(&params, 1.0)]);
        let fy = self.encode_vgg(&y, &taps)?;

        let mut content_loss = Tensor::zeros([], (Kind::Float, device));
        for (&t, target) in self.content_taps.iter().zip(&content_targets) {
            content_loss += self.scaled(&fy, t).mse_loss(target, Reduction::Mean);
        }
        let mut style_loss = Tensor::zeros([], (Kind::Float, device));
        for (&t, g) in self.style_taps.iter().zip(&target_grams) {
            style_loss += gram_loss(&self.scaled(&fy, t), g);
        }
        let kl = kl_divergence(&mu, &logvar);
        let mut terms = vec![
            (
                "content".to_string(),
                content_loss * self.loss.content_weight,
            ),
            ("style".to_string(), style_loss * self.loss.style_weight),
            ("kl".to_string(), &kl * self.kl_weight_now()),
        ];
        if self.loss.disentangle_weight > 0.0 && content.size()[0] > 1 {
            // y₂: other contents (the batch rolled by one) in the same codes.
            let y2 = self.decode_blend(
                &code.roll([1i64].as_slice(), [0i64].as_slice()),
                &[(&params, 1.0)],
            );
            let (e1, _) = self.encode_style_from(&y, Some(&fy))?;
            let (e2, _) = self.encode_style(&y2)?;
            terms.push((
                "disentangle".to_string(),
                disentanglement_loss(&e1, &e2, &s) * self.loss.disentangle_weight,
            ));
        }
        let loss = terms
            .iter()
            .map(|(_, t)| t.shallow_clone())
            .reduce(|a, b| a + b)
            .unwrap_or_else(|| Tensor::zeros([], (Kind::Float, device)));
        terms.push(("kl_unweighted".to_string(), kl.detach()));
        Ok(StepOutput { loss, terms })
    }

    /// Content | style | output | the content with a code drawn from the
    /// prior (to watch the prior become usable).
    fn sample_grid(&self, content: &Tensor, style: &Tensor) -> Result<Tensor> {
        let (c, s) = (
            nst_model::sample_items(content),
            nst_model::sample_items(style),
        );
        let out = self.stylize(&c, &s, 1.0)?.clamp(0.0, 1.0);
        let (n, _, h, w) = out.size4()?;
        let c = c.narrow(2, 0, h).narrow(3, 0, w);
        let s = s.narrow(2, 0, h).narrow(3, 0, w);
        let prior = Tensor::randn([n, self.config.style_dim], (Kind::Float, content.device()));
        let sampled = self.stylize_code(&c, &prior, 1.0)?.clamp(0.0, 1.0);
        Ok(nst_model::sample_grid(&[c, s, out, sampled]))
    }

    fn set_precision(&mut self, precision: nst_vgg::Precision) -> Result<()> {
        self.vgg.set_precision(precision)?;
        self.decoder.set_precision(precision);
        Ok(())
    }
}

/// Interpolates style codes: s = Σ_k w_k·s_k / Σ_k w_k. With all weight on one
/// code it returns that code exactly.
///
/// # Shapes
/// `codes: [1, D]` each → `[1, D]`
pub fn mix_codes(codes: &[Tensor], weights: &[f64]) -> Result<Tensor> {
    if codes.is_empty() || codes.len() != weights.len() {
        return Err(Error::Config(format!(
            "{} style codes but {} weights",
            codes.len(),
            weights.len()
        )));
    }
    let sum: f64 = weights.iter().sum();
    if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || sum <= 0.0 {
        return Err(Error::Config(format!(
            "weights must be ≥ 0 with a positive sum, got {weights:?}"
        )));
    }
    let mut acc = codes[0].zeros_like();
    for (c, w) in codes.iter().zip(weights) {
        if *w != 0.0 {
            acc += c * (*w / sum);
        }
    }
    Ok(acc)
}

/// `count` codes drawn from the prior N(0, I), scaled by `temperature`;
/// deterministic for a seed (it reseeds LibTorch's generator).
pub fn sample_codes(
    count: i64,
    style_dim: i64,
    seed: u64,
    temperature: f64,
    device: Device,
) -> Tensor {
    tch::manual_seed(seed as i64);
    Tensor::randn([count, style_dim], (Kind::Float, Device::Cpu)).to_device(device) * temperature
}
