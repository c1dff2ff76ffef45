//! Multi-level VGG19 decoders and the training-free transfers built on them.
//!
//! * [`LevelDecoder`]: one decoder per level `relu1_1 … relu5_1`, mirroring
//!   VGG19 up to that level (nearest upsampling, reflection-padded 3×3 convs).
//!   `nst-train` trains them together (`model.kind = "decoders"`) with, per
//!   level L and image x,
//!   `pixel_weight·‖D_L(φ_L(x)) − x‖²/n + feature_weight·‖φ_L(D_L(φ_L(x))) − φ_L(x)‖²/m`
//!   (means over elements; φ_L the frozen VGG19 to `reluL_1`, divided by the
//!   weights' input gain).
//! * [`optimal_textures`]: Risser, Rousselle, Kan and Sloan, "Optimal Textures"
//!   (arXiv 2010.14702). Coarse to fine over a pyramid and deep to shallow over
//!   the levels: encode, match the feature distribution to the style's by
//!   sliced optimal transport ([`transforms::sliced_ot`]: random rotation,
//!   exact 1-D histogram matching per dimension, rotation back, N passes),
//!   optionally in a PCA subspace, or by closed-form mean/covariance matching;
//!   mix in the content's features for style transfer; decode.
//! * [`closed_form`]: AdaIN and WCT with the same decoders.

pub mod decoder;
pub mod model;
pub mod staged;
pub mod transforms;

pub use decoder::{level_decoder, LevelDecoder, LEVELS};
pub use model::{
    closed_form, crop_to, halo, optimal_textures, pad_to_stride, psnr_per_level, ColorMode,
    Decoders, DecodersConfig, DecodersLoss, OptexConfig, KIND, OT_FIT_BYTES, STRIDE,
    STYLE_FEATURE_BYTES_PER_PIXEL,
};
pub use transforms::{MomentMap, Strategy};

#[cfg(test)]
mod tests;

/// Peak memory per working pixel, measured by `scripts/measure_memory.sh`
/// (the larger of its slopes between 256, 512 and 1024 px).
pub const OPTEX_FOOTPRINT: nst_core::Footprint = nst_core::Footprint::new("Optimal Textures", 2950);

/// The default long side of the style images when the output is tiled.
pub const MAX_TILED_STYLE: u32 = 1024;

/// The memory plan of an Optimal Textures run besides its tiles: what it
/// keeps for the whole image per output pixel, and the style images' long
/// side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptexBudget {
    /// Whole-image state per output pixel for `nst_tiling::plan_with_state`.
    pub state_bytes_per_pixel: u64,
    /// The long side to load the style images at.
    pub style_long: u32,
}

/// Optimal Textures' memory policy for an output of `size` (h, w) with
/// `n_styles` styles. Untiled, the styles take the output's long side (or
/// `style_long`). Tiled, they are encoded whole before the tiles, and
/// their features stay beside them: unless `style_long` says otherwise,
/// encoding one takes at most a third of `budget`, its side is a multiple
/// of 16 between 64 and [`MAX_TILED_STYLE`] px, and the state counts their
/// features ([`STYLE_FEATURE_BYTES_PER_PIXEL`]) and, for sliced OT, the
/// fit of a level's map ([`OT_FIT_BYTES`]), beside the whole-image buffers.
pub fn optex_budget(
    size: (i64, i64),
    n_styles: usize,
    strategy: Strategy,
    style_long: Option<u32>,
    budget: Option<u64>,
    tiled: bool,
) -> OptexBudget {
    let px = (size.0 * size.1).max(1) as u64;
    let long = size.0.max(size.1).max(1) as u32;
    let n = n_styles.max(1) as u64;
    let side = match (style_long, tiled, budget) {
        (Some(s), _, _) => s,
        (None, false, _) => long,
        (None, true, Some(b)) => {
            let px = b / 3 / n / OPTEX_FOOTPRINT.bytes_per_pixel;
            ((px as f64).sqrt() as u32 / 16 * 16)
                .clamp(64, MAX_TILED_STYLE)
                .min(long)
        }
        (None, true, None) => MAX_TILED_STYLE.min(long),
    };
    let beside = if tiled {
        let ot = if strategy == Strategy::Cdf {
            OT_FIT_BYTES
        } else {
            0
        };
        ot + n * (side as u64).pow(2) * STYLE_FEATURE_BYTES_PER_PIXEL
    } else {
        0
    };
    OptexBudget {
        state_bytes_per_pixel: nst_tiling::WHOLE_IMAGE_BYTES_PER_PIXEL + beside.div_ceil(px),
        style_long: side,
    }
}

/// The same for `adain-wct`.
pub const CLOSED_FORM_FOOTPRINT: nst_core::Footprint = nst_core::Footprint::new("AdaIN/WCT", 2700);
