//! Perceptual losses on feature maps.
//!
//! * [`basic`]: content MSE, Gram-matrix style loss, total variation.
//! * [`strotss`]: the losses of Kolkin et al. (STROTSS, CVPR 2019) on sampled
//!   hypercolumns: relaxed EMD, moments, palette, self-similarity content, and
//!   their α-weighted total.
//! * [`stats`]: per-channel mean and standard deviation, and the AdaIN operator.
//! * [`matting`]: Levin et al.'s matting Laplacian, the photorealism term of
//!   Luan et al. (Gatys + λ·Tr(XᵀLX)) and of Puy–Pérez's projection.
//! * [`sampling`]: random feature locations and hypercolumn gathering, so the
//!   STROTSS losses cost O(N·M) for N and M sampled points rather than O(HW²).
//!
//! Every loss returns a scalar tensor that gradients flow through. Each is
//! checked against the independent PyTorch reference `tests/torch_ref/losses_ref.py`.

pub mod basic;
pub mod matting;
pub mod sampling;
pub mod stats;
pub mod strotss;

pub use basic::{content_loss, gram, gram_loss, gram_with, total_variation, GramNorm};
pub use sampling::{hypercolumns, hypercolumns_in_window, random_coords};
pub use strotss::{
    cosine_distance, euclidean_distance, moment_loss, palette_loss, remd, remd_loss,
    self_similarity_loss, strotss_total,
};

#[cfg(test)]
mod tests;
