//! Datasets and the image pipeline for training.
//!
//! * [`sources`]: the official layouts of Places365, WikiArt (ArtGAN) and DTD,
//!   and plain image folders, each read into a [`Dataset`] of paths and labels.
//! * [`pipeline`]: a [`Loader`] that decodes in parallel (rayon) ahead of the
//!   consumer (a bounded prefetch queue), resizes, crops, flips, and batches,
//!   deterministically from a seed and a resumable [`Position`]. Corrupt images
//!   are skipped, logged once and counted.

pub mod pipeline;
pub mod sources;

pub use pipeline::{Batch, Loader, LoaderStats, PipelineConfig, Position};
pub use sources::{Dataset, Sample, SourceConfig, SourceKind};

/// Errors of the data crate; each names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {reason}")]
    Layout {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("{path}:{line}: {reason}")]
    Parse {
        path: std::path::PathBuf,
        line: usize,
        reason: String,
    },
    #[error("dataset {name} has no images{hint}")]
    Empty { name: String, hint: String },
    #[error(
        "{bad} of {seen} images failed to decode ({pct:.1}% > the allowed {max:.1}%); last: {last}"
    )]
    TooManyBad {
        bad: usize,
        seen: usize,
        pct: f64,
        max: f64,
        last: String,
    },
    #[error("invalid data setting: {0}")]
    Config(String),
    #[error("the data loader stopped unexpectedly")]
    Disconnected,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
