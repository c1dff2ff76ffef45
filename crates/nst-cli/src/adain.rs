//! `nst-infer adain`: stylise with a decoder trained by `nst-train` (model.kind = "adain").
use crate::common::{self, RuntimeArgs};
use anyhow::Result;
use clap::Args;
use nst_core::ImageSize;
use std::path::PathBuf;

/// AdaIN (Huang & Belongie): one forward pass with a trained decoder.
///
/// Example:
///   nst-infer adain --checkpoint checkpoints/smoke --content photo.jpg --style painting.jpg --out out.png
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct AdainArgs {
    /// A run folder (uses its `latest`), a step_XXXXXXX.json or its .safetensors.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: PathBuf,
    #[arg(long, value_name = "PATH")]
    pub content: PathBuf,
    #[arg(long, value_name = "PATH")]
    pub style: PathBuf,
    /// Output image, written atomically.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Long side of the content (and style) in px, WxH, or "original". Multiples of 8 avoid edge crops.
    #[arg(long, default_value = "512")]
    pub size: ImageSize,
    /// Style strength in [0, 1]: blends the AdaIN target with the content features.
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    #[command(flatten)]
    pub tiles: common::TileArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

pub fn run(args: AdainArgs) -> Result<()> {
    common::check_output(&args.out)?;
    if !(0.0..=1.0).contains(&args.alpha) {
        anyhow::bail!("--alpha must be in [0, 1], got {}", args.alpha);
    }
    let device = args.runtime.init()?;
    let nst_model::Loaded { model, meta, .. } =
        nst_model::load::<nst_adain::AdainModel>(&args.checkpoint, device, args.runtime.precision)?;
    // Whole images stay on the CPU; tiles go to the device.
    let load = |p: &PathBuf, role: &str| -> Result<tch::Tensor> {
        let x = common::load(p, args.size, tch::Device::Cpu, role)?;
        // The decoder upsamples by 8: crop to a multiple of 8.
        let (h, w) = (x.size()[2] / 8 * 8, x.size()[3] / 8 * 8);
        Ok(x.narrow(2, 0, h).narrow(3, 0, w))
    };
    let c = load(&args.content, "content")?;
    let plan = args.tiles.plan(
        nst_adain::FOOTPRINT,
        (c.size()[2], c.size()[3]),
        nst_adain::HALO,
        nst_adain::STRIDE,
        device,
        args.runtime.quiet,
    )?;
    let s = load(&args.style, "style")?;
    let out = model
        .stylize_tiled(&c, &s, args.alpha, plan.tiling())?
        .clamp(0.0, 1.0);
    common::end_tiles();
    nst_core::save_image(&out, &args.out)?;
    if !args.runtime.quiet {
        eprintln!(
            "wrote {} (step {} of run {:?})",
            args.out.display(),
            meta.step,
            meta.run_name().unwrap_or_default()
        );
    }
    Ok(())
}
