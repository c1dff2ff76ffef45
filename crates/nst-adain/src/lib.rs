//! AdaIN: "Arbitrary Style Transfer in Real-time with Adaptive Instance
//! Normalization" (Huang & Belongie, ICCV 2017).
//!
//! * [`adain`]: the operator AdaIN(x, y) = σ(y)·(x − μ(x))/σ(x) + μ(y).
//! * [`Decoder`]: the mirror of VGG19 up to `relu4_1` (nearest upsampling,
//!   reflection-padded 3×3 convs), mapping features back to RGB.
//! * [`AdainModel`]: frozen VGG19 encoder + trained decoder, with the paper's
//!   losses; `model.kind = "adain"` in `nst-train` configs.

pub mod model;
/// The operator lives with the other feature statistics, in `nst-losses`.
pub use nst_losses::stats as ops;

pub use model::{decoder, AdainLoss, AdainModel, AdainModelConfig, Decoder, HALO, KIND, STRIDE};
pub use ops::{adain, mean_std};

#[cfg(test)]
mod tests;

/// Peak memory per working pixel, measured by `scripts/measure_memory.sh`
/// (the larger of its slopes between 256, 512 and 1024 px).
pub const FOOTPRINT: nst_core::Footprint = nst_core::Footprint::new("AdaIN", 1600);
