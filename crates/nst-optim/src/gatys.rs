//! Gatys, Ecker and Bethge: "A Neural Algorithm of Artistic Style" (2015) and
//! "Texture Synthesis Using Convolutional Neural Networks" (2015).
//!
//! The pixels x of the output minimise
//!
//! L(x) = content_weight · Σ_l MSE(F_l(x), F_l(c))
//!      + style_weight   · Σ_l w_l · MSE(G_l(x), G_l(s))
//!      + tv_weight      · TV(x)
//!
//! with F_l the VGG features at tap l and G_l = FᵀF/(C·H·W) their Gram matrix.
//! Without a content image (texture synthesis) the content term is absent and
//! the output starts from noise.
use crate::lbfgs::LbfgsReport;
use crate::{Error, Lbfgs, Result};
use nst_losses::{content_loss, gram, gram_loss, total_variation};
use nst_vgg::{Tap, Vgg};
use tch::{nn, nn::OptimizerConfig, Kind, Tensor};

pub mod tiled;

/// The optimiser that updates the pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerKind {
    /// L-BFGS with a strong-Wolfe line search and stop tests that do not
    /// depend on the loss's scale ([`Lbfgs::scale_free`]); `lr` is the first
    /// trial step's L2 length in pixels (1.0 is the usual choice).
    Lbfgs { lr: f64 },
    /// PyTorch's `torch.optim.LBFGS` without a line search: fixed step `lr`,
    /// absolute stop tests (it can stop after a few evaluations on a large
    /// loss). For parity with PyTorch scripts.
    LbfgsParity { lr: f64 },
    /// Adam on the [0, 1] pixel values (lr around 0.01–0.05).
    Adam { lr: f64 },
}

/// Where the output starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    Content,
    /// Uniform noise in [0, 1] (drawn from LibTorch's seeded generator).
    Noise,
}

/// Settings of a Gatys run. Defaults reproduce the reference calibration
/// (Keras VGG19 weights, Caffe preprocessing, average pooling).
#[derive(Debug, Clone)]
pub struct GatysConfig {
    pub content_layers: Vec<Tap>,
    pub style_layers: Vec<Tap>,
    /// Per-style-layer weights w_l; empty means 1 for every layer.
    pub style_layer_weights: Vec<f64>,
    pub content_weight: f64,
    pub style_weight: f64,
    pub tv_weight: f64,
    /// Function evaluations (L-BFGS) or steps (Adam).
    pub steps: usize,
    pub optimizer: OptimizerKind,
    pub init: Init,
}

impl Default for GatysConfig {
    fn default() -> Self {
        Self {
            content_layers: vec![Tap::relu(4, 2)],
            style_layers: (1..=5).map(|b| Tap::relu(b, 1)).collect(),
            style_layer_weights: vec![],
            content_weight: 1.0,
            style_weight: 1e3,
            tv_weight: 0.0,
            steps: 200,
            optimizer: OptimizerKind::Lbfgs { lr: 1.0 },
            init: Init::Content,
        }
    }
}

/// The loss terms at one evaluation, already weighted.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossTerms {
    pub content: f64,
    pub style: f64,
    pub tv: f64,
    /// The extra regulariser of [`Gatys::with_regularizer`] (e.g. Luan's matting term).
    pub reg: f64,
}

impl LossTerms {
    pub fn total(&self) -> f64 {
        self.content + self.style + self.tv + self.reg
    }
}

/// An error naming the first loss term that is not finite.
fn check_terms(terms: &LossTerms, eval: usize) -> Result<()> {
    for (name, v) in [
        ("content", terms.content),
        ("style", terms.style),
        ("tv", terms.tv),
        ("regulariser", terms.reg),
    ] {
        if !v.is_finite() {
            return Err(Error::NonFinite {
                eval,
                term: name.into(),
                value: v,
            });
        }
    }
    Ok(())
}

/// An extra differentiable term R(x) added to the loss with a weight.
pub type Regularizer<'a> = Box<dyn Fn(&Tensor) -> Tensor + 'a>;

/// A Gatys problem: VGG, settings, and the targets computed once.
pub struct Gatys<'a> {
    vgg: &'a Vgg,
    cfg: GatysConfig,
    taps: Vec<Tap>,
    content_targets: Vec<Tensor>,
    style_grams: Vec<Tensor>,
    style_weights: Vec<f64>,
    content: Option<Tensor>,
    regularizer: Option<(f64, Regularizer<'a>)>,
}

impl<'a> Gatys<'a> {
    /// Prepares the targets: content features (if a content image is given)
    /// and style Gram matrices, under `no_grad`.
    ///
    /// # Shapes
    /// `content: [1, 3, H, W]`, `style: [1, 3, H', W']`, both RGB in [0, 1].
    pub fn new(
        vgg: &'a Vgg,
        cfg: GatysConfig,
        content: Option<&Tensor>,
        style: &Tensor,
    ) -> Result<Self> {
        if cfg.style_layers.is_empty() {
            return Err(Error::Config("at least one style layer is needed".into()));
        }
        if !cfg.style_layer_weights.is_empty()
            && cfg.style_layer_weights.len() != cfg.style_layers.len()
        {
            return Err(Error::Config(format!(
                "{} style layer weights for {} style layers",
                cfg.style_layer_weights.len(),
                cfg.style_layers.len()
            )));
        }
        if cfg.steps == 0 {
            return Err(Error::Config("steps must be at least 1".into()));
        }
        let style_weights = if cfg.style_layer_weights.is_empty() {
            vec![1.0; cfg.style_layers.len()]
        } else {
            cfg.style_layer_weights.clone()
        };
        let device = vgg.device();
        let (content_targets, style_grams) = tch::no_grad(|| -> Result<_> {
            let s = vgg.encode(&style.to_device(device), &cfg.style_layers)?;
            let grams = cfg.style_layers.iter().map(|&t| gram(&s[t])).collect();
            let c = match content {
                Some(c) => {
                    let f = vgg.encode(&c.to_device(device), &cfg.content_layers)?;
                    cfg.content_layers.iter().map(|&t| f[t].detach()).collect()
                }
                None => vec![],
            };
            Ok((c, grams))
        })?;
        let mut taps = cfg.style_layers.clone();
        if content.is_some() {
            taps.extend(cfg.content_layers.iter().copied());
        }
        Ok(Self {
            vgg,
            cfg,
            taps,
            content_targets,
            style_grams,
            style_weights,
            content: content.map(|c| c.to_device(device)),
            regularizer: None,
        })
    }

    /// Adds `weight · r(x)` to the loss, e.g. Luan et al.'s photorealism
    /// term λ·Tr(XᵀLX) with L the content's matting Laplacian. `r` must be
    /// differentiable with respect to `x: [1, 3, H, W]` and return a scalar.
    pub fn with_regularizer(mut self, weight: f64, r: Regularizer<'a>) -> Self {
        self.regularizer = Some((weight, r));
        self
    }

    /// Luan et al.'s photorealism term: adds λ·Tr(XᵀLX) with L the matting
    /// Laplacian of the content (ε = [`nst_losses::matting::DEFAULT_EPS`]).
    /// An error when the run has no content.
    pub fn with_photorealism(self, lambda: f64) -> Result<Self> {
        let Some(c) = &self.content else {
            return Err(Error::Config(
                "the photorealism term needs a content image".into(),
            ));
        };
        let laplacian =
            nst_losses::matting::MattingLaplacian::new(c, nst_losses::matting::DEFAULT_EPS)?;
        Ok(self.with_regularizer(lambda, Box::new(move |x: &Tensor| laplacian.energy(x))))
    }

    pub fn config(&self) -> &GatysConfig {
        &self.cfg
    }

    /// The weighted loss terms and the differentiable total at `x`.
    pub fn loss(&self, x: &Tensor) -> Result<(Tensor, LossTerms)> {
        let f = self.vgg.encode(x, &self.taps)?;
        let zero = || Tensor::zeros([], (Kind::Float, x.device()));
        let mut style = zero();
        for ((&t, g), w) in self
            .cfg
            .style_layers
            .iter()
            .zip(&self.style_grams)
            .zip(&self.style_weights)
        {
            style += gram_loss(&f[t], g) * *w;
        }
        let mut content = zero();
        for (&t, target) in self.cfg.content_layers.iter().zip(&self.content_targets) {
            content += content_loss(&f[t], target);
        }
        let tv = if self.cfg.tv_weight > 0.0 {
            total_variation(x)
        } else {
            zero()
        };
        let style = style * self.cfg.style_weight;
        let content = content * self.cfg.content_weight;
        let tv = tv * self.cfg.tv_weight;
        let reg = match &self.regularizer {
            Some((w, r)) => r(x).to_kind(Kind::Float) * *w,
            None => zero(),
        };
        let terms = LossTerms {
            content: content.double_value(&[]),
            style: style.double_value(&[]),
            tv: tv.double_value(&[]),
            reg: reg.double_value(&[]),
        };
        Ok((content + style + tv + reg, terms))
    }

    /// The starting image for an output of `height x width`.
    pub fn initial_image(&self, height: i64, width: i64) -> Tensor {
        match (&self.content, self.cfg.init) {
            (Some(c), Init::Content) => c.copy(),
            _ => Tensor::rand([1, 3, height, width], (Kind::Float, self.vgg.device())),
        }
    }

    /// Optimises from `init`. After every evaluation `observe(eval, terms)`
    /// is called; returning `false` stops early with [`Error::Interrupted`].
    ///
    /// Returns the image clamped to [0, 1].
    pub fn run<F>(&self, init: &Tensor, observe: F) -> Result<Tensor>
    where
        F: FnMut(usize, &LossTerms) -> bool,
    {
        self.run_report(init, observe).map(|(x, _)| x)
    }

    /// [`Gatys::run`], also returning how the optimiser ended: for L-BFGS
    /// its report (evaluations, stop reason, final loss), so that a run that
    /// stopped before its budget can say so; `None` for Adam (which always
    /// takes every step).
    pub fn run_report<F>(
        &self,
        init: &Tensor,
        mut observe: F,
    ) -> Result<(Tensor, Option<LbfgsReport>)>
    where
        F: FnMut(usize, &LossTerms) -> bool,
    {
        // A copy: L-BFGS updates x in place, and `init` is the caller's.
        let mut x = init
            .detach()
            .to_kind(Kind::Float)
            .to_device(self.vgg.device())
            .copy();
        let mut eval = 0usize;
        let mut check = |terms: &LossTerms, eval: usize| -> Result<()> {
            check_terms(terms, eval)?;
            if !observe(eval, terms) {
                return Err(Error::Interrupted);
            }
            Ok(())
        };
        let mut report = None;
        match self.cfg.optimizer {
            OptimizerKind::Lbfgs { lr } | OptimizerKind::LbfgsParity { lr } => {
                let lbfgs = match self.cfg.optimizer {
                    OptimizerKind::Lbfgs { .. } => Lbfgs {
                        lr,
                        ..Lbfgs::scale_free()
                    },
                    _ => Lbfgs {
                        lr,
                        ..Default::default()
                    },
                };
                let r = lbfgs.minimize(&mut x, self.cfg.steps, |x| -> Result<(f64, Tensor)> {
                    let xv = x.detach().set_requires_grad(true);
                    let (loss, terms) = self.loss(&xv)?;
                    eval += 1;
                    check(&terms, eval)?;
                    let grads = Tensor::run_backward(&[&loss], &[&xv], false, false);
                    Ok((terms.total(), grads[0].detach()))
                })?;
                report = Some(r);
            }
            OptimizerKind::Adam { lr } => {
                let vs = nn::VarStore::new(self.vgg.device());
                let xv = vs.root().var_copy("image", &x);
                let mut opt = nn::Adam::default().build(&vs, lr)?;
                for step in 1..=self.cfg.steps {
                    let (loss, terms) = self.loss(&xv)?;
                    check(&terms, step)?;
                    opt.backward_step(&loss);
                }
                x = xv.detach();
            }
        }
        Ok((x.clamp(0.0, 1.0), report))
    }
}
