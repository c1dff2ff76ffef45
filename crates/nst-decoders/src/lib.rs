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

/// The same for `adain-wct`.
pub const CLOSED_FORM_FOOTPRINT: nst_core::Footprint = nst_core::Footprint::new("AdaIN/WCT", 2700);
