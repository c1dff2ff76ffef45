//! `nst-infer puy-perez`: the flexible solver of Puy and Pérez, artistic or
//! (with --photoreal, same weights) photorealistic.
use crate::common::{self, RuntimeArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use nst_core::ImageSize;
use nst_model::Model;
use nst_puy::{Band, FlexibleSolver, PhotorealOptions, PhotorealProjection};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Tensor;

/// Puy & Pérez's flexible solver: N learned gradient-descent updates
/// X⁽ᵗ⁺¹⁾ = X⁽ᵗ⁾ − g_t(X⁽ᵗ⁾) from the content image, for any style image.
///
/// With --photoreal the same trained network gives a photorealistic transfer:
/// every update is projected onto span(U_k), the k smoothest eigenvectors of
/// the content's matting Laplacian, so the output's colours stay locally
/// affine in the content's (edges stay crisp, no painterly distortion).
/// Train the network with nst-train --config configs/puy_perez.toml.
///
/// Large outputs run tile by tile (--tile, --max-memory; automatic when the
/// whole image does not fit): each update's Gram matrices are summed over the
/// whole image, so the result is the untiled one up to rounding. The photoreal
/// projection works on a small grid and runs on the whole image.
///
/// Examples:
///   nst-infer puy-perez --checkpoint checkpoints/puy_perez --content c.jpg --style painting.jpg --out o.png
///   nst-infer puy-perez --checkpoint ck --content c.jpg --style photo.jpg --photoreal --k 1000 --out o.png
///   nst-infer puy-perez --checkpoint ck --content c.jpg --style s.jpg --save-steps --report-loss --out o.png
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct PuyArgs {
    /// A puy_perez run folder (its `latest`), step_XXXXXXX.json or weights file.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: PathBuf,
    /// Content image (X⁽⁰⁾); for --photoreal, also the guide of the matting Laplacian.
    #[arg(long, value_name = "PATH")]
    pub content: PathBuf,
    /// Style image: a painting, or a photo for --photoreal. Any style works; the network is not per-style.
    #[arg(long, value_name = "PATH")]
    pub style: PathBuf,
    /// Output image (written atomically; the format follows the extension).
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Working size of the content: long side in px, WxH, or "original".
    #[arg(long, default_value = "512")]
    pub size: ImageSize,
    /// Size of the style image (default: --size).
    #[arg(long)]
    pub style_size: Option<ImageSize>,
    /// Updates to run (default: all the network was trained with).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Photorealistic mode: project every update onto the smooth subspace of
    /// the content's matting Laplacian (no retraining).
    #[arg(long)]
    pub photoreal: bool,
    /// Photoreal band: keep the k eigenvectors with the smallest eigenvalues
    /// (counted on the projection grid, see --proj-size).
    #[arg(long, default_value_t = 1000, conflicts_with = "cutoff")]
    pub k: usize,
    /// Photoreal band as a cutoff eigenvalue, a fraction of λ_max (instead of --k).
    #[arg(long, value_name = "FRACTION")]
    pub cutoff: Option<f64>,
    /// Longer side of the grid the projection is computed on; the result is
    /// brought back to full size by a guided filter on the content image.
    /// Larger is more faithful and slower.
    #[arg(long, default_value_t = 128)]
    pub proj_size: i64,
    /// Chebyshev degree of the low-pass filter (products with L per projection).
    #[arg(long, default_value_t = 100)]
    pub proj_degree: usize,
    /// Also write X⁽¹⁾ … X⁽ᴺ⁾ as <out>_step<t>.<ext>.
    #[arg(long)]
    pub save_steps: bool,
    /// Print Gatys's loss L (the training objective) of X⁽⁰⁾ and of the output.
    #[arg(long)]
    pub report_loss: bool,
    #[command(flatten)]
    pub tiles: common::TileArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Whole-image bytes per pixel of a tiled run besides the tiles: the
/// iterates X⁽⁰⁾ … X⁽ˢᵗᵉᵖˢ⁾ and the update being assembled (fp32 RGB, 12 B
/// each), and for --photoreal the guided upsampling's full-size maps (the
/// guide, its 3 × 3 coefficient maps and offsets, about 80 B).
fn state_bytes(steps: usize, photoreal: bool) -> u64 {
    12 * (steps as u64 + 2) + if photoreal { 80 } else { 0 }
}

fn step_path(out: &Path, t: usize) -> PathBuf {
    let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    let ext = out.extension().and_then(|s| s.to_str()).unwrap_or("png");
    out.with_file_name(format!("{stem}_step{t}.{ext}"))
}

pub fn run(args: PuyArgs) -> Result<()> {
    common::check_output(&args.out)?;
    if let Some(f) = args.cutoff {
        if !(f > 0.0 && f < 1.0) {
            bail!("--cutoff must be in (0, 1), got {f}");
        }
    }
    if args.k == 0 {
        bail!("--k must be at least 1");
    }
    let device = args.runtime.init()?;
    let solver = FlexibleSolver::from_checkpoint(&args.checkpoint, device, args.runtime.precision)
        .with_context(|| format!("loading {}", args.checkpoint.display()))?;
    let steps = args.steps.unwrap_or(solver.steps());
    if steps == 0 || steps > solver.steps() {
        bail!(
            "--steps must be in 1..={} (the updates this network was trained with), got {steps}",
            solver.steps()
        );
    }
    let content = common::load(&args.content, args.size, device, "content")?;
    let footprint = if args.photoreal {
        nst_puy::PHOTOREAL_FOOTPRINT
    } else {
        nst_puy::FOOTPRINT
    };
    let style = common::load(
        &args.style,
        args.style_size.unwrap_or(args.size),
        device,
        "style",
    )?;
    let (h, w) = (content.size()[2], content.size()[3]);
    let min = solver.min_side();
    if h.min(w) < min {
        bail!("the content is {w}×{h} at --size; the solver needs at least {min}×{min}");
    }
    // No reserve for the staged path: at 4096² in 8G it cost more (smaller
    // tiles, less room to keep pass 1's maps) than its halo saved (55 s
    // against 45 s). It still runs when --tile leaves room.
    let plan = args.tiles.plan_with_state(
        footprint,
        state_bytes(steps, args.photoreal),
        None,
        (h, w),
        solver.tile_halo(),
        solver.tile_align(),
        device,
        args.runtime.quiet,
    );
    let tiling = match plan {
        Ok(p) => p.tiling().copied(),
        Err(e) => {
            if args.tiles.tile.is_none() && args.tiles.max_memory.is_none() {
                // Not even tiles fit: the whole-image check names a size that does.
                common::ensure_fits(footprint, &content, device, "--size")?;
            }
            return Err(e);
        }
    };
    if tiling.is_some() && args.report_loss {
        bail!("--report-loss evaluates the VGG loss on the whole image, which is tiled here: drop it, or use a smaller --size");
    }
    let start = Instant::now();
    let projection = if args.photoreal {
        let opts = PhotorealOptions {
            band: match args.cutoff {
                Some(f) => Band::Fraction(f),
                None => Band::Count(args.k),
            },
            work_side: args.proj_size,
            degree: args.proj_degree,
            ..Default::default()
        };
        let t = Instant::now();
        let p = PhotorealProjection::new(&content, opts)?;
        if !args.runtime.quiet {
            eprintln!(
                "photoreal: matting Laplacian on a {}x{} grid, cutoff λ = {:.3e} (λ_max ≤ {}), degree {}, prepared in {:.2} s",
                p.work_size.1,
                p.work_size.0,
                p.projection.cutoff,
                p.projection.lambda_max,
                p.projection.degree,
                t.elapsed().as_secs_f64()
            );
        }
        Some(p)
    } else {
        None
    };
    let project = projection
        .as_ref()
        .map(|p| move |x: &Tensor| p.apply_image(x));
    let project = project.as_ref().map(|f| f as &dyn Fn(&Tensor) -> Tensor);
    let xs = match &tiling {
        Some(t) => solver.run_tiled(&content, &style, steps, project, t),
        None => solver.run(&content, &style, steps, project),
    };
    common::end_tiles();
    let xs = xs?;
    let elapsed = start.elapsed().as_secs_f64();
    let out = xs.last().expect("X(0) at least").clamp(0.0, 1.0);
    if args.save_steps {
        for (t, x) in xs.iter().enumerate().skip(1) {
            nst_core::save_image(&x.clamp(0.0, 1.0), step_path(&args.out, t))?;
        }
    }
    nst_core::save_image(&out, &args.out)?;
    if !args.runtime.quiet {
        eprintln!(
            "wrote {} ({w}x{h}, {steps} steps{}) in {elapsed:.2} s on {device:?}",
            args.out.display(),
            if args.photoreal { ", photoreal" } else { "" },
        );
    }
    if args.report_loss {
        let loss = &solver.loss;
        let targets = loss.targets(&content, &style)?;
        let report = |x: &Tensor| -> Result<(f64, f64, f64)> {
            let t = tch::no_grad(|| loss.terms(x, &targets))?;
            Ok((
                loss.total(&t).double_value(&[]),
                t.content.double_value(&[]) * loss.content_weight,
                t.style.double_value(&[]) * loss.style_weight,
            ))
        };
        for (name, x) in [("X(0) = content", &content), ("output", &out)] {
            let (l, c, s) = report(x)?;
            println!("{name:>15}: L = {l:.4e} (content {c:.3e}, style {s:.3e})");
        }
        if let Some(p) = &projection {
            let l = &p.projection.laplacian;
            let (wh, ww) = p.work_size;
            let q = |x: &Tensor| l.quadratic_form(&x.adaptive_avg_pool2d([wh, ww]).squeeze_dim(0));
            println!(
                "Tr(XᵀLX) on the projection grid: content {:.4e}, output {:.4e}",
                q(&content),
                q(&out)
            );
        }
    }
    Ok(())
}
