//! The decoder that mirrors VGG19: from `relu{L}_1` features back to RGB.
//! AdaIN, the variational AdaIN model and the universal (WCT, Optimal
//! Textures) decoders all use it.
use crate::Precision;
use tch::{nn, nn::Module, Kind, Tensor};

/// VGG19's blocks: (convs per block, channels).
const BLOCKS: [(usize, i64); 5] = [(2, 64), (2, 128), (4, 256), (4, 512), (4, 512)];

#[derive(Debug)]
struct Layer {
    conv: nn::Conv2D,
    relu: bool,
    upsample: bool,
}

/// How a [`MirrorDecoder`] is built.
#[derive(Debug, Clone, Copy)]
pub struct MirrorOptions {
    /// Scales the hidden channels (1.0 = VGG's); the input keeps VGG's count.
    pub width: f64,
    /// No hidden layer gets fewer channels than this.
    pub min_channels: i64,
    /// The incoming features are divided by this (255 for Caffe-scaled VGG
    /// weights; 1 when the caller has scaled them already).
    pub input_scale: f64,
    /// Start the output near mid grey: the last conv's weights ×0.1, its bias
    /// 0.5. With the default initialisation an untrained deep decoder's output
    /// swings by ±2–3, far outside the image range.
    pub grey_start: bool,
}

impl MirrorOptions {
    /// AdaIN's decoder (and the variational model's): at least 8 channels,
    /// default initialisation.
    pub fn adain(width: f64, input_scale: f64) -> Self {
        Self {
            width,
            min_channels: 8,
            input_scale,
            grey_start: false,
        }
    }
}

/// The mirror of VGG19 up to `relu{level}_1`: reflection-padded 3×3 convs
/// with ReLU, nearest-neighbour ×2 upsampling where the encoder pools, and a
/// last conv to RGB. Parameters are named after the VGG conv they mirror
/// (`conv4_1`, …, `conv1_1`), created in that order.
#[derive(Debug)]
pub struct MirrorDecoder {
    pub level: u8,
    layers: Vec<Layer>,
    input_scale: f64,
    /// Precision of the convolutions (weights, hook maps and output stay fp32).
    pub precision: Precision,
}

impl MirrorDecoder {
    pub fn new(vs: &nn::Path, level: u8, o: MirrorOptions) -> Self {
        assert!((1..=5).contains(&level), "VGG19 levels are 1..=5");
        let ch = |b: usize| ((BLOCKS[b].1 as f64 * o.width).round() as i64).max(o.min_channels);
        let conv =
            |name: String, i: i64, out: i64| nn::conv2d(vs / name, i, out, 3, Default::default());
        let mut layers = Vec::new();
        let mut cin = BLOCKS[level as usize - 1].1; // VGG's channels at relu{level}_1
                                                    // The mirror of conv{b+2}_1 (then upsample), then of conv{b+1}_n … conv{b+1}_2.
        for b in (0..level as usize - 1).rev() {
            layers.push(Layer {
                conv: conv(format!("conv{}_1", b + 2), cin, ch(b)),
                relu: true,
                upsample: true,
            });
            cin = ch(b);
            for k in (2..=BLOCKS[b].0).rev() {
                layers.push(Layer {
                    conv: conv(format!("conv{}_{k}", b + 1), cin, ch(b)),
                    relu: true,
                    upsample: false,
                });
            }
        }
        let last = conv("conv1_1".into(), cin, 3);
        if o.grey_start {
            tch::no_grad(|| {
                let _ = last.ws.shallow_clone().g_mul_scalar_(0.1);
                if let Some(b) = &last.bs {
                    let _ = b.shallow_clone().fill_(0.5);
                }
            });
        }
        layers.push(Layer {
            conv: last,
            relu: false,
            upsample: false,
        });
        Self {
            level,
            layers,
            input_scale: o.input_scale,
            precision: Precision::Fp32,
        }
    }

    /// Runs the convolutions at `precision`.
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    /// Spatial reduction of this level's features (2^(level−1)).
    pub fn stride(&self) -> i64 {
        1 << (self.level - 1)
    }

    /// Channels at the hook points of [`MirrorDecoder::forward_with`], in
    /// the order it visits them: the input, then each upsampling's output.
    pub fn level_channels(&self) -> Vec<i64> {
        let mut v = vec![BLOCKS[self.level as usize - 1].1];
        v.extend(
            self.layers
                .iter()
                .filter(|l| l.upsample)
                .map(|l| l.conv.ws.size()[0]),
        );
        v
    }

    /// The forward pass with a hook at each scale: `modulate(i, h)` sees the
    /// scaled input (i = 0), then the map after each ×2 upsampling (i = 1, 2,
    /// …), in fp32, and returns the map to continue with (the variational
    /// model puts its AdaIN layers there).
    ///
    /// # Shapes
    /// `[B, C_level, H/s, W/s]` → `[B, 3, H, W]`, s = [`MirrorDecoder::stride`]
    pub fn forward_with(
        &self,
        features: &Tensor,
        modulate: impl FnMut(usize, Tensor) -> Tensor,
    ) -> Tensor {
        self.forward_between(features, 0, None, modulate)
    }

    /// A stretch of [`MirrorDecoder::forward_with`], for work that needs the
    /// maps at one hook before it can go on (tiled decoding, which takes each
    /// hook's statistics over all tiles first). `h` is the map arriving at
    /// hook `from` before `modulate` sees it (at hook 0: the features as
    /// given, scaled here). Runs to hook `to` and returns the map arriving
    /// there, unmodulated, in fp32 (`to = Some(from)`: `h` itself, scaled at
    /// hook 0); with `to = None` runs to the image.
    pub fn forward_between(
        &self,
        h: &Tensor,
        from: usize,
        to: Option<usize>,
        mut modulate: impl FnMut(usize, Tensor) -> Tensor,
    ) -> Tensor {
        let mut h = if from > 0 || self.input_scale == 1.0 {
            h.shallow_clone()
        } else {
            h / self.input_scale
        };
        if to == Some(from) {
            return h.to_kind(Kind::Float);
        }
        h = modulate(from, h);
        let mut i = 0;
        for l in &self.layers {
            if i < from {
                i += usize::from(l.upsample);
                continue;
            }
            h = self
                .precision
                .conv2d(&l.conv, &h.reflection_pad2d([1, 1, 1, 1]), 0);
            if l.relu {
                h = h.relu();
            }
            if l.upsample {
                let (_, _, hh, ww) = h.size4().unwrap_or((0, 0, 0, 0));
                h = h.upsample_nearest2d([hh * 2, ww * 2], None, None);
                i += 1;
                if to == Some(i) {
                    return h.to_kind(Kind::Float);
                }
                h = modulate(i, h.to_kind(Kind::Float));
            }
        }
        h.to_kind(Kind::Float)
    }
}

impl Module for MirrorDecoder {
    /// # Shapes
    /// `[B, C_level, H/s, W/s]` → `[B, 3, H, W]` (RGB, roughly in [0, 1])
    fn forward(&self, features: &Tensor) -> Tensor {
        self.forward_with(features, |_, h| h)
    }
}
