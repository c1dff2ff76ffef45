//! Optimisation-based style transfer and texture synthesis: methods that
//! optimise the pixels of one image against losses on a fixed VGG.
//!
//! * [`gatys`]: Gatys, Ecker and Bethge (2015/2016): content + Gram style loss,
//!   and texture synthesis from noise.
//! * [`strotss`]: Kolkin et al. (2019): relaxed optimal transport and
//!   self-similarity, multi-scale, optionally guided by region masks ([`masks`]).
//! * [`lbfgs`]: limited-memory BFGS on tensors (tch ships none).

pub mod gatys;
/// L-BFGS lives below the methods, in `nst-solvers`.
pub use nst_solvers::lbfgs;
pub mod masks;
pub mod strotss;

pub use gatys::{Gatys, GatysConfig, Init, LossTerms, OptimizerKind, Regularizer};
pub use lbfgs::{Lbfgs, LbfgsReport, StopReason};
pub use masks::{load_guidance, MaskMatch};
pub use nst_vgg::Tap;
pub use strotss::{Guidance, Strotss, StrotssConfig, StrotssOptimizer, StrotssTerms, StyleInput};

/// Errors of the optimisation methods.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Vgg(#[from] nst_vgg::Error),
    #[error("invalid setting: {0}")]
    Config(String),
    #[error("the loss became {value} at evaluation {eval} ({term}); try a lower learning rate or weights")]
    NonFinite {
        eval: usize,
        term: String,
        value: f64,
    },
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Core(#[from] nst_core::Error),
    #[error(transparent)]
    Tiling(#[from] nst_tiling::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod precision_tests;
#[cfg(test)]
mod strotss_tests;
#[cfg(test)]
mod strotss_tiled_tests;
#[cfg(test)]
mod tiled_tests;

/// Peak memory per working pixel, measured by `scripts/measure_memory.sh`
/// (the larger of its slopes between 256, 512 and 1024 px).
pub const GATYS_FOOTPRINT: nst_core::Footprint = nst_core::Footprint::new("Gatys", 3800);

/// Peak memory per working pixel, measured by `scripts/measure_memory.sh`
/// (the larger of its slopes between 256, 512 and 1024 px).
pub const STROTSS_FOOTPRINT: nst_core::Footprint = nst_core::Footprint::new("STROTSS", 4100);
