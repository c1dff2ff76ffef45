//! Shared plumbing for nst: image I/O with validation, device selection,
//! seeding and atomic file writes. Model and method crates build on this.

pub mod alloc;
pub mod color;
pub mod device;
pub mod fsutil;
pub mod image_io;
pub mod integrity;
pub mod memory;
pub mod precision;

pub use color::{preserve_color, psnr};
pub use device::{parse_device, seed_everything, DeviceSpec};
pub use fsutil::{check_writable, write_atomic, write_bytes_atomic};
pub use image_io::{
    images_in, is_image_path, load_image, resize_to, save_image, ImageSize, LoadOptions,
    IMAGE_EXTENSIONS, MIN_IMAGE_SIDE,
};
pub use memory::Footprint;
pub use precision::Precision;

/// Where a data stream's next sample comes from: epoch and index into that
/// epoch's order. The loader resumes from it; checkpoints record it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    pub epoch: u64,
    pub index: u64,
}

/// Errors of the shared plumbing. Each message names the file or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: file not found")]
    NotFound { path: std::path::PathBuf },
    #[error("{path}: cannot read image: {reason}")]
    BadImage {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("{path}: image is {width}x{height}; both sides must be at least {min} px")]
    TooSmall {
        path: std::path::PathBuf,
        width: u32,
        height: u32,
        min: u32,
    },
    #[error("{path}: image is {width}x{height} ({megapixels:.0} MP), over the {limit} MP limit")]
    TooLarge {
        path: std::path::PathBuf,
        width: u32,
        height: u32,
        megapixels: f64,
        limit: u64,
    },
    #[error("{path}: cannot write: {reason}")]
    Unwritable {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("invalid device {given:?}: expected auto, cpu, cuda or cuda:N")]
    BadDevice { given: String },
    #[error("device {given} requested but CUDA is not available on this machine")]
    NoCuda { given: String },
    #[error("invalid precision {given:?}: {reason}")]
    BadPrecision { given: String, reason: String },
    #[error("{what} at {width}x{height} needs about {need_gb:.1} GB of memory, but {available_gb:.1} GB is available: use a smaller {flag} (about {max_long_side} px on the long side would fit), or set NST_SKIP_MEMORY_CHECK=1 to try anyway")]
    OutOfMemory {
        what: String,
        width: i64,
        height: i64,
        need_gb: f64,
        available_gb: f64,
        flag: String,
        max_long_side: u64,
    },
    #[error("invalid size {given:?}: {reason}")]
    BadSize { given: String, reason: String },
    /// An operator given a tensor or setting it cannot work on.
    #[error("{what}: {reason}")]
    BadInput { what: &'static str, reason: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The text of a strict weight-loading failure: `" missing [a, b]; unexpected [c]; shape mismatch [...];"`,
/// or `None` when all three lists are empty. Lists are sorted.
pub fn strict_report(
    mut missing: Vec<String>,
    mut unexpected: Vec<String>,
    mismatched: Vec<String>,
) -> Option<String> {
    if missing.is_empty() && unexpected.is_empty() && mismatched.is_empty() {
        return None;
    }
    missing.sort();
    unexpected.sort();
    let mut d = String::new();
    if !missing.is_empty() {
        d += &format!(" missing [{}];", missing.join(", "));
    }
    if !unexpected.is_empty() {
        d += &format!(" unexpected [{}];", unexpected.join(", "));
    }
    if !mismatched.is_empty() {
        d += &format!(" shape mismatch [{}];", mismatched.join("; "));
    }
    Some(d)
}
