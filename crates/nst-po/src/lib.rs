//! Pseudo-optimizers for texture synthesis (Shi & Qiao, "Fast Texture
//! Synthesis via Pseudo Optimizer", CVPR 2020), with Gatys et al.'s
//! optimisation as the reference.
//!
//! * [`texture`]: the Gram texture loss L_tex over VGG19 (average pooling)
//!   `conv1_1, pool1 … pool4`, and its closed-form gradient with respect to
//!   each layer's feature map — the pseudo-optimizer's input.
//! * [`net::PoNet`]: the network that maps those gradient maps to an image
//!   update Δ, built like back-propagation through VGG (deepest layer first,
//!   upsampling towards the image, each layer's gradient added at its stride).
//! * [`PseudoOptimizer`] (`model.kind = "po"`): the image is a pre-activation
//!   z with x = sigmoid(z); z⁽⁰⁾ ~ U[−1, 1]; a stage computes
//!   z⁽ˢ⁺¹⁾ = z⁽ˢ⁾ + PO_s({∂L_tex(x⁽ˢ⁾, x̃)/∂F_l}_{l ≤ k_s}).
//!   - **PO**: one stage over all layers, trained on one target;
//!   - **AdaPO**: the same network trained over many targets, so it adapts
//!     to new ones (the target only enters through the gradients);
//!   - **ProPO**: stage s = 1 … 5 sees the first s layers (shallow to deep:
//!     `conv1_1` alone first, then `pool1`, …), so low-level statistics
//!     (colour) are matched first and the deeper, structural ones last; the
//!     loss is Σ_s λ_s S^[s](x⁽ˢ⁾), each stage judged on the layers it sees.
//!
//!   Training minimises S(x̃) = E_z Σ_s λ_s L_tex(x⁽ˢ⁾, x̃; first k_s layers) with Adam.
//! * [`baseline`]: the paper's Gatys baseline, L-BFGS on the pixels (in the same sigmoid parameterisation)
//!   from the same noise: slow, strong.
//! * [`solver`]: a trained network or Gatys, run in batches on noise for a
//!   target (what `nst-infer texture` runs).
//! * [`eval`]: the paper's quality (texture loss) and diversity
//!   (E_{i≠j} ‖F_div(x_i) − F_div(x_j)‖₁) measures, and its comparison
//!   protocol per target (what `nst-infer eval-texture` runs).

pub mod baseline;
pub mod eval;
pub mod model;
pub mod net;
pub mod solver;
pub mod texture;

pub use model::{
    stage_layer_counts, PoConfig, PoLoss, PseudoOptimizer, Run, StagedPlan, Variant, KIND,
};
pub use net::{NetShape, Norm, Padding, PoNet};
pub use solver::{Solver, Synthesis, TilePlan};
pub use texture::{TargetGrams, TextureLoss};

#[cfg(test)]
mod tests;

/// Peak memory per output pixel of one image, measured by
/// `scripts/measure_memory.sh` (the larger of its slopes between 256, 512
/// and 1024 px) of Gatys texture synthesis (autograd through VGG).
pub const GATYS_FOOTPRINT: nst_core::Footprint =
    nst_core::Footprint::new("Gatys texture synthesis", 3800);

/// The same for a learned solver with the default widths of `configs/propo.toml`.
pub const FOOTPRINT: nst_core::Footprint = nst_core::Footprint::new("a pseudo-optimizer", 3400);
