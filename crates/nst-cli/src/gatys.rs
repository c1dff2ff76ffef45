//! `nst-infer gatys`: style transfer or texture synthesis by optimising the pixels.
use crate::common::{self, RuntimeArgs, VggArgs};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use nst_core::ImageSize;
use nst_optim::gatys::tiled;
use nst_optim::{GatysConfig, Init, OptimizerKind};
use nst_vgg::{Pooling, Tap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

fn reg_note(t: &nst_optim::LossTerms) -> String {
    if t.reg != 0.0 {
        format!(", matting {:.3e}", t.reg)
    } else {
        String::new()
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OptimizerArg {
    /// L-BFGS with a strong-Wolfe line search and scale-free stop tests (default).
    Lbfgs,
    /// PyTorch's torch.optim.LBFGS without line search (fixed step, absolute
    /// stop tests; may stop after a few evaluations on a large loss).
    LbfgsParity,
    /// Adam on the pixels.
    Adam,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum InitArg {
    Content,
    Noise,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PoolingArg {
    Avg,
    Max,
}

/// Gatys et al.: optimise the output's pixels so its VGG features match the
/// content image and its Gram matrices match the style image.
///
/// Without --content this is texture synthesis: the output starts from noise
/// and matches the style's Gram matrices only.
///
/// Examples:
///   nst-infer gatys --content photo.jpg --style painting.jpg --out out.png
///   nst-infer gatys --style brick.png --out texture.png --out-size 512x256 --seed 3
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct GatysArgs {
    /// Content image (omit for texture synthesis).
    #[arg(long, value_name = "PATH")]
    pub content: Option<PathBuf>,
    /// Style image (or texture exemplar).
    #[arg(long, value_name = "PATH")]
    pub style: PathBuf,
    /// Output image; the format follows the extension (.png, .jpg, …). Written atomically.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Working size of the content (and style) image: long side in px, WxH, or "original".
    #[arg(long, default_value = "512")]
    pub size: ImageSize,
    /// Size of the style image, if different from --size.
    #[arg(long)]
    pub style_size: Option<ImageSize>,
    /// Texture mode: output size (WxH or long side); defaults to the style's working size.
    #[arg(long)]
    pub out_size: Option<ImageSize>,
    /// Weight of the content loss (MSE of features at the content layers).
    #[arg(long, default_value_t = 1.0)]
    pub content_weight: f64,
    /// Weight of the style loss (MSE of Gram matrices FᵀF/(C·H·W), summed over the style layers).
    #[arg(long, default_value_t = 1e3)]
    pub style_weight: f64,
    /// Weight of the total-variation smoothness term.
    #[arg(long, default_value_t = 0.0)]
    pub tv_weight: f64,
    /// Content layers, comma-separated (conv1_1 … relu5_4, pool1 … pool5).
    #[arg(long, default_value = "relu4_2")]
    pub content_layers: String,
    /// Style layers, comma-separated.
    #[arg(long, default_value = "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1")]
    pub style_layers: String,
    /// Optional per-style-layer weights, comma-separated (default: 1 each).
    #[arg(long, value_delimiter = ',')]
    pub style_layer_weights: Vec<f64>,
    /// Function evaluations (L-BFGS) or steps (Adam).
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
    /// Optimiser: `lbfgs` has a strong-Wolfe line search and stops early only
    /// by scale-free tests (and says so); `lbfgs-parity` is torch.optim.LBFGS
    /// without line search, for comparisons with PyTorch scripts.
    #[arg(long, value_enum, default_value = "lbfgs")]
    pub optimizer: OptimizerArg,
    /// Step size (default 1.0 for L-BFGS, 0.02 for Adam on [0, 1] pixels).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Starting image (default: content, or noise in texture mode).
    #[arg(long, value_enum)]
    pub init: Option<InitArg>,
    /// Photorealism (Luan et al. 2017): add λ·Tr(XᵀLX), with L the matting
    /// Laplacian of the content image (Levin et al., 3×3 windows, ε = 1e-7),
    /// which penalises colours that are not locally affine in the content's.
    /// Try 1e3–1e4 with a photo as style. The slow baseline of `nst-infer puy-perez --photoreal`.
    #[arg(long, value_name = "LAMBDA")]
    pub photoreal_weight: Option<f64>,
    /// Pooling in VGG; average pooling gives smoother results (Gatys et al.).
    #[arg(long, value_enum, default_value = "avg")]
    pub pooling: PoolingArg,
    #[command(flatten)]
    pub vgg: VggArgs,
    #[command(flatten)]
    pub tiles: common::TileArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

pub fn run(args: GatysArgs) -> Result<()> {
    // Cheap checks first, so a typo fails in milliseconds, not after minutes.
    common::check_output(&args.out)?;
    if args.content.is_none() && matches!(args.init, Some(InitArg::Content)) {
        bail!("--init content needs --content");
    }
    if let Some(l) = args.photoreal_weight {
        if args.content.is_none() {
            bail!("--photoreal-weight needs --content (the matting Laplacian is the content's)");
        }
        if !(l.is_finite() && l >= 0.0) {
            bail!("--photoreal-weight must be a non-negative number, got {l}");
        }
    }
    let device = args.runtime.init()?;
    let pooling = match args.pooling {
        PoolingArg::Avg => Pooling::Avg,
        PoolingArg::Max => Pooling::Max,
    };
    let vgg = args.vgg.load(pooling, device, args.runtime.precision)?;
    let content_layers =
        Tap::parse_list(&args.content_layers, vgg.arch()).context("--content-layers")?;
    let style_layers = Tap::parse_list(&args.style_layers, vgg.arch()).context("--style-layers")?;

    let content = match &args.content {
        Some(p) => Some(common::load(p, args.size, device, "content")?),
        None => None,
    };
    let style = common::load(
        &args.style,
        args.style_size.unwrap_or(args.size),
        device,
        "style",
    )?;
    let (height, width) = match (&content, args.out_size) {
        (Some(c), _) => (c.size()[2], c.size()[3]),
        (None, Some(s)) => {
            let (w, h) = s.resolve(style.size()[3] as u32, style.size()[2] as u32);
            (h as i64, w as i64)
        }
        (None, None) => (style.size()[2], style.size()[3]),
    };
    let size_flag = if content.is_none() && args.out_size.is_some() {
        "--out-size"
    } else {
        "--size"
    };
    if args.photoreal_weight.is_some() {
        // Luan's matting term is not tiled: the whole image must fit.
        common::fit_memory(
            nst_optim::GATYS_FOOTPRINT,
            (height, width),
            1,
            device,
            size_flag,
        )?;
    }
    let optimizer = match args.optimizer {
        OptimizerArg::Lbfgs => OptimizerKind::Lbfgs {
            lr: args.lr.unwrap_or(1.0),
        },
        OptimizerArg::LbfgsParity => OptimizerKind::LbfgsParity {
            lr: args.lr.unwrap_or(1.0),
        },
        OptimizerArg::Adam => OptimizerKind::Adam {
            lr: args.lr.unwrap_or(0.02),
        },
    };
    let init = match (args.init, &content) {
        (Some(InitArg::Noise), _) | (None, None) => Init::Noise,
        _ => Init::Content,
    };
    let cfg = GatysConfig {
        content_layers,
        style_layers,
        style_layer_weights: args.style_layer_weights.clone(),
        content_weight: args.content_weight,
        style_weight: args.style_weight,
        tv_weight: args.tv_weight,
        steps: args.steps,
        optimizer,
        init,
    };
    let scales = tiled::schedule(height, width, args.steps);
    let total: usize = scales.iter().map(|s| s.steps).sum();
    let stop = common::interrupt_flag();
    let pb = common::progress_bar(total as u64, "gatys", args.runtime.quiet);
    let start = Instant::now();
    let mut last: nst_optim::gatys::LossTerms = Default::default();
    // Three quarters of the budget for the tiles and the whole-image state,
    // a quarter for L-BFGS's history (tiled scales only).
    let budget = args.tiles.budget(device);
    let tiles = common::TileArgs {
        max_memory: budget.map(|b| b / 4 * 3),
        ..args.tiles.clone()
    };
    let sizes: Vec<(i64, i64)> = scales.iter().map(|s| (s.height, s.width)).collect();
    let plans = common::plan_scales(
        &tiles,
        args.tiles.tile.is_some() || args.tiles.max_memory.is_some(),
        nst_optim::GATYS_FOOTPRINT,
        tiled::STATE_BYTES_PER_PIXEL,
        &|h, w| {
            let photoreal = args.photoreal_weight.is_some();
            tiled::staged_reserve(&vgg, &cfg, content.is_some(), photoreal, (h, w))
        },
        &sizes,
        (tiled::HALO, tiled::ALIGN),
        device,
        args.runtime.quiet,
        size_flag,
    )?;
    let plan = |h: i64, w: i64| -> nst_optim::Result<Option<nst_tiling::Tiling>> {
        let i = scales
            .iter()
            .position(|s| (s.height, s.width) == (h, w))
            .unwrap_or(0);
        Ok(plans.get(i).copied().flatten())
    };
    let history = |px: i64| tiled::history_within(px, budget.map(|b| b / 4), 100);
    let mut done = 0usize;
    let mut scale_at = 0usize;
    let out = tiled::run_multiscale(
        &vgg,
        &cfg,
        content.as_ref(),
        &style,
        (height, width),
        plan,
        history,
        |scale, eval, t| {
            if scale != scale_at {
                scale_at = scale;
                done = pb.position() as usize;
            }
            // The lowest loss seen at the last scale is the returned image's
            // (a line search's rejected trials are higher).
            if (scale + 1 == scales.len()) && (eval == 1 || t.total() <= last.total()) {
                last = *t;
            }
            pb.set_position((done + eval) as u64);
            pb.set_message(format!(
                "{}loss {:.4e} (content {:.3e}, style {:.3e}{})",
                if scales.len() > 1 {
                    format!(
                        "scale {}/{} ({}x{}): ",
                        scale + 1,
                        scales.len(),
                        scales[scale].width,
                        scales[scale].height
                    )
                } else {
                    String::new()
                },
                t.total(),
                t.content,
                t.style,
                reg_note(t)
            ));
            !stop.load(Ordering::SeqCst)
        },
        args.photoreal_weight,
    );
    common::end_tiles();
    pb.finish_and_clear();
    let out = out.map_err(|e| match e {
        nst_optim::Error::Interrupted => anyhow::anyhow!("interrupted; no output written"),
        e => e.into(),
    })?;
    let (out, reports) = out;
    nst_core::save_image(&out, &args.out)?;
    for r in &reports {
        if let Some(note) = r.report.and_then(|l| l.early_stop_note(r.scale.steps)) {
            eprintln!("warning: {note}");
        }
    }
    if reports.len() > 1 && !args.runtime.quiet {
        for r in &reports {
            let how = match &r.tiling {
                Some(t) => format!(
                    "in {} tiles of at most {} px",
                    t.grid(r.scale.height, r.scale.width)
                        .map(|g| g.len())
                        .unwrap_or(0),
                    t.tile
                ),
                None => "whole".into(),
            };
            eprintln!(
                "  scale {}x{}: {} evaluations {how}, {:.1} s",
                r.scale.width,
                r.scale.height,
                r.report.map_or(r.scale.steps, |l| l.evals),
                r.seconds
            );
        }
    }
    if !args.runtime.quiet {
        eprintln!(
            "wrote {} ({}x{}) in {:.1} s on {:?}; final loss {:.4e} (content {:.3e}, style {:.3e}{})",
            args.out.display(),
            width,
            height,
            start.elapsed().as_secs_f64(),
            device,
            last.total(),
            last.content,
            last.style,
            reg_note(&last)
        );
    }
    Ok(())
}
