//! What every command shares: device and weights options, progress bars,
//! Ctrl-C, and one-line error reporting.
use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tch::Device;

/// Options shared by every command that runs a network.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Where to run: auto (CUDA when available, else CPU), cpu, cuda, or cuda:N.
    // Parsed in `init`, not by clap, so that a bad name is one error line
    // (exit 1) like every other bad input.
    #[arg(long, default_value = "auto", value_name = "DEVICE")]
    pub device: String,
    /// Precision of the heavy convolutions and matmuls: fp32, bf16 (CPU with
    /// AMX/AVX512-BF16, or CUDA; about 1.5-3x faster on such CPUs) or fp16
    /// (CUDA only). Statistics (Gram, covariance, AdaIN mean/std), losses and
    /// optimizer state stay in fp32.
    #[arg(long, default_value = "fp32", value_name = "P")]
    pub precision: nst_core::Precision,
    /// Seed for every random choice (noise, sampling), so runs are reproducible.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Hide the progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

impl RuntimeArgs {
    /// Parses the device, checks that it can run `--precision`, and seeds LibTorch.
    pub fn init(&self) -> Result<Device> {
        let device = self.device.parse::<nst_core::DeviceSpec>()?.resolve()?;
        self.precision.check(device)?;
        nst_core::seed_everything(self.seed);
        Ok(device)
    }
}

/// Options for outputs larger than memory allows (docs/high-resolution.md).
#[derive(Debug, Clone, Args)]
pub struct TileArgs {
    /// Work tile by tile, each at most SIZE px square with its halo (the
    /// context around it). Statistics are still those of the whole image,
    /// so the result matches the untiled one. Default: the whole image when
    /// it fits in memory, else the largest tile that fits (with a note).
    #[arg(long, value_name = "SIZE")]
    pub tile: Option<i64>,
    /// The memory this run may use, e.g. 3G or 512M (powers of 1024).
    /// Default: what is available now (on the CPU; no limit on CUDA).
    #[arg(long, value_name = "SIZE", value_parser = nst_tiling::parse_bytes)]
    pub max_memory: Option<u64>,
}

impl TileArgs {
    /// Decides whether and how to tile `(height, width)` for the work `fp`
    /// (whose tiles need `halo` px of context and boundaries on multiples of
    /// `align`), printing a one-line note when tiling was chosen for the user.
    pub fn plan(
        &self,
        fp: nst_core::Footprint,
        dims: (i64, i64),
        halo: i64,
        align: i64,
        device: Device,
        quiet: bool,
    ) -> Result<nst_tiling::Plan> {
        let state = nst_tiling::WHOLE_IMAGE_BYTES_PER_PIXEL;
        self.plan_with_state(fp, state, None, dims, halo, align, device, quiet)
    }

    /// The memory budget: --max-memory, else what is available now (on
    /// the CPU; no limit on CUDA).
    pub fn budget(&self, device: Device) -> Option<u64> {
        let skip = std::env::var(nst_core::memory::SKIP_ENV).is_ok_and(|v| v == "1");
        self.max_memory.or_else(|| {
            (device == Device::Cpu && !skip)
                .then(nst_core::memory::available_cpu_bytes)
                .flatten()
        })
    }

    /// [`TileArgs::plan`] for work that keeps `state` bytes per pixel of
    /// whole-image state while it tiles (an optimiser's), and whose staged
    /// path needs `reserve` bytes of whole maps (see
    /// [`nst_tiling::plan_with_state`]).
    #[allow(clippy::too_many_arguments)]
    pub fn plan_with_state(
        &self,
        fp: nst_core::Footprint,
        state: u64,
        reserve: Option<u64>,
        (height, width): (i64, i64),
        halo: i64,
        align: i64,
        device: Device,
        quiet: bool,
    ) -> Result<nst_tiling::Plan> {
        let budget = self.budget(device);
        let plan = nst_tiling::plan_with_state(
            &fp,
            state,
            reserve,
            (height, width),
            halo,
            align,
            self.tile,
            budget,
        )?;
        if plan.tiling().is_some() && !quiet {
            // A bar over each pass's tiles, cleared by `end_tiles`.
            let pb = ClearOnDrop(progress_bar(0, "tiles", false));
            nst_tiling::set_progress(Some(std::sync::Arc::new(move |pass, done, total| {
                let pb = &pb.0;
                pb.set_length(total as u64);
                pb.set_position(done as u64);
                pb.set_message(pass);
                if done == total {
                    pb.reset_eta();
                }
            })));
        }
        if let nst_tiling::Plan::Tiled { tiling, auto: true } = &plan {
            if !quiet {
                let n = tiling.grid(height, width).map(|g| g.len()).unwrap_or(0);
                let staged = reserve.is_some_and(|r| tiling.cache_bytes.is_some_and(|c| c >= r));
                eprintln!(
                    "note: {width}x{height} does not fit in {:.1}G at once; working in {n} tiles of at most {} px{} (set --tile or --max-memory to choose)",
                    budget.unwrap_or(0) as f64 / (1u64 << 30) as f64,
                    tiling.tile,
                    if staged { ", the deep layers whole" } else { "" }
                );
            }
        }
        Ok(plan)
    }
}

/// Plans every scale of a coarse-to-fine run before any of them runs, so
/// that work which cannot fit is refused before it starts: for each
/// `(height, width)` in `sizes` (the output's last), whole (`None`) or tiled.
/// A `--tile` larger than a coarse scale runs that scale whole (at the
/// output's size it is the user's error). When not even tiles fit the
/// output and the user set neither option, the whole-image check's error
/// names a size that would fit (`user_chose`: the user set `--tile` or
/// `--max-memory`; `tiles` may carry a share of the budget instead).
#[allow(clippy::too_many_arguments)]
pub fn plan_scales(
    tiles: &TileArgs,
    user_chose: bool,
    fp: nst_core::Footprint,
    state: u64,
    reserve: &dyn Fn(i64, i64) -> Option<u64>,
    sizes: &[(i64, i64)],
    (halo, align): (i64, i64),
    device: Device,
    quiet: bool,
    size_flag: &str,
) -> Result<Vec<Option<nst_tiling::Tiling>>> {
    let Some(&output) = sizes.last() else {
        return Ok(Vec::new());
    };
    let mut plans = Vec::with_capacity(sizes.len());
    for &(h, w) in sizes.iter().rev() {
        let coarse = (h, w) != output;
        let t = TileArgs {
            tile: tiles.tile.filter(|&t| !coarse || t < h.max(w)),
            ..tiles.clone()
        };
        match t.plan_with_state(fp, state, reserve(h, w), (h, w), halo, align, device, quiet) {
            Ok(p) => plans.push(p.tiling().copied()),
            Err(e) if !coarse && !user_chose => {
                fit_memory(fp, output, 1, device, size_flag)?;
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    }
    plans.reverse();
    Ok(plans)
}

struct ClearOnDrop(ProgressBar);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Clears the tiles' progress bar, if [`TileArgs::plan`] showed one.
pub fn end_tiles() {
    nst_tiling::set_progress(None);
}

/// Where the VGG weights come from.
#[derive(Debug, Clone, Args)]
pub struct VggArgs {
    /// VGG weights (.safetensors from scripts/convert_vgg.py). Default:
    /// $NST_VGG_WEIGHTS, else checkpoints/vgg19.safetensors (made by scripts/setup.sh).
    #[arg(long, value_name = "PATH")]
    pub weights: Option<PathBuf>,
}

impl VggArgs {
    /// Loads the VGG, running its convolutions at `precision`.
    pub fn load(
        &self,
        pooling: nst_vgg::Pooling,
        device: Device,
        precision: nst_core::Precision,
    ) -> Result<nst_vgg::Vgg> {
        let path = match &self.weights {
            Some(p) => p.clone(),
            None => nst_vgg::default_weights_path()?,
        };
        let vgg = nst_vgg::Vgg::load(&path, nst_vgg::VggOptions { pooling, device })?
            .with_precision(precision)?;
        Ok(vgg)
    }
}

/// A progress bar on stderr (hidden when `quiet` or when stderr is not a terminal).
pub fn progress_bar(len: u64, prefix: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{prefix:>8} [{elapsed_precise}] {wide_bar:.cyan/blue} {pos}/{len} {msg} (ETA {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    pb.set_prefix(prefix.to_string());
    pb.enable_steady_tick(Duration::from_millis(500));
    pb
}

/// A flag set by the first Ctrl-C (SIGINT) or SIGTERM; a second one exits at once.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            eprintln!("\nerror: interrupted twice, exiting now");
            std::process::exit(130);
        }
        eprintln!("\ninterrupt received: stopping at the next step (Ctrl-C again to exit at once)");
    });
    flag
}

/// Runs a command's body and turns any error into one `error: …` line and exit code 1
/// (130 after an interrupt). A panic inside LibTorch is reported the same way.
/// It first configures the binaries' allocator ([`nst_core::alloc::configure_allocator`]).
pub fn run_main(body: impl FnOnce() -> Result<()>) -> std::process::ExitCode {
    nst_core::alloc::configure_allocator();
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        let first = msg.lines().find(|l| !l.trim().is_empty()).unwrap_or(msg);
        eprintln!("error: internal error: {first}");
    }));
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(e)) => {
            let interrupted = e.chain().any(|c| c.to_string().starts_with("interrupted"));
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            std::process::ExitCode::from(if interrupted { 130 } else { 1 })
        }
        Err(_) => std::process::ExitCode::from(101),
    }
}

/// Checks, before any long computation, that an output image path is writable
/// and has an image extension we can encode.
pub fn check_output(path: &std::path::Path) -> Result<()> {
    nst_core::check_writable(path).context("output")?;
    nst_core::image_io::output_format(path).context("output")?;
    Ok(())
}

/// Checks, before the work starts, that `batch` images of `height × width`
/// fit in the memory available now for the work `fp` measures (on the CPU;
/// see [`nst_core::memory`]). Returns the batch to use: lowered, with a note
/// on stderr, when only fewer images fit at once; an error naming a size that
/// would fit when even one does not. `flag` is the option that sets the size.
pub fn fit_memory(
    fp: nst_core::Footprint,
    (height, width): (i64, i64),
    batch: usize,
    device: Device,
    flag: &str,
) -> Result<usize> {
    let fits = fp.check(width, height, batch, device, flag)?;
    if fits < batch.max(1) {
        eprintln!(
            "note: {fits} image(s) of {width}x{height} fit in memory at once, not {batch}; running {fits} at a time"
        );
    }
    Ok(fits)
}

/// [`fit_memory`] for the one image `x: [1, 3, H, W]` a command works on.
pub fn ensure_fits(
    fp: nst_core::Footprint,
    x: &tch::Tensor,
    device: Device,
    flag: &str,
) -> Result<()> {
    fit_memory(fp, (x.size()[2], x.size()[3]), 1, device, flag).map(|_| ())
}

/// Loads an image for a command, naming its role in errors.
pub fn load(
    path: &std::path::Path,
    size: nst_core::ImageSize,
    device: Device,
    role: &str,
) -> Result<tch::Tensor> {
    nst_core::load_image(path, nst_core::LoadOptions { size, device })
        .with_context(|| format!("{role} image"))
}
