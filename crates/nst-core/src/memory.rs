//! Will a command's work fit in memory?
//!
//! On Linux an allocation that cannot be backed is not refused: the process
//! grows until the kernel's OOM killer ends it with SIGKILL, with no message
//! and after minutes of work (`nst-infer texture --size 5000` did exactly
//! that on a 24 GiB machine). So every command that sizes its work from the
//! user's options checks first, on the CPU, that its measured footprint fits
//! in the memory available now. A batch of independent images is lowered to
//! what fits; a single image that cannot fit is one error saying what size
//! would.
//!
//! Footprints are measured, not derived: `scripts/measure_memory.sh` runs
//! each command at two sizes and prints the slope of its peak resident
//! memory in bytes per pixel of one image. On CUDA no check is made
//! (LibTorch's allocator raises its own error there).
use crate::Error;
use tch::Device;

/// Setting this variable to `1` turns the check off (for when the estimate
/// is wrong for a machine, or swap is meant to be used).
pub const SKIP_ENV: &str = "NST_SKIP_MEMORY_CHECK";

/// Kept free beyond the estimate: LibTorch's own buffers, the loaded weights,
/// the image files and the allocator's slack.
const HEADROOM_BYTES: u64 = 384 << 20;
/// The estimate is a slope measured on one machine; other CPUs pick other
/// convolution algorithms with other workspaces.
const SAFETY: f64 = 1.2;

/// Memory this process may still take on the CPU: the system's available
/// memory, or what a cgroup limit leaves of it, whichever is less. `None`
/// where the platform does not say.
pub fn available_cpu_bytes() -> Option<u64> {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    let mut avail = sys.available_memory();
    if avail == 0 {
        return None;
    }
    if let Some(cg) = sys.cgroup_limits() {
        avail = avail.min(cg.free_memory);
    }
    Some(avail)
}

/// The memory a method needs per image, as measured by
/// `scripts/measure_memory.sh` (peak resident memory against pixels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// What runs, for the error message ("Gatys style transfer").
    pub what: &'static str,
    /// Bytes of peak memory per pixel of one image at the working size.
    pub bytes_per_pixel: u64,
}

impl Footprint {
    pub const fn new(what: &'static str, bytes_per_pixel: u64) -> Self {
        Self {
            what,
            bytes_per_pixel,
        }
    }

    /// Bytes one image of `width × height` takes, margin included.
    fn image_bytes(&self, width: i64, height: i64) -> f64 {
        let px = (width.max(0) as f64) * (height.max(0) as f64);
        px * self.bytes_per_pixel as f64 * SAFETY
    }

    /// The estimated memory for `images` images of `width × height`,
    /// headroom included.
    pub fn bytes(&self, width: i64, height: i64, images: usize) -> u64 {
        (self.image_bytes(width, height) * images as f64) as u64 + HEADROOM_BYTES
    }

    /// The largest batch of at most `batch` images of `width × height` that
    /// fits in `available` bytes (all of `batch` when `available` is
    /// `None`), or an error when even one image does not fit. `flag` names
    /// the option that sets the size, for the message.
    pub fn fit_batch(
        &self,
        width: i64,
        height: i64,
        batch: usize,
        available: Option<u64>,
        flag: &str,
    ) -> Result<usize, Error> {
        let batch = batch.max(1);
        let Some(avail) = available else {
            return Ok(batch);
        };
        let usable = avail.saturating_sub(HEADROOM_BYTES) as f64;
        let fits = (usable / self.image_bytes(width, height).max(1.0)) as usize;
        if fits >= 1 {
            return Ok(fits.min(batch));
        }
        // The largest image of the same aspect ratio that fits, long side.
        let max_px = usable / (self.bytes_per_pixel as f64 * SAFETY);
        let (long, short) = (width.max(height) as f64, width.min(height).max(1) as f64);
        let max_long = (max_px * long / short).sqrt();
        Err(Error::OutOfMemory {
            what: self.what.to_string(),
            width,
            height,
            need_gb: self.bytes(width, height, 1) as f64 / 1e9,
            available_gb: avail as f64 / 1e9,
            flag: flag.to_string(),
            max_long_side: max_long as u64,
        })
    }

    /// [`Footprint::fit_batch`] against the memory available now, on the CPU
    /// only and unless [`SKIP_ENV`] is set.
    pub fn check(
        &self,
        width: i64,
        height: i64,
        batch: usize,
        device: Device,
        flag: &str,
    ) -> Result<usize, Error> {
        let skip = std::env::var(SKIP_ENV).is_ok_and(|v| v == "1");
        if skip || device != Device::Cpu {
            return Ok(batch.max(1));
        }
        self.fit_batch(width, height, batch, available_cpu_bytes(), flag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: Footprint = Footprint::new("test work", 1000);
    const GB: u64 = 1_000_000_000;

    #[test]
    fn a_batch_that_fits_is_kept_and_one_that_does_not_is_lowered() {
        // 1000 x 1000 px at 1000 B/px x 1.2 = 1.2 GB per image.
        assert_eq!(
            FP.fit_batch(1000, 1000, 4, Some(10 * GB), "--size")
                .unwrap(),
            4
        );
        assert_eq!(
            FP.fit_batch(1000, 1000, 8, Some(5 * GB), "--size").unwrap(),
            3
        );
        assert_eq!(FP.fit_batch(1000, 1000, 8, None, "--size").unwrap(), 8);
        // The lowered batch really fits, one more would not.
        let b = FP.fit_batch(1000, 1000, 8, Some(5 * GB), "--size").unwrap();
        assert!(FP.bytes(1000, 1000, b) <= 5 * GB);
        assert!(FP.bytes(1000, 1000, b + 1) > 5 * GB);
    }

    #[test]
    fn an_image_that_cannot_fit_names_a_size_that_would() {
        let e = FP
            .fit_batch(8000, 4000, 1, Some(4 * GB), "--size")
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("test work at 8000x4000"), "{msg}");
        assert!(msg.contains("--size"), "{msg}");
        assert!(msg.contains(SKIP_ENV), "{msg}");
        let Error::OutOfMemory { max_long_side, .. } = e else {
            panic!("{msg}")
        };
        // The suggested size, at the same aspect ratio, fits; 5 % more does not.
        let side = max_long_side as i64;
        assert!(FP.bytes(side, side / 2, 1) <= 4 * GB, "{side}");
        let more = side * 105 / 100;
        assert!(FP.bytes(more, more / 2, 1) > 4 * GB, "{side}");
    }

    #[test]
    fn this_machine_reports_its_memory() {
        let a = available_cpu_bytes().expect("Linux reports available memory");
        assert!(a > 64 << 20, "{a}");
    }
}
