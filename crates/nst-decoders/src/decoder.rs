//! One image decoder per VGG19 level: [`nst_vgg::MirrorDecoder`] started near mid grey.
use tch::nn;

/// The VGG19 levels the decoders invert: `relu1_1 … relu5_1`.
pub const LEVELS: [u8; 5] = [1, 2, 3, 4, 5];

/// The decoder of one level. Input: VGG features divided by the weights'
/// input gain (see [`crate::Decoders::encode`]); output: RGB, about [0, 1].
pub type LevelDecoder = nst_vgg::MirrorDecoder;

/// The decoder of `level` at `width` (1.0 = VGG's channels).
///
/// It starts near mid grey: the default initialisation made the untrained
/// decoders' output swing by ±2–3 (pixel MSE 4–8 at relu3_1/relu4_1 at step
/// 1). Measured at width 0.25 on a smooth 64² image, mean |y − 0.5| is now
/// 0.02, 0.09, 0.18, 0.66, 0.03 at relu1_1 … relu5_1: relu4_1 still swings
/// (max 2.2), a larger scale-down there is untested.
pub fn level_decoder(vs: &nn::Path, level: u8, width: f64) -> LevelDecoder {
    nst_vgg::MirrorDecoder::new(
        vs,
        level,
        nst_vgg::MirrorOptions {
            width,
            min_channels: 4,
            input_scale: 1.0,
            grey_start: true,
        },
    )
}
