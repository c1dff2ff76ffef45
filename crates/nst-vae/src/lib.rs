//! Variational style transfer with an AdaIN decoder (`model.kind = "vae_adain"`).
//!
//! * **E_c**, the content encoder: the frozen VGG19 up to `relu4_1` (as AdaIN)
//!   or a trained conv encoder (`model.content_encoder = "vgg" | "learned"`).
//! * **E_s**, the variational style encoder, separate from E_c: it maps a
//!   style image to the mean μ and log-variance log σ² of a Gaussian over a
//!   code s of `model.style_dim` numbers (default 64). By default it reads the
//!   channel means and standard deviations of VGG19 `relu1_1…relu4_1`
//!   (`vgg_stats`); `conv` uses a trained strided conv net instead. Training
//!   samples s = μ + σ·ε; inference uses μ.
//! * **The decoder** mirrors VGG19 to `relu4_1` ([`nst_vgg::MirrorDecoder`], as AdaIN's). An MLP
//!   maps s to (σ̂, μ̂) for an AdaIN layer at each of its four resolutions
//!   (its input and after each upsampling):
//!   AdaIN(x) = σ̂·(x − μ(x))/σ(x) + μ̂, statistics per instance and channel
//!   over space, ε = 1e-5.
//! * **Losses** ([`VaeLoss`]), each logged: content (MSE of VGG features, to the
//!   content's or to the AdaIN target at `relu4_1`), Gram style over
//!   `relu1_1…relu4_1`, the disentanglement hinge
//!   ([`ops::disentanglement_loss`], y₂ = the next content in the batch with
//!   the same code), and KL(q(s|x) ‖ N(0, I)) with weight β, optionally
//!   annealed from 0. VGG features in the losses are divided by the weights'
//!   input gain (255 for the Caffe-style weights), so the loss weights do not
//!   depend on the preprocessing.
//!
//! The plain AdaIN baseline (Huang & Belongie 2017) is `model.kind = "adain"`
//! (`nst-adain`), built from the same decoder.

pub mod model;
pub mod ops;

pub use model::{
    mix_codes, sample_codes, ContentEncoderKind, ContentTarget, StyleEncoderKind, VaeAdainModel,
    VaeLoss, VaeModelConfig, KIND,
};
pub use model::{HALO, STRIDE};
pub use ops::{adain_with, adain_with_stats, disentanglement_loss, kl_divergence, reparameterize};

#[cfg(test)]
mod tests;

/// Peak memory per working pixel: the slope of peak RSS between 1024 and
/// 2048 px (full-width model, `golden_gate.jpg` in the style of
/// `la_muse.jpg`: 1.68 → 8.08 GB, 2,080 B/px). The slope between 256, 512
/// and 1024 px (`scripts/measure_memory.sh`, 1,450 B/px) grows with the
/// size, and a 4096² run tiled to it within `--max-memory 8G` peaked at
/// 8.65 GiB.
pub const FOOTPRINT: nst_core::Footprint = nst_core::Footprint::new("variational AdaIN", 2100);
