//! `nst-infer strotss`: STROTSS style transfer, optionally guided by region masks.
use crate::common::{self, RuntimeArgs, VggArgs};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use nst_core::ImageSize;
use nst_optim::{MaskMatch, Strotss, StrotssConfig, StyleInput, Tap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OptimizerArg {
    /// RMSprop, as the published code.
    Rmsprop,
    /// Adam (β 0.9, 0.999).
    Adam,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MaskMatchArg {
    /// Colours pair when equal within 8/255 per channel.
    Exact,
    /// Each content colour pairs with the nearest style colour.
    Nearest,
}

/// STROTSS (Kolkin et al. 2019): relaxed optimal transport of VGG hypercolumns
/// plus self-similarity, optimised coarse to fine over --scales scales.
///
/// Scales above 512 px run half the --steps of the one before (at least 10):
/// 4096 px with the defaults is 512 × 200, 1024 × 100, 2048 × 50, 4096 × 25.
/// A scale that does not fit in memory runs tile by tile (--tile, --max-memory):
/// the samples, moments and transport stay global, only the VGG passes are tiled.
///
/// Lower --alpha gives stronger stylisation (α is halved at each scale).
/// Guided mode: --content-mask and --style-mask are colour images in which
/// equal colours mark corresponding regions; each output region takes its
/// texture and colour from the matching style region.
///
/// Examples:
///   nst-infer strotss --content photo.jpg --style painting.jpg --out out.png
///   nst-infer strotss --content c.png --style s.png --content-mask c_seg.png --style-mask s_seg.png --out out.png
///   nst-infer strotss --content c.jpg --style a.jpg --style b.jpg --style-weights 0.7,0.3 --out mix.png
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct StrotssArgs {
    #[arg(long, value_name = "PATH")]
    pub content: PathBuf,
    /// Style image; repeat to mix several styles.
    #[arg(long, value_name = "PATH", required = true)]
    pub style: Vec<PathBuf>,
    /// Weights of the styles in ℓr, ℓm and ℓp (default: equal).
    #[arg(long, value_delimiter = ',')]
    pub style_weights: Vec<f64>,
    /// Output image, written atomically.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Long side of the output in px (the last scale).
    #[arg(long, default_value_t = 512)]
    pub size: u32,
    /// Content weight: the first scale's α is 16·alpha (as in the published code), halved per scale.
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    /// RMSprop learning rate, in [−1, 1] pixel space; halved at the last scale.
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// Optimiser of the image's Laplacian-pyramid coefficients.
    #[arg(long, value_enum, default_value = "rmsprop")]
    pub optimizer: OptimizerArg,
    /// Steps per scale.
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
    /// Number of scales; the long side doubles from one to the next.
    #[arg(long, default_value_t = 4)]
    pub scales: usize,
    /// Output locations sampled at every step.
    #[arg(long, default_value_t = 1024)]
    pub samples: i64,
    /// Style locations sampled once per scale.
    #[arg(long, default_value_t = 5000)]
    pub style_samples: i64,
    /// VGG layers of the hypercolumn.
    #[arg(
        long,
        default_value = "relu1_1,relu1_2,relu2_1,relu2_2,relu3_1,relu3_2,relu3_3,relu4_1,relu5_1"
    )]
    pub layers: String,
    /// Region mask of the content (guided mode).
    #[arg(long, value_name = "PATH", requires = "style_mask")]
    pub content_mask: Option<PathBuf>,
    /// Region mask of each style, in the order of --style.
    #[arg(long, value_name = "PATH", requires = "content_mask")]
    pub style_mask: Vec<PathBuf>,
    /// How mask colours are paired.
    #[arg(long, value_enum, default_value = "exact")]
    pub mask_match: MaskMatchArg,
    /// Also write each scale's result as <out>.scaleN.<ext>.
    #[arg(long)]
    pub save_scales: bool,
    #[command(flatten)]
    pub tiles: common::TileArgs,
    #[command(flatten)]
    pub vgg: VggArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

pub fn run(args: StrotssArgs) -> Result<()> {
    common::check_output(&args.out)?;
    if !args.style_weights.is_empty() && args.style_weights.len() != args.style.len() {
        bail!(
            "{} --style-weights for {} --style images",
            args.style_weights.len(),
            args.style.len()
        );
    }
    if args
        .style_weights
        .iter()
        .any(|w| !(*w >= 0.0 && w.is_finite()))
        || (!args.style_weights.is_empty() && args.style_weights.iter().sum::<f64>() <= 0.0)
    {
        bail!("--style-weights must be non-negative and not all zero");
    }
    if args.content_mask.is_some() && args.style_mask.len() != args.style.len() {
        bail!(
            "give one --style-mask per --style ({} masks for {} styles)",
            args.style_mask.len(),
            args.style.len()
        );
    }
    if args.size < 64 {
        bail!("--size must be at least 64");
    }
    let device = args.runtime.init()?;
    let vgg = args
        .vgg
        .load(nst_vgg::Pooling::Max, device, args.runtime.precision)?;
    let layers = Tap::parse_list(&args.layers, vgg.arch()).context("--layers")?;
    let content = common::load(
        &args.content,
        ImageSize::LongSide(args.size),
        device,
        "content",
    )?;
    let styles: Vec<tch::Tensor> = args
        .style
        .iter()
        .map(|p| common::load(p, ImageSize::LongSide(args.size), device, "style"))
        .collect::<Result<_>>()?;
    let weights: Vec<f64> = if args.style_weights.is_empty() {
        vec![1.0; styles.len()]
    } else {
        args.style_weights.clone()
    };
    let size_of = |t: &tch::Tensor| (t.size()[3] as u32, t.size()[2] as u32);
    let guidance = match &args.content_mask {
        Some(cm) => {
            let sm: Vec<(&std::path::Path, (u32, u32))> = args
                .style_mask
                .iter()
                .zip(&styles)
                .map(|(p, s)| (p.as_path(), size_of(s)))
                .collect();
            let mode = match args.mask_match {
                MaskMatchArg::Exact => MaskMatch::Exact,
                MaskMatchArg::Nearest => MaskMatch::Nearest,
            };
            let (g, warnings) = nst_optim::load_guidance(cm, size_of(&content), &sm, mode)?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            Some(g)
        }
        None => None,
    };
    let cfg = StrotssConfig {
        alpha: args.alpha,
        scales: args.scales,
        steps_per_scale: args.steps,
        lr: args.lr,
        optimizer: match args.optimizer {
            OptimizerArg::Rmsprop => nst_optim::StrotssOptimizer::Rmsprop,
            OptimizerArg::Adam => nst_optim::StrotssOptimizer::Adam,
        },
        output_samples: args.samples,
        style_samples: args.style_samples,
        layers,
        precision: args.runtime.precision,
        ..Default::default()
    };
    let (ch, cw) = (content.size()[2], content.size()[3]);
    let scales = cfg.schedule(ch, cw);
    let sizes: Vec<(i64, i64)> = scales.iter().map(|s| (s.height, s.width)).collect();
    let solver = Strotss::new(&vgg, cfg.clone())?;
    let plans = common::plan_scales(
        &args.tiles,
        args.tiles.tile.is_some() || args.tiles.max_memory.is_some(),
        nst_optim::STROTSS_FOOTPRINT,
        nst_optim::strotss::STATE_BYTES_PER_PIXEL,
        &|h, w| solver.staged_reserve(h, w),
        &sizes,
        (nst_optim::strotss::HALO, nst_optim::strotss::ALIGN),
        device,
        args.runtime.quiet,
        "--size",
    )?;
    let inputs: Vec<StyleInput> = styles
        .iter()
        .zip(&weights)
        .map(|(image, &weight)| StyleInput { image, weight })
        .collect();
    let stop = common::interrupt_flag();
    let start = Instant::now();
    let mut pb = common::progress_bar(scales[0].steps as u64, "scale 1", args.runtime.quiet);
    let mut cur_scale = 0;
    let mut last = Default::default();
    let plan = |h: i64, w: i64| -> nst_optim::Result<Option<nst_tiling::Tiling>> {
        let i = sizes.iter().position(|&s| s == (h, w)).unwrap_or(0);
        Ok(plans.get(i).copied().flatten())
    };
    let results = solver.run_tiled(
        &content,
        &inputs,
        guidance.as_ref(),
        plan,
        |scale, step, t| {
            if scale != cur_scale {
                pb.finish_and_clear();
                pb = common::progress_bar(
                    scales[scale].steps as u64,
                    &format!("scale {}", scale + 1),
                    args.runtime.quiet,
                );
                cur_scale = scale;
            }
            last = *t;
            pb.set_position(step as u64);
            pb.set_message(format!(
                "α {:.3} | L {:.4} (ℓc {:.4} ℓm {:.4} ℓr {:.4} ℓp {:.4})",
                cfg.alpha_at(scale),
                t.total,
                t.content,
                t.moments,
                t.remd,
                t.palette
            ));
            !stop.load(Ordering::SeqCst)
        },
    );
    common::end_tiles();
    pb.finish_and_clear();
    let results = results.map_err(|e| match e {
        nst_optim::Error::Interrupted => anyhow::anyhow!("interrupted; no output written"),
        e => e.into(),
    })?;
    if args.save_scales {
        let stem = args
            .out
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = args
            .out
            .extension()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "png".into());
        for (i, r) in results.iter().enumerate() {
            nst_core::save_image(
                r,
                args.out
                    .with_file_name(format!("{stem}.scale{}.{ext}", i + 1)),
            )?;
        }
    }
    let out = results.last().context("no scale ran")?;
    nst_core::save_image(out, &args.out)?;
    if !args.runtime.quiet && plans.iter().any(Option::is_some) {
        for (sc, p) in scales.iter().zip(&plans) {
            let how = match p {
                Some(t) => format!(
                    "in {} tiles of at most {} px",
                    t.grid(sc.height, sc.width).map(|g| g.len()).unwrap_or(0),
                    t.tile
                ),
                None => "whole".into(),
            };
            eprintln!(
                "  scale {}x{}: {} steps {how}",
                sc.width, sc.height, sc.steps
            );
        }
    }
    if !args.runtime.quiet {
        eprintln!(
            "wrote {} ({}x{}) in {:.1} s; final L {:.4} (ℓc {:.4} ℓm {:.4} ℓr {:.4} ℓp {:.4})",
            args.out.display(),
            out.size()[3],
            out.size()[2],
            start.elapsed().as_secs_f64(),
            last.total,
            last.content,
            last.moments,
            last.remd,
            last.palette
        );
    }
    Ok(())
}
