//! Puy and Pérez's flexible convolutional solver, and its photorealistic
//! mode: a projection onto the smooth eigenspace of the content's matting
//! Laplacian, added at run time.
pub mod matting;
pub mod projection;

pub use matting::MattingLaplacian;
pub use projection::{Band, BandlimitedProjection};

#[cfg(test)]
mod tests;
