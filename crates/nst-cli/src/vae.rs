//! `nst-infer vae-adain`: stylise, interpolate styles and sample new ones with a
//! variational AdaIN model trained by `nst-train` (model.kind = "vae_adain").
use crate::common::{self, RuntimeArgs};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use nst_core::ImageSize;
use nst_model::Model;
use nst_vae::VaeAdainModel;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use tch::{Device, Tensor};

/// Variational AdaIN: one forward pass per image, with style codes you can
/// interpolate and sample.
///
/// Stylise one pair, or every content × style pair of two folders:
///   nst-infer vae-adain --checkpoint checkpoints/vae_adain --content photo.jpg --style painting.jpg --out out.png
///   nst-infer vae-adain --checkpoint ck --content-dir photos/ --style-dir paintings/ --out-dir out/
/// Interpolate in style-code space (one mix, or an 8-image strip from a to b):
///   nst-infer vae-adain interpolate --checkpoint ck --content c.jpg --style a.jpg --style b.jpg --weights 0.3,0.7 --out mix.png
///   nst-infer vae-adain interpolate --checkpoint ck --content c.jpg --style a.jpg --style b.jpg --steps 8 --out strip.png
/// New styles drawn from the prior N(0, I):
///   nst-infer vae-adain sample --checkpoint ck --content c.jpg --count 8 --seed 1 --out samples.png
#[derive(Debug, Args)]
#[command(
    verbatim_doc_comment,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct VaeArgs {
    #[command(subcommand)]
    pub action: Option<VaeAction>,
    #[command(flatten)]
    pub stylize: StylizeArgs,
}

#[derive(Debug, Subcommand)]
pub enum VaeAction {
    /// Mix the codes of several styles (--weights), or write the path from a to b as a strip (--steps).
    Interpolate(InterpolateArgs),
    /// Stylise the content with codes drawn from the prior N(0, I); writes a strip.
    Sample(SampleArgs),
}

/// What every vae-adain action needs.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A run folder (uses its `latest`), a step_XXXXXXX.json or its .safetensors.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    /// Long side of content and style in px, WxH, or "original". The output is cropped to a multiple of 8.
    #[arg(long, default_value = "512")]
    pub size: ImageSize,
    /// Keep the content's colours: the output's luminance with the content's chrominance.
    #[arg(long)]
    pub preserve_color: bool,
    #[command(flatten)]
    pub tiles: common::TileArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Args)]
pub struct StylizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, value_name = "PATH", conflicts_with = "content_dir")]
    pub content: Option<PathBuf>,
    #[arg(long, value_name = "PATH", conflicts_with = "style_dir")]
    pub style: Option<PathBuf>,
    /// Output image, written atomically.
    #[arg(long, value_name = "PATH", conflicts_with = "out_dir")]
    pub out: Option<PathBuf>,
    /// Batch mode: every image of this folder…
    #[arg(long, value_name = "DIR")]
    pub content_dir: Option<PathBuf>,
    /// …in the style of every image of this one…
    #[arg(long, value_name = "DIR")]
    pub style_dir: Option<PathBuf>,
    /// …written as <out-dir>/<content>__<style>.png.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Style strength in [0, 1]: at every AdaIN layer, alpha·(stylised features) + (1 − alpha)·(features in the content's own style).
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
}

#[derive(Debug, Args)]
pub struct InterpolateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, value_name = "PATH", required = true)]
    pub content: PathBuf,
    /// Style images (two or more with --weights; exactly two with --steps).
    #[arg(long, value_name = "PATH", required = true, num_args = 1)]
    pub style: Vec<PathBuf>,
    /// Weights of the styles' codes (normalised to sum 1; default equal).
    #[arg(long, value_delimiter = ',', conflicts_with = "steps")]
    pub weights: Vec<f64>,
    /// Write the path from the first style to the second as a strip of this many images.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Output image, written atomically.
    #[arg(long, value_name = "PATH", required = true)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, value_name = "PATH", required = true)]
    pub content: PathBuf,
    /// Number of styles to draw.
    #[arg(long, default_value_t = 8)]
    pub count: i64,
    /// Scale of the prior's standard deviation (below 1: tamer styles).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Output strip, written atomically.
    #[arg(long, value_name = "PATH", required = true)]
    pub out: PathBuf,
}

/// Loads a vae_adain checkpoint, with one clear error for any other kind.
fn load_model(args: &ModelArgs, device: Device) -> Result<VaeAdainModel> {
    let Some(path) = &args.checkpoint else {
        bail!("--checkpoint is required (a run folder of nst-train, e.g. checkpoints/vae_adain)")
    };
    Ok(VaeAdainModel::from_checkpoint(
        path,
        device,
        args.runtime.precision,
    )?)
}

/// Loads a content image on the CPU, cropped to a multiple of 8 (the
/// decoder upsamples ×8), with how to stylise it: whole, or tile by tile
/// when it does not fit in memory (or --tile asks).
fn load8(
    p: &Path,
    m: &ModelArgs,
    device: Device,
    role: &str,
) -> Result<(Tensor, nst_tiling::Plan)> {
    let x = common::load(p, m.size, Device::Cpu, role)?;
    let (h, w) = (x.size()[2] / 8 * 8, x.size()[3] / 8 * 8);
    let x = x.narrow(2, 0, h).narrow(3, 0, w);
    let plan = m.tiles.plan(
        nst_vae::FOOTPRINT,
        (h, w),
        nst_vae::HALO,
        nst_vae::STRIDE,
        device,
        m.runtime.quiet,
    )?;
    Ok((x, plan))
}

/// The mean style code μ of a style image, its statistics taken tile by
/// tile when the image does not fit in memory.
fn style_code(
    model: &VaeAdainModel,
    p: &Path,
    m: &ModelArgs,
    device: Device,
    role: &str,
) -> Result<Tensor> {
    let s = common::load(p, m.size, Device::Cpu, role)?;
    let (h, w) = (s.size()[2], s.size()[3]);
    // Whole when it fits, else tiles that fit (--tile sizes the content's).
    let tiles = common::TileArgs {
        tile: None,
        ..m.tiles.clone()
    };
    let plan = tiles.plan(
        nst_vae::FOOTPRINT,
        (h / 8 * 8, w / 8 * 8),
        nst_vae::HALO,
        nst_vae::STRIDE,
        device,
        true,
    )?;
    let code = match plan.tiling() {
        Some(t) => tch::no_grad(|| model.encode_style_tiled(&s, t))?.0,
        None => tch::no_grad(|| model.encode_style(&s.to_device(device)))?.0,
    };
    common::end_tiles();
    Ok(code)
}

/// Stylises a content loaded by [`load8`] with a style code.
fn stylize_one(
    model: &VaeAdainModel,
    (c, plan): &(Tensor, nst_tiling::Plan),
    code: &Tensor,
    alpha: f64,
) -> Result<Tensor> {
    let y = tch::no_grad(|| model.stylize_code_tiled(c, code, alpha, plan.tiling()))?;
    common::end_tiles();
    Ok(y.to_device(Device::Cpu))
}

fn finish(content: &Tensor, y: Tensor, preserve: bool) -> Tensor {
    let y = y.clamp(0.0, 1.0);
    if preserve {
        nst_core::preserve_color(content, &y)
    } else {
        y
    }
}

/// `[N, 3, H, W]` → one `[1, 3, H, N·W]` strip.
fn strip(images: &Tensor) -> Tensor {
    Tensor::cat(&images.unbind(0), 2).unsqueeze(0)
}

fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(nst_core::images_in(dir)?)
}

pub fn run(args: VaeArgs) -> Result<()> {
    match args.action {
        Some(VaeAction::Interpolate(a)) => interpolate(a),
        Some(VaeAction::Sample(a)) => sample(a),
        None => stylize(args.stylize),
    }
}

fn stylize(a: StylizeArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&a.alpha) {
        bail!("--alpha must be in [0, 1], got {}", a.alpha);
    }
    let m = &a.model;
    match (&a.content, &a.style, &a.out, &a.content_dir, &a.style_dir, &a.out_dir) {
        (Some(c), Some(s), Some(out), None, None, None) => {
            common::check_output(out)?;
            let device = m.runtime.init()?;
            let model = load_model(m, device)?;
            let c = load8(c, m, device, "content")?;
            let code = style_code(&model, s, m, device, "style")?;
            let y = stylize_one(&model, &c, &code, a.alpha)?;
            nst_core::save_image(&finish(&c.0, y, m.preserve_color), out)?;
            if !m.runtime.quiet {
                eprintln!("wrote {}", out.display());
            }
            Ok(())
        }
        (None, None, None, Some(cd), Some(sd), Some(od)) => {
            let (contents, styles) = (images_in(cd)?, images_in(sd)?);
            std::fs::create_dir_all(od).with_context(|| format!("{}: cannot create output folder", od.display()))?;
            let device = m.runtime.init()?;
            let model = load_model(m, device)?;
            let stop = common::interrupt_flag();
            // Style codes once per style; a style that cannot be read is skipped with a warning.
            let mut codes = Vec::new();
            for p in &styles {
                match style_code(&model, p, m, device, "style") {
                    Ok(mu) => codes.push((p, mu)),
                    Err(e) => eprintln!("warning: skipping {}: {e:#}", p.display()),
                }
            }
            let pb = common::progress_bar((contents.len() * codes.len()) as u64, "stylise", m.runtime.quiet);
            let (mut done, mut failed) = (0, 0);
            for cp in &contents {
                let c = match load8(cp, m, device, "content") {
                    Ok(c) => c,
                    Err(e) => {
                        pb.suspend(|| eprintln!("warning: skipping {}: {e:#}", cp.display()));
                        failed += 1;
                        pb.inc(codes.len() as u64);
                        continue;
                    }
                };
                for (sp, mu) in &codes {
                    if stop.load(Ordering::SeqCst) {
                        pb.finish_and_clear();
                        bail!("interrupted after {done} images (each written completely)");
                    }
                    let stem = |p: &Path| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                    let out = od.join(format!("{}__{}.png", stem(cp), stem(sp)));
                    let y = stylize_one(&model, &c, mu, a.alpha)?;
                    nst_core::save_image(&finish(&c.0, y, m.preserve_color), &out)?;
                    done += 1;
                    pb.inc(1);
                }
            }
            pb.finish_and_clear();
            if !m.runtime.quiet {
                eprintln!("wrote {done} images to {}", od.display());
            }
            if failed > 0 {
                bail!("{failed} content image(s) could not be read (see the warnings); the other outputs are complete");
            }
            Ok(())
        }
        _ => bail!("give either --content, --style and --out, or --content-dir, --style-dir and --out-dir (see --help)"),
    }
}

fn interpolate(a: InterpolateArgs) -> Result<()> {
    common::check_output(&a.out)?;
    if a.style.len() < 2 {
        bail!("interpolation needs at least two --style images");
    }
    let weights_runs: Vec<Vec<f64>> = match a.steps {
        Some(n) => {
            if a.style.len() != 2 {
                bail!(
                    "--steps draws the path between exactly two styles, got {}",
                    a.style.len()
                );
            }
            if n < 2 {
                bail!("--steps must be at least 2 (the two ends)");
            }
            (0..n)
                .map(|i| i as f64 / (n - 1) as f64)
                .map(|t| vec![1.0 - t, t])
                .collect()
        }
        None if a.weights.is_empty() => vec![vec![1.0; a.style.len()]],
        None => {
            if a.weights.len() != a.style.len() {
                bail!("{} --weights for {} styles", a.weights.len(), a.style.len());
            }
            vec![a.weights.clone()]
        }
    };
    let m = &a.model;
    let device = m.runtime.init()?;
    let model = load_model(m, device)?;
    let c = load8(&a.content, m, device, "content")?;
    let mut codes = Vec::new();
    for (i, p) in a.style.iter().enumerate() {
        codes.push(style_code(
            &model,
            p,
            m,
            device,
            &format!("style {}", i + 1),
        )?);
    }
    let mut outs = Vec::new();
    for w in &weights_runs {
        let code = nst_vae::mix_codes(&codes, w)?;
        outs.push(finish(
            &c.0,
            stylize_one(&model, &c, &code, 1.0)?,
            m.preserve_color,
        ));
    }
    nst_core::save_image(&strip(&Tensor::cat(&outs, 0)), &a.out)?;
    if !m.runtime.quiet {
        eprintln!(
            "wrote {} ({} image{})",
            a.out.display(),
            outs.len(),
            if outs.len() == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

fn sample(a: SampleArgs) -> Result<()> {
    common::check_output(&a.out)?;
    if !(1..=64).contains(&a.count) {
        bail!("--count must be in 1..=64, got {}", a.count);
    }
    if !(a.temperature > 0.0 && a.temperature.is_finite()) {
        bail!("--temperature must be positive, got {}", a.temperature);
    }
    let m = &a.model;
    let device = m.runtime.init()?;
    let model = load_model(m, device)?;
    let c = load8(&a.content, m, device, "content")?;
    let codes = nst_vae::sample_codes(
        a.count,
        model.style_dim(),
        m.runtime.seed,
        a.temperature,
        device,
    );
    let mut outs = Vec::new();
    for i in 0..a.count {
        let y = stylize_one(&model, &c, &codes.narrow(0, i, 1), 1.0)?;
        outs.push(finish(&c.0, y, m.preserve_color));
    }
    nst_core::save_image(&strip(&Tensor::cat(&outs, 0)), &a.out)?;
    if !m.runtime.quiet {
        eprintln!(
            "wrote {} ({} styles from the prior, seed {})",
            a.out.display(),
            a.count,
            m.runtime.seed
        );
    }
    Ok(())
}
