//! Puy and Pérez's flexible convolutional solver (arXiv 1806.05285): an
//! unrolled, learned gradient descent for style transfer ([`model`],
//! [`net`]), and its photorealistic mode: a projection onto the smooth
//! eigenspace of the content's matting Laplacian ([`matting`],
//! [`projection`], [`photoreal`]), added at run time without retraining.
/// The matting Laplacian lives with the losses (Luan's term uses it too).
pub use nst_losses::matting;
pub mod model;
pub mod net;
pub mod photoreal;
pub mod projection;

pub use matting::MattingLaplacian;
pub use model::{FlexibleSolver, PuyConfig, PuyLossConfig, StyleLoss, KIND};
pub use photoreal::{PhotorealOptions, PhotorealProjection};
pub use projection::{Band, BandlimitedProjection};

#[cfg(test)]
mod tests;

/// Peak memory per working pixel, measured by `scripts/measure_memory.sh`
/// (the larger of its slopes between 256, 512 and 1024 px): artistic …
pub const FOOTPRINT: nst_core::Footprint = nst_core::Footprint::new("the Puy–Pérez solver", 1400);

/// … and photoreal (with the matting-Laplacian projection).
pub const PHOTOREAL_FOOTPRINT: nst_core::Footprint =
    nst_core::Footprint::new("the photorealistic Puy–Pérez solver", 1250);
