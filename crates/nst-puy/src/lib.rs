//! Puy and Pérez's flexible convolutional solver (arXiv 1806.05285): an
//! unrolled, learned gradient descent for style transfer ([`model`],
//! [`net`]), and its photorealistic mode: a projection onto the smooth
//! eigenspace of the content's matting Laplacian ([`matting`],
//! [`projection`], [`photoreal`]), added at run time without retraining.
pub mod matting;
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
