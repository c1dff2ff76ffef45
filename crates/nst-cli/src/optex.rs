//! `nst-infer optex` (Risser's Optimal Textures) and `nst-infer adain-wct`,
//! both with decoders trained by `nst-train` (model.kind = "decoders").
use crate::common::{self, RuntimeArgs};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use nst_core::ImageSize;
use nst_decoders::{ColorMode, Decoders, OptexConfig, Strategy};
use nst_model::Model;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Device;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StrategyArg {
    /// Sliced optimal transport: random rotations + exact 1-D CDF matching (the paper's).
    Cdf,
    /// Mean and covariance by matrix square roots (whitening–colouring).
    Symmetric,
    /// Mean and covariance through eigenbases.
    Pca,
    /// Mean and covariance through Cholesky factors (fastest).
    Cholesky,
}

/// Optimal Textures (Risser et al. 2020): training-free texture synthesis and
/// style transfer by sliced optimal transport of VGG19 features, decoded
/// level by level (relu5_1 → relu1_1) with decoders from `nst-train`.
///
/// Texture synthesis at any size (no --content):
///   nst-infer optex --checkpoint checkpoints/decoders --style texture.png --size 1024x512 --out big.png
/// Style transfer with a content-strength control:
///   nst-infer optex --checkpoint ck --content photo.jpg --style painting.jpg --content-strength 0.5 --out out.png
/// Style mixing:
///   nst-infer optex --checkpoint ck --style a.jpg --style b.jpg --mix 0.7,0.3 --out mix.png
///
/// Speed/quality: --strategy cdf (full distribution; slowest) or a closed-form
/// mean/covariance match (cholesky fastest); --passes (cdf only); --pca (the
/// variance fraction kept, 1 = no reduction); --pyramid (scales, coarse to fine).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct OptexArgs {
    /// A decoders run folder (its `latest`), a step_XXXXXXX.json or its .safetensors. Default:
    /// the shipped decoders, checkpoints/decoders.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    /// Style (texture) image; repeat to mix several.
    #[arg(long, value_name = "PATH", required = true)]
    pub style: Vec<PathBuf>,
    /// Weights of the styles (default: equal).
    #[arg(long, value_delimiter = ',')]
    pub mix: Vec<f64>,
    /// Content image: style transfer instead of synthesis.
    #[arg(long, value_name = "PATH")]
    pub content: Option<PathBuf>,
    /// Output image, written atomically.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Output size: long side in px (keeps the content's aspect, or square), or WxH. With --content the output has the content's size exactly (the work is padded to multiples of 16); a synthesis is rounded to multiples of 16.
    #[arg(long, default_value = "512")]
    pub size: ImageSize,
    /// Long side the style images are read at (default: as the output; in a
    /// tiled run at most 1024 px and what a third of the memory budget allows).
    #[arg(long)]
    pub style_size: Option<u32>,
    /// Content weight at relu5_1 (×½ at relu4_1, ×¼ at relu3_1); 0 = pure style.
    #[arg(long, default_value_t = 0.5)]
    pub content_strength: f64,
    #[arg(long, value_enum, default_value = "cdf")]
    pub strategy: StrategyArg,
    /// Rotations per level (cdf).
    #[arg(long, default_value_t = 4)]
    pub passes: usize,
    /// PCA: fraction of the style's feature variance kept (1 = no reduction).
    #[arg(long, default_value_t = 0.9)]
    pub pca: f64,
    /// Pyramid scales (synthesise at size/2^(k−1) first).
    #[arg(long, default_value_t = 3)]
    pub pyramid: usize,
    /// Levels to match and decode, in this order (default: all the
    /// checkpoint's, deepest first, e.g. 5,4,3,2,1). Leaving out the deepest
    /// keeps more of the start image's layout and avoids a weak deep decoder.
    #[arg(long, value_delimiter = ',')]
    pub levels: Vec<u8>,
    /// Match the output's colour distribution to the style's.
    #[arg(long, conflicts_with = "preserve_color")]
    pub color_transfer: bool,
    /// Keep the content's colours (needs --content).
    #[arg(long, requires = "content")]
    pub preserve_color: bool,
    #[command(flatten)]
    pub tiles: common::TileArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ClosedFormMethod {
    /// Channel mean and standard deviation (Huang & Belongie).
    Adain,
    /// Whitening–colouring to the style's covariance (Li et al.).
    Wct,
}

/// AdaIN or WCT at one or several levels with the decoders of `nst-train`
/// (model.kind = "decoders"), deepest level first.
///
/// Example:
///   nst-infer adain-wct --method wct --checkpoint checkpoints/decoders --content c.jpg --style s.jpg --out out.png
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct AdainWctArgs {
    /// A decoders checkpoint (run folder, sidecar or weights file). Default:
    /// the shipped decoders, checkpoints/decoders.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "wct")]
    pub method: ClosedFormMethod,
    #[arg(long, value_name = "PATH")]
    pub content: PathBuf,
    #[arg(long, value_name = "PATH")]
    pub style: PathBuf,
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Levels, applied in this order (e.g. 5,4,3,2,1 or 4). The default
    /// suits the shipped decoders: with them, Li et al.'s 5,4,3,2,1 at
    /// alpha 1 loses the content in blotches (their relu5_1 and relu4_1
    /// decoders are still far from converged).
    #[arg(long, value_delimiter = ',', default_value = "4,3,2,1")]
    pub levels: Vec<u8>,
    /// Blend with the content features at each level: 1 = full transform,
    /// 0 = reconstruction.
    #[arg(long, default_value_t = 0.6)]
    pub alpha: f64,
    /// Long side of the content (and style) in px, WxH, or "original". The
    /// output has the content's size (the work is padded to multiples of 16).
    #[arg(long, default_value = "512")]
    pub size: ImageSize,
    #[command(flatten)]
    pub tiles: common::TileArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Where the shipped decoders live: `checkpoints/decoders` under the current
/// folder, else under the repository this binary was built from.
pub fn shipped_decoders() -> Option<PathBuf> {
    let local = PathBuf::from("checkpoints/decoders");
    if local.join("latest").exists() {
        return Some(local);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../checkpoints/decoders");
    repo.join("latest").exists().then_some(repo)
}

fn load_decoders(
    path: &Option<PathBuf>,
    device: Device,
    precision: nst_core::Precision,
) -> Result<Decoders> {
    let path: PathBuf = match path {
        Some(p) => p.clone(),
        None => shipped_decoders().ok_or_else(|| {
            anyhow::anyhow!(
                "no --checkpoint given and no shipped decoders in checkpoints/decoders: train some with nst-train --config configs/decoders_campaign.toml and pass --checkpoint checkpoints/decoders_campaign"
            )
        })?,
    };
    Ok(Decoders::from_checkpoint(&path, device, precision)?)
}

pub fn run_optex(a: OptexArgs) -> Result<()> {
    common::check_output(&a.out)?;
    if !a.mix.is_empty() && a.mix.len() != a.style.len() {
        bail!("{} --mix weights for {} styles", a.mix.len(), a.style.len());
    }
    if !(0.0..=1.0).contains(&a.content_strength) {
        bail!(
            "--content-strength must be in [0, 1], got {}",
            a.content_strength
        );
    }
    if !(a.pca > 0.0 && a.pca <= 1.0) {
        bail!("--pca must be in (0, 1], got {}", a.pca);
    }
    if a.passes == 0 || a.pyramid == 0 {
        bail!("--passes and --pyramid must be at least 1");
    }
    let device = a.runtime.init()?;
    let model = load_decoders(&a.checkpoint, device, a.runtime.precision)?;
    let levels = if a.levels.is_empty() {
        model.levels().into_iter().rev().collect()
    } else {
        if let Some(l) = a.levels.iter().find(|l| !model.levels().contains(l)) {
            bail!(
                "--levels: this checkpoint has no decoder for relu{l}_1 (it has {:?})",
                model.levels()
            );
        }
        a.levels.clone()
    };
    // Whole images stay on the CPU; the work moves to the device.
    // The content is padded to the deepest stride and the output cut back
    // to its size; a synthesis without one is rounded to multiples of 16.
    let content = match &a.content {
        Some(p) => Some(common::load(p, a.size, tch::Device::Cpu, "content")?),
        None => None,
    };
    let content_size = content.as_ref().map(|c| (c.size()[2], c.size()[3]));
    let content = content.map(|c| nst_decoders::pad_to_stride(&c));
    let size = match (&content, a.size) {
        (Some(c), _) => (c.size()[2], c.size()[3]),
        (None, ImageSize::Exact { width, height }) => (height as i64, width as i64),
        (None, ImageSize::LongSide(s)) => (s as i64, s as i64),
        (None, ImageSize::Original) => {
            bail!("--size original needs --content; give a size such as 512 or 1024x512")
        }
    };
    let deepest = levels.iter().copied().max().unwrap_or(1);
    let strategy = match a.strategy {
        StrategyArg::Cdf => Strategy::Cdf,
        StrategyArg::Symmetric => Strategy::Symmetric,
        StrategyArg::Pca => Strategy::Pca,
        StrategyArg::Cholesky => Strategy::Cholesky,
    };
    let budget = a.tiles.budget(device);
    let plan_tiles = |tiled: bool, quiet: bool| -> Result<_> {
        let b =
            nst_decoders::optex_budget(size, a.style.len(), strategy, a.style_size, budget, tiled);
        let plan = a.tiles.plan_with_state(
            nst_decoders::OPTEX_FOOTPRINT,
            b.state_bytes_per_pixel,
            None,
            size,
            nst_decoders::halo(deepest),
            nst_decoders::STRIDE,
            device,
            quiet,
        )?;
        Ok((plan, b.style_long))
    };
    let tiled = plan_tiles(false, true)?.0.tiling().is_some();
    let (plan, style_long) = plan_tiles(tiled, a.runtime.quiet)?;
    if tiled && a.style_size.is_none() && style_long < size.0.max(size.1) as u32 && !a.runtime.quiet
    {
        eprintln!("note: style images at {style_long} px for a tiled output, their share of the memory budget (set --style-size to change)");
    }
    let style_size = ImageSize::LongSide(style_long);
    let weights = if a.mix.is_empty() {
        vec![1.0; a.style.len()]
    } else {
        a.mix.clone()
    };
    let mut styles = Vec::new();
    for (i, (p, w)) in a.style.iter().zip(&weights).enumerate() {
        styles.push((
            common::load(p, style_size, tch::Device::Cpu, &format!("style {}", i + 1))?,
            *w,
        ));
    }
    let cfg = OptexConfig {
        strategy,
        passes: a.passes,
        pca: a.pca,
        levels,
        pyramid: a.pyramid,
        content_strength: if content.is_some() {
            a.content_strength
        } else {
            0.0
        },
        color: if a.color_transfer {
            ColorMode::Transfer
        } else if a.preserve_color {
            ColorMode::Preserve
        } else {
            ColorMode::Keep
        },
    };
    let t = Instant::now();
    let pb = common::progress_bar(0, "optex", a.runtime.quiet);
    pb.set_message(format!(
        "{:?}, {} levels × {} scales",
        cfg.strategy,
        cfg.levels.len(),
        cfg.pyramid
    ));
    let out = nst_decoders::optimal_textures(
        &model,
        &styles,
        content.as_ref(),
        size,
        &cfg,
        plan.tiling(),
    )?;
    let out = match content_size {
        Some(s) => nst_decoders::crop_to(&out, s),
        None => out,
    };
    pb.finish_and_clear();
    common::end_tiles();
    nst_core::save_image(&out, &a.out)?;
    if !a.runtime.quiet {
        eprintln!(
            "wrote {} ({}x{}) in {:.1} s",
            a.out.display(),
            out.size()[3],
            out.size()[2],
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

pub fn run_adain_wct(a: AdainWctArgs) -> Result<()> {
    common::check_output(&a.out)?;
    if !(0.0..=1.0).contains(&a.alpha) {
        bail!("--alpha must be in [0, 1], got {}", a.alpha);
    }
    let device = a.runtime.init()?;
    let model = load_decoders(&a.checkpoint, device, a.runtime.precision)?;
    // Whole images stay on the CPU; tiles go to the device. The content is
    // padded to the deepest stride and the output cut back to its size.
    let cpu = tch::Device::Cpu;
    let c = common::load(&a.content, a.size, cpu, "content")?;
    let content_size = (c.size()[2], c.size()[3]);
    let c = nst_decoders::pad_to_stride(&c);
    let deepest = a.levels.iter().copied().max().unwrap_or(1);
    let dims = (c.size()[2], c.size()[3]);
    let plan = a.tiles.plan_with_state(
        nst_decoders::CLOSED_FORM_FOOTPRINT,
        nst_tiling::WHOLE_IMAGE_BYTES_PER_PIXEL,
        nst_decoders::staged::reserve(&model, &a.levels, dims),
        dims,
        nst_decoders::halo(deepest),
        nst_decoders::STRIDE,
        device,
        a.runtime.quiet,
    )?;
    let s = common::load(&a.style, a.size, cpu, "style")?;
    let out = nst_decoders::closed_form(
        &model,
        &c,
        &s,
        matches!(a.method, ClosedFormMethod::Wct),
        &a.levels,
        a.alpha,
        plan.tiling(),
    )?;
    let out = nst_decoders::crop_to(&out, content_size);
    common::end_tiles();
    nst_core::save_image(&out, &a.out)?;
    if !a.runtime.quiet {
        eprintln!("wrote {}", a.out.display());
    }
    Ok(())
}

/// Reconstruction quality of trained decoders: for each level, the PSNR of
/// decode(encode(x)) against x over the images of a folder.
///
/// Example:
///   nst-infer decoders-psnr --checkpoint checkpoints/decoders --images samples/content --size 256
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct PsnrArgs {
    /// A decoders checkpoint (run folder, sidecar or weights file). Default:
    /// the shipped decoders, checkpoints/decoders.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    /// Folder of images (PNG, JPEG, …).
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    #[arg(long, default_value = "256")]
    pub size: ImageSize,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

pub fn run_psnr(a: PsnrArgs) -> Result<()> {
    let device = a.runtime.init()?;
    let model = load_decoders(&a.checkpoint, device, a.runtime.precision)?;
    let files = nst_core::images_in(&a.images)?;
    let mut sums = vec![0.0; 5];
    let mut n = 0;
    for p in &files {
        let Ok(x) = common::load(p, a.size, device, "image") else {
            eprintln!("warning: skipping {}", p.display());
            continue;
        };
        let (h, w) = (x.size()[2] / 16 * 16, x.size()[3] / 16 * 16);
        let x = x.narrow(2, 0, h).narrow(3, 0, w);
        for (l, psnr) in nst_decoders::psnr_per_level(&model, &x)? {
            sums[l as usize - 1] += psnr;
        }
        n += 1;
    }
    if n == 0 {
        bail!("{}: no readable images", a.images.display());
    }
    println!("level    mean PSNR (dB) over {n} images");
    for l in model.levels() {
        println!("relu{l}_1  {:.2}", sums[l as usize - 1] / n as f64);
    }
    Ok(())
}
