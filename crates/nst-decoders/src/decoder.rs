//! One image decoder per VGG19 level, mirroring the encoder up to `reluL_1`.
use tch::{nn, nn::Module, Tensor};

/// VGG19's blocks: (convs per block, channels).
const BLOCKS: [(usize, i64); 5] = [(2, 64), (2, 128), (4, 256), (4, 512), (4, 512)];

/// The VGG19 levels the decoders invert: `relu1_1 … relu5_1`.
pub const LEVELS: [u8; 5] = [1, 2, 3, 4, 5];

#[derive(Debug)]
struct Layer {
    conv: nn::Conv2D,
    relu: bool,
    upsample: bool,
}

/// The mirror of VGG19 up to `relu{level}_1`: reflection-padded 3×3 convs with
/// ReLU, nearest ×2 upsampling where the encoder pools, a last conv to RGB.
/// Layers are named after the VGG conv they mirror (`conv4_1`, …, `conv1_1`).
/// Input: VGG features divided by the weights' input gain (see
/// [`crate::Decoders::encode`]); output: RGB, about [0, 1].
#[derive(Debug)]
pub struct LevelDecoder {
    pub level: u8,
    layers: Vec<Layer>,
    /// Precision of the convolutions (the output is fp32).
    pub precision: nst_vgg::Precision,
}

impl LevelDecoder {
    /// `width` scales the hidden channels (1.0 = VGG's); the input keeps VGG's channel count.
    pub fn new(vs: &nn::Path, level: u8, width: f64) -> Self {
        assert!((1..=5).contains(&level), "levels are 1..=5");
        let ch = |b: usize| ((BLOCKS[b].1 as f64 * width).round() as i64).max(4);
        let mut layers = Vec::new();
        let mut cin = BLOCKS[level as usize - 1].1; // VGG's channels at relu{level}_1
                                                    // Mirror of conv{b+1}_1 (C_{b+1} → C_b, then upsample), then of conv{b}_{n}..conv{b}_2.
        for b in (0..level as usize - 1).rev() {
            let name = format!("conv{}_1", b + 2);
            layers.push(Layer {
                conv: nn::conv2d(vs / name, cin, ch(b), 3, Default::default()),
                relu: true,
                upsample: true,
            });
            cin = ch(b);
            for k in (2..=BLOCKS[b].0).rev() {
                let name = format!("conv{}_{k}", b + 1);
                layers.push(Layer {
                    conv: nn::conv2d(vs / name, cin, ch(b), 3, Default::default()),
                    relu: true,
                    upsample: false,
                });
            }
        }
        let last = nn::conv2d(vs / "conv1_1", cin, 3, 3, Default::default());
        // Start nearer mid grey: the default initialisation made the untrained
        // decoders' output swing by ±2–3 (pixel MSE 4–8 at relu3_1/relu4_1 at
        // step 1). Measured at width 0.25 on a smooth 64² image, mean |y − 0.5|
        // is now 0.02, 0.09, 0.18, 0.66, 0.03 at relu1_1 … relu5_1: relu4_1
        // still swings (max 2.2), a larger scale-down there is untested.
        tch::no_grad(|| {
            let _ = last.ws.shallow_clone().g_mul_scalar_(0.1);
            if let Some(b) = &last.bs {
                let _ = b.shallow_clone().fill_(0.5);
            }
        });
        layers.push(Layer {
            conv: last,
            relu: false,
            upsample: false,
        });
        Self {
            level,
            layers,
            precision: nst_vgg::Precision::Fp32,
        }
    }

    /// Spatial reduction of this level's features (2^(level−1)).
    pub fn stride(&self) -> i64 {
        1 << (self.level - 1)
    }
}

impl Module for LevelDecoder {
    /// # Shapes
    /// `[B, C_level, H/s, W/s]` → `[B, 3, H, W]`, s = [`LevelDecoder::stride`]
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = x.shallow_clone();
        for l in &self.layers {
            h = self
                .precision
                .conv2d(&l.conv, &h.reflection_pad2d([1, 1, 1, 1]), 0);
            if l.relu {
                h = h.relu();
            }
            if l.upsample {
                let (_, _, hh, ww) = h.size4().unwrap_or((0, 0, 0, 0));
                h = h.upsample_nearest2d([hh * 2, ww * 2], None, None);
            }
        }
        h.to_kind(tch::Kind::Float)
    }
}
