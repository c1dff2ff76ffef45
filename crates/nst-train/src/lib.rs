//! The training engine, shared by every model family.
//!
//! A model implements [`TrainModel`]; the [`Trainer`] owns everything else:
//! the content and style data streams, the optimiser ([`Adam`], whose state is
//! checkpointed), atomic checkpoints with exact resume, SIGINT/SIGTERM handling,
//! NaN detection, TensorBoard logging and the progress display.

pub mod adam;
pub mod config;
pub mod logger;
pub mod trainer;

pub use adam::{Adam, AdamConfig};
// The checkpoint format and the model traits live in the model layer; they
// are re-exported here for the trainer's users.
pub use config::{DataSection, LogSection, OptimSection, TrainConfig, TrainSection};
pub use logger::{Logger, NullLogger, TensorBoard};
pub use nst_model::{
    checkpoint, Checkpoint, CheckpointMeta, ModelIdentity, StepOutput, TrainModel,
};
pub use trainer::{StepLog, TrainOutcome, Trainer, TrainerHooks};

/// Errors of the training engine; each names the key, file, step or term at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config: {0}")]
    Config(String),
    #[error("loss term {term:?} became {value} at step {step}; stopped, the last good checkpoint is kept")]
    NonFinite { step: u64, term: String, value: f64 },
    #[error("the gradients' norm became {value} at step {step} though the loss was finite; stopped, the last good checkpoint is kept")]
    NonFiniteGradient { step: u64, value: f64 },
    /// A checkpoint could not be written (a full disk, say): the run stops;
    /// the previous checkpoint is untouched.
    #[error("{cause}; training stopped at step {step}; {kept}; once there is room, continue with: nst-train --resume {run_dir}")]
    CheckpointWrite {
        step: u64,
        kept: String,
        run_dir: String,
        cause: Box<Error>,
    },
    #[error(transparent)]
    Data(#[from] nst_data::Error),
    #[error(transparent)]
    Core(#[from] nst_core::Error),
    #[error(transparent)]
    Model(#[from] nst_model::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
