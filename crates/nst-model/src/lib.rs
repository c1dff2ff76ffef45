//! The model layer, below every method crate and the trainer.
//!
//! - [`TrainModel`]: what the trainer drives (one step, the variables, the
//!   precision of the loss network);
//! - [`Model`]: a trained model family: its checkpoint `KIND`, its typed
//!   `[model]` and `[loss]` sections, and how it is built from them;
//! - [`load`]: the one checkpoint loader (resolve, check the kind, rebuild
//!   from the saved config, load the weights strictly, set the precision);
//! - [`checkpoint`]: the checkpoint format itself;
//! - [`Error`]: the errors of all of these, each naming the file, key or
//!   term at fault.
//!
//! Inference depends on this crate, not on the training engine.

pub mod checkpoint;
pub mod config;
mod model;

pub use checkpoint::{Checkpoint, CheckpointMeta};
pub use config::{parse_section, ModelSections};
pub use model::{
    load, sample_grid, sample_items, Loaded, Model, ModelIdentity, StepOutput, TrainModel,
};

/// Errors of the model layer and of every model family.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad `[model]` or `[loss]` value (or a training setting a model refuses).
    #[error("config: {0}")]
    Config(String),
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: String, reason: String },
    #[error(transparent)]
    Vgg(#[from] nst_vgg::Error),
    #[error(transparent)]
    Core(#[from] nst_core::Error),
    /// A model-specific failure, in the model's words.
    #[error("{0}")]
    Model(String),
    #[error(transparent)]
    Tiling(#[from] nst_tiling::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
