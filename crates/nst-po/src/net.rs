//! The pseudo-optimizer network: gradient maps at VGG layers in, an image
//! update out, shaped like back-propagation through VGG.
//!
//! For the layers it is given (each with a stride 2^k relative to the image):
//!
//! 1. at the deepest stride, every layer's gradient map goes through an input
//!    block (two 3×3 convs, each with a norm and a leaky ReLU) and the
//!    results are summed; residual blocks follow;
//! 2. at each shallower stride, the running map is upsampled (nearest, to the
//!    exact size VGG's floor-pooling gives, then conv + norm + leaky ReLU); the
//!    input blocks of that stride's layers are added, then residual blocks;
//!    strides with no layer only upsample;
//! 3. at full resolution a last 3×3 conv gives the 3-channel update Δ.
//!
//! Every gradient map is divided by its own root-mean-square (per sample,
//! detached) before the input block: the network sees each layer's direction
//! of descent, not its scale, which differs by orders of magnitude between
//! layers and between targets.
use nst_vgg::Precision;
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, nn::ModuleT, Tensor};

/// The normalisation inside the blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// Batch norm (the published choice); running statistics at inference.
    Batch,
    /// Instance norm with a learned affine (no batch dependence).
    Instance,
}

#[derive(Debug)]
enum NormLayer {
    Batch(nn::BatchNorm),
    Instance(nn::GroupNorm),
}

impl NormLayer {
    fn new(vs: &nn::Path, kind: Norm, c: i64) -> Self {
        match kind {
            Norm::Batch => NormLayer::Batch(nn::batch_norm2d(vs, c, Default::default())),
            Norm::Instance => NormLayer::Instance(nn::group_norm(vs, c, c, Default::default())),
        }
    }
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            NormLayer::Batch(b) => b.forward_t(x, train),
            NormLayer::Instance(g) => g.forward(x),
        }
    }
}

/// How the 3×3 convolutions pad their input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// Zeros (the published choice).
    #[default]
    Zeros,
    /// Reflection: borders look like the interior, so the network cannot
    /// tell where the image ends (zero padding lets it pin statistics to a
    /// fixed frame at the border).
    Reflect,
    /// Circular, here and in the loss network's VGG (see
    /// `Vgg::set_circular_padding`): the image is a torus, so neither network
    /// has a border to learn positions from; outputs tile seamlessly.
    Circular,
}

/// A 3×3 convolution at precision `p` with the padding `pad`. A map with a
/// side of 1 (the deepest level of a 16–31 px image) has nothing to reflect,
/// so it is padded by replication.
fn conv3(conv: &nn::Conv2D, x: &Tensor, p: Precision, pad: Padding) -> Tensor {
    match pad {
        Padding::Zeros => p.conv2d(conv, x, 1),
        Padding::Reflect => {
            let s = x.size();
            let padded = if s[2].min(s[3]) < 2 {
                x.replication_pad2d([1, 1, 1, 1])
            } else {
                x.reflection_pad2d([1, 1, 1, 1])
            };
            p.conv2d(conv, &padded, 0)
        }
        Padding::Circular => p.conv2d(conv, &x.pad([1, 1, 1, 1], "circular", None), 0),
    }
}

fn conv3_new(vs: nn::Path, cin: i64, cout: i64, pad: Padding) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        padding: if pad == Padding::Zeros { 1 } else { 0 },
        ..Default::default()
    };
    nn::conv2d(vs, cin, cout, 3, cfg)
}

const SLOPE: f64 = 0.2;

/// Leaky ReLU with slope 0.2 (tch's `leaky_relu` has LibTorch's fixed 0.01),
/// as a PReLU with a constant weight: one fused kernel forward and backward.
fn leaky_relu(x: &Tensor) -> Tensor {
    let w = Tensor::from_slice(&[SLOPE as f32])
        .to_device(x.device())
        .to_kind(x.kind());
    x.prelu(&w)
}

/// conv 3×3 → norm → leaky ReLU.
#[derive(Debug)]
struct ConvNormAct {
    conv: nn::Conv2D,
    norm: NormLayer,
    pad: Padding,
}

impl ConvNormAct {
    fn new(vs: &nn::Path, cin: i64, cout: i64, shape: &NetShape) -> Self {
        Self {
            conv: conv3_new(vs / "conv", cin, cout, shape.padding),
            norm: NormLayer::new(&(vs / "norm"), shape.norm, cout),
            pad: shape.padding,
        }
    }
    /// The convolution at `p`; the normalisation's statistics in fp32.
    fn forward_t(&self, x: &Tensor, train: bool, p: Precision) -> Tensor {
        let h = conv3(&self.conv, x, p, self.pad).to_kind(tch::Kind::Float);
        leaky_relu(&self.norm.forward_t(&h, train))
    }
}

/// x + (conv-norm-act → conv-norm)(x).
#[derive(Debug)]
struct ResBlock {
    a: ConvNormAct,
    conv: nn::Conv2D,
    norm: NormLayer,
}

impl ResBlock {
    fn new(vs: &nn::Path, c: i64, shape: &NetShape) -> Self {
        Self {
            a: ConvNormAct::new(&(vs / "a"), c, c, shape),
            conv: conv3_new(vs / "b" / "conv", c, c, shape.padding),
            norm: NormLayer::new(&(vs / "b" / "norm"), shape.norm, c),
        }
    }
    fn forward_t(&self, x: &Tensor, train: bool, p: Precision) -> Tensor {
        let h = conv3(&self.conv, &self.a.forward_t(x, train, p), p, self.a.pad)
            .to_kind(tch::Kind::Float);
        x + self.norm.forward_t(&h, train)
    }
}

#[derive(Debug)]
struct InputBlock {
    /// Index into the layers the network was built for.
    layer: usize,
    a: ConvNormAct,
    b: ConvNormAct,
}

#[derive(Debug)]
struct Level {
    /// log2 of the stride of this level.
    k: usize,
    /// Channels of its maps.
    c: i64,
    up: Option<ConvNormAct>,
    inputs: Vec<InputBlock>,
    res: Vec<ResBlock>,
}

/// Shape of a [`PoNet`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetShape {
    /// Channels at stride 1, 2, 4, … (the last entry serves deeper strides too).
    pub channels: Vec<i64>,
    /// Residual blocks after each level that takes a gradient.
    pub res_blocks: usize,
    pub norm: Norm,
    #[serde(default)]
    pub padding: Padding,
}

/// One pseudo-optimizer network over a fixed list of layers.
#[derive(Debug)]
pub struct PoNet {
    levels: Vec<Level>,
    out: nn::Conv2D,
    pad: Padding,
    norm: Norm,
    n_layers: usize,
    /// Precision of the convolutions (normalisation statistics and the output stay fp32).
    pub precision: Precision,
}

fn log2_stride(stride: i64) -> usize {
    assert!(
        stride >= 1 && (stride & (stride - 1)) == 0,
        "strides are powers of two"
    );
    stride.trailing_zeros() as usize
}

impl PoNet {
    /// `layers`: (channels, stride) of each gradient map the network takes.
    pub fn new(vs: &nn::Path, layers: &[(i64, i64)], shape: &NetShape) -> Self {
        assert!(!layers.is_empty() && !shape.channels.is_empty());
        let width = |k: usize| shape.channels[k.min(shape.channels.len() - 1)];
        let deepest = layers.iter().map(|l| log2_stride(l.1)).max().unwrap_or(0);
        let mut levels = Vec::new();
        for k in (0..=deepest).rev() {
            let lv = vs / format!("s{}", 1i64 << k);
            let c = width(k);
            let up =
                (k != deepest).then(|| ConvNormAct::new(&(&lv / "up"), width(k + 1), c, shape));
            let inputs: Vec<InputBlock> = layers
                .iter()
                .enumerate()
                .filter(|(_, l)| log2_stride(l.1) == k)
                .map(|(i, &(cin, _))| {
                    let p = &lv / format!("in{i}");
                    InputBlock {
                        layer: i,
                        a: ConvNormAct::new(&(&p / "a"), cin, c, shape),
                        b: ConvNormAct::new(&(&p / "b"), c, c, shape),
                    }
                })
                .collect();
            let res = if inputs.is_empty() {
                vec![]
            } else {
                (0..shape.res_blocks)
                    .map(|r| ResBlock::new(&(&lv / format!("res{r}")), c, shape))
                    .collect()
            };
            levels.push(Level {
                k,
                c,
                up,
                inputs,
                res,
            });
        }
        let out = conv3_new(vs / "out", width(0), 3, shape.padding);
        Self {
            levels,
            out,
            pad: shape.padding,
            norm: shape.norm,
            n_layers: layers.len(),
            precision: Precision::Fp32,
        }
    }

    /// The number of gradient maps the network takes.
    pub fn n_layers(&self) -> usize {
        self.n_layers
    }

    /// Δ `[B, 3, H, W]` from the gradient maps (in the order the network was
    /// built with) of an image of size `h × w`.
    pub fn forward_t(&self, grads: &[Tensor], h: i64, w: i64, train: bool) -> Tensor {
        self.forward_scaled(grads, h, w, train, None)
    }

    /// How far, in px, the output at a pixel sees into the gradient maps:
    /// each 3×3 convolution at a level of stride 2^k reaches 2^k px, and
    /// the nearest upsampling into a level one more cell. A tile whose
    /// halo covers this (plus the loss network's) computes its core as the
    /// whole image would.
    pub fn receptive_radius(&self) -> i64 {
        self.fine_radius(usize::MAX)
    }

    /// Why this network cannot run tile by tile, if it cannot: instance
    /// norm takes statistics over the whole map, circular padding wraps a
    /// map onto itself.
    pub fn untileable(&self) -> Option<&'static str> {
        match (self.norm, self.pad) {
            (Norm::Instance, _) => {
                Some("instance norm (statistics over the whole image at every layer)")
            }
            (_, Padding::Circular) => Some("circular padding (the image wraps around)"),
            _ => None,
        }
    }

    /// [`PoNet::forward_t`] with each gradient map's root-mean-square given
    /// (`rms[layer]`, `[1, 1, 1, 1]`) instead of measured on the maps
    /// passed: a tile's maps are normalised as the whole image's are.
    pub fn forward_scaled(
        &self,
        grads: &[Tensor],
        h: i64,
        w: i64,
        train: bool,
        rms: Option<&[Tensor]>,
    ) -> Tensor {
        assert_eq!(grads.len(), self.n_layers, "one gradient map per layer");
        let input = |i: usize| {
            let g = &grads[i];
            let rms = match rms {
                Some(r) => r[i].shallow_clone(),
                None => {
                    g.detach()
                        .square()
                        .mean_dim([1i64, 2, 3].as_slice(), true, tch::Kind::Float)
                        .sqrt()
                        + 1e-20
                }
            };
            g / rms
        };
        let up = |x: &Tensor, k: usize| x.upsample_nearest2d([h >> k, w >> k], None, None);
        let x = self.run_levels(None, 0..usize::MAX, &input, &up, train);
        self.output(&x.expect("at least one level"))
    }

    /// The last convolution: the update Δ `[B, 3, H, W]` (fp32) from the
    /// finest level's map.
    pub(crate) fn output(&self, x: &Tensor) -> Tensor {
        conv3(&self.out, x, self.precision, self.pad).to_kind(tch::Kind::Float)
    }

    /// [`PoNet::receptive_radius`] of the levels finer than 2^`k` and the
    /// output conv only, in px.
    pub fn fine_radius(&self, k: usize) -> i64 {
        1 + self
            .levels
            .iter()
            .filter(|lv| lv.k < k)
            .map(Self::level_reach)
            .sum::<i64>()
    }

    /// The channels of level k's maps (0 when there is no such level).
    pub fn width(&self, k: usize) -> i64 {
        self.levels.iter().find(|lv| lv.k == k).map_or(0, |lv| lv.c)
    }

    fn level_reach(lv: &Level) -> i64 {
        let convs = lv.up.is_some() as i64
            + if lv.inputs.is_empty() { 0 } else { 2 }
            + 2 * lv.res.len() as i64;
        (convs + 1) << lv.k
    }

    /// The levels whose stride is 2^k for k in `ks`, from `x` (the output of
    /// the level above, `None` to start at the deepest level): `input(i)`
    /// gives layer i's normalised gradient map, `up(x, k)` upsamples a map
    /// to level k's size. `None` when no level is in `ks`.
    pub(crate) fn run_levels(
        &self,
        mut x: Option<Tensor>,
        ks: std::ops::Range<usize>,
        input: &dyn Fn(usize) -> Tensor,
        up: &dyn Fn(&Tensor, usize) -> Tensor,
        train: bool,
    ) -> Option<Tensor> {
        let p = self.precision;
        for lv in self.levels.iter().filter(|lv| ks.contains(&lv.k)) {
            let mut h_map = x.take().map(|prev| {
                let u = up(&prev, lv.k);
                lv.up
                    .as_ref()
                    .map_or(u.shallow_clone(), |c| c.forward_t(&u, train, p))
            });
            for ib in &lv.inputs {
                let gi =
                    ib.b.forward_t(&ib.a.forward_t(&input(ib.layer), train, p), train, p);
                h_map = Some(match h_map {
                    Some(m) => m + gi,
                    None => gi,
                });
            }
            let mut m = h_map.expect("the deepest level has an input");
            for r in &lv.res {
                m = r.forward_t(&m, train, p);
            }
            x = Some(m);
        }
        x
    }
}
