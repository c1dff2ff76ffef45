//! `nst-infer texture` (Gatys, PO, AdaPO, ProPO) and `nst-infer eval-texture`.
use crate::common::{self, RuntimeArgs, VggArgs};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use nst_core::ImageSize;
use nst_model::Model;
use nst_po::{PseudoOptimizer, Solver, TextureLoss, Variant};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TextureMethod {
    /// L-BFGS on the pixels from noise (Gatys et al. 2015): slow, the quality reference.
    Gatys,
    /// Pseudo-optimizer trained on this one target.
    Po,
    /// Adaptive pseudo-optimizer: trained on many targets, works on new ones.
    Adapo,
    /// Progressive pseudo-optimizer: 5 stages, shallow layers first.
    Propo,
}

impl TextureMethod {
    fn variant(self) -> Option<Variant> {
        match self {
            TextureMethod::Gatys => None,
            TextureMethod::Po => Some(Variant::Po),
            TextureMethod::Adapo => Some(Variant::Adapo),
            TextureMethod::Propo => Some(Variant::Propo),
        }
    }
    fn name(self) -> &'static str {
        match self {
            TextureMethod::Gatys => "gatys",
            TextureMethod::Po => "po",
            TextureMethod::Adapo => "adapo",
            TextureMethod::Propo => "propo",
        }
    }
}

/// Texture synthesis: many different textures of one target.
///
/// The pseudo-optimizers (Shi & Qiao 2020) map texture-loss gradients at the
/// VGG19 layers to an image update in one forward pass per stage; train them
/// with nst-train (configs/po.toml, adapo.toml, propo.toml). Gatys optimises
/// each image by L-BFGS against the same loss. Every output starts from its
/// own uniform noise, drawn from --seed.
///
/// Large textures from the learned methods run tile by tile (--tile,
/// --max-memory; automatic when one image does not fit): each stage's Gram
/// matrices are summed over the whole image first, so the tiles share one
/// set of statistics and no seam appears. Networks with instance norm or
/// circular padding do not tile.
///
/// Examples:
///   nst-infer texture --method propo --checkpoint checkpoints/propo --target bricks.jpg --count 8 --out-dir out/
///   nst-infer texture --method gatys --target bricks.jpg --size 256 --count 2 --out-dir out/
///   nst-infer texture --method propo --checkpoint ck --target t.png --save-stages --out-dir out/
///   nst-infer texture --method adapo --checkpoint ck --target t.png --interpolate 7 --count 8 --out-dir out/
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct TextureArgs {
    #[arg(long, value_enum)]
    pub method: TextureMethod,
    /// The target texture (exemplar) image.
    #[arg(long, value_name = "PATH")]
    pub target: PathBuf,
    /// A po run folder (its `latest`), step_XXXXXXX.json or weights file (learned methods).
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    /// Output size: a side in px (square) or WxH. Any size works; the networks are fully convolutional.
    #[arg(long, default_value = "256")]
    pub size: ImageSize,
    /// Long side the target is read at, for its statistics (default: the output's long side).
    #[arg(long)]
    pub target_size: Option<u32>,
    /// Number of textures.
    #[arg(long, default_value_t = 8)]
    pub count: usize,
    /// Folder for `<target>_<method>_<i>.png`.
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// ProPO: also write each stage's image x⁽¹⁾…x⁽⁵⁾ (`…_<i>_stage<s>.png`).
    #[arg(long)]
    pub save_stages: bool,
    /// Blend the noise from --seed to this second seed over the --count outputs.
    #[arg(long, value_name = "SEED")]
    pub interpolate: Option<u64>,
    /// Gatys: L-BFGS loss evaluations per image.
    #[arg(long, default_value_t = 500)]
    pub steps: usize,
    /// Images per forward pass (learned methods); lowered, with a note, when
    /// that many do not fit in the memory available.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    #[command(flatten)]
    pub tiles: common::TileArgs,
    #[command(flatten)]
    pub vgg: VggArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Loads a `kind = "po"` checkpoint and checks it is the `want` variant.
pub fn load_po(
    path: &Path,
    want: Variant,
    device: Device,
    precision: nst_core::Precision,
) -> Result<PseudoOptimizer> {
    let model = PseudoOptimizer::from_checkpoint(path, device, precision)?;
    if model.variant() != want {
        bail!(
            "{} holds a {} network, not {}; use --method {}",
            path.display(),
            model.variant().name(),
            want.name(),
            model.variant().name()
        );
    }
    Ok(model)
}

fn out_size(size: ImageSize) -> Result<(i64, i64)> {
    Ok(match size {
        ImageSize::Exact { width, height } => (height as i64, width as i64),
        ImageSize::LongSide(s) => (s as i64, s as i64),
        ImageSize::Original => bail!("give --size as a side (256) or WxH (512x256)"),
    })
}

fn build_solver(
    method: TextureMethod,
    checkpoint: Option<&Path>,
    steps: usize,
    vgg: &VggArgs,
    device: Device,
    precision: nst_core::Precision,
) -> Result<Solver> {
    Ok(match method.variant() {
        Some(v) => {
            let Some(ck) = checkpoint else {
                bail!("--method {} needs --checkpoint (train one with nst-train --config configs/{}.toml)", method.name(), method.name())
            };
            Solver::Learned(load_po(ck, v, device, precision)?)
        }
        None => {
            if steps == 0 {
                bail!("--steps must be at least 1");
            }
            let loss =
                TextureLoss::published(vgg.load(nst_vgg::Pooling::Avg, device, precision)?)?;
            Solver::Gatys {
                loss,
                max_evals: steps,
            }
        }
    })
}

fn noise(seed: u64, n: i64, h: i64, w: i64, device: Device) -> Tensor {
    tch::manual_seed(seed as i64);
    PseudoOptimizer::noise(n, h, w, device)
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map_or_else(|| "target".into(), |s| s.to_string_lossy().into_owned())
}

pub fn run_texture(a: TextureArgs) -> Result<()> {
    if a.count == 0 {
        bail!("--count must be at least 1");
    }
    if a.save_stages && a.method != TextureMethod::Propo {
        bail!("--save-stages is for --method propo (the only multi-stage solver)");
    }
    let (h, w) = out_size(a.size)?;
    let device = a.runtime.init()?;
    let solver = build_solver(
        a.method,
        a.checkpoint.as_deref(),
        a.steps,
        &a.vgg,
        device,
        a.runtime.precision,
    )?;
    let min = solver.loss().min_side();
    if h.min(w) < min {
        bail!("--size {w}x{h} is too small: the texture layers need at least {min}×{min}");
    }
    // Tiled when asked, or when one image does not fit whole (learned methods).
    let user_tiles = a.tiles.tile.is_some() || a.tiles.max_memory.is_some();
    let tiling = match solver.tiling_needs() {
        Ok(_) => {
            // The staged path when its whole maps fit beside the tiles, else
            // every stage in windows (nst_po::Solver::tile_plan).
            // The budget read once, so the choice and the plan see the same.
            let tiles = common::TileArgs {
                max_memory: a.tiles.budget(device),
                ..a.tiles.clone()
            };
            let runs = (a.count as u64, a.save_stages);
            let plan = match solver.tile_plan((h, w), runs, tiles.tile, tiles.max_memory) {
                Ok(p) => tiles.plan_with_state(
                    solver.footprint(),
                    p.state,
                    p.reserve,
                    (h, w),
                    p.halo,
                    p.align,
                    device,
                    a.runtime.quiet,
                ),
                Err(e) => Err(e.into()),
            };
            match plan {
                Ok(p) => p.tiling().copied(),
                Err(e) if user_tiles => return Err(e),
                // Not even tiles fit: the whole-image check names a size that does.
                Err(e) => {
                    common::fit_memory(solver.footprint(), (h, w), 1, device, "--size")?;
                    return Err(e);
                }
            }
        }
        Err(why) if user_tiles => bail!("--tile/--max-memory: {why}"),
        Err(_) => None,
    };
    // Gatys makes one image at a time; a network, --batch at once.
    let batch = match tiling {
        Some(_) => 1,
        None => common::fit_memory(
            solver.footprint(),
            (h, w),
            solver.batch(a.batch),
            device,
            "--size",
        )?,
    };
    let tsize = ImageSize::LongSide(a.target_size.unwrap_or(h.max(w) as u32));
    let target_img = common::load(&a.target, tsize, device, "target")?;
    let target = match &tiling {
        Some(t) => solver.loss().target_tiled(&target_img, t),
        None => Ok(solver.loss().target(&target_img)?),
    }
    .context("target statistics")?;
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("creating {}", a.out_dir.display()))?;
    let n = a.count as i64;
    let z0 = match a.interpolate {
        None => noise(a.runtime.seed, n, h, w, device),
        Some(seed_b) => {
            let za = noise(a.runtime.seed, 1, h, w, device);
            let zb = noise(seed_b, 1, h, w, device);
            let t = Tensor::linspace(0.0, 1.0, n, (tch::Kind::Float, device)).view([n, 1, 1, 1]);
            &za * (1.0 - &t) + &zb * &t
        }
    };
    let name = stem(&a.target);
    let pb = common::progress_bar(a.count as u64, a.method.name(), a.runtime.quiet);
    let t0 = Instant::now();
    let progress = |done: usize| pb.set_position(done as u64);
    let (synthesis, tiled_losses) = match &tiling {
        Some(t) => {
            let r = solver.synthesize_tiled(&z0, &target, t, a.save_stages, progress);
            common::end_tiles();
            let (s, l) = r?;
            (s, Some(l))
        }
        None => (solver.synthesize(&z0, &target, batch, progress)?, None),
    };
    let secs = t0.elapsed().as_secs_f64();
    pb.finish_and_clear();
    for note in &synthesis.notes {
        eprintln!("warning: {note}");
    }
    let out = synthesis.result();
    let quality = match tiled_losses {
        Some(l) => l.iter().sum::<f64>() / l.len().max(1) as f64,
        None => nst_po::eval::quality(solver.loss(), out, &target)?,
    };
    for j in 0..n {
        let p = a
            .out_dir
            .join(format!("{name}_{}_{j}.png", a.method.name()));
        nst_core::save_image(&out.get(j), &p)?;
        if a.save_stages {
            for (s, img) in synthesis.stages().enumerate() {
                let p =
                    a.out_dir
                        .join(format!("{name}_{}_{j}_stage{}.png", a.method.name(), s + 1));
                nst_core::save_image(&img.get(j), &p)?;
            }
        }
    }
    if !a.runtime.quiet {
        eprintln!(
            "wrote {n} textures ({w}x{h}) to {} in {secs:.2} s ({:.1} ms/image); mean texture loss {quality:.4e}",
            a.out_dir.display(),
            1e3 * secs / n as f64
        );
    }
    Ok(())
}

/// The paper's comparison: texture quality against diversity, per method,
/// on a folder of target textures (ideally held out of training).
///
/// quality   = mean L_tex(output, target) over conv1_1, pool1…pool4 (weights 1e5, images in [0, 1]); lower is better
/// diversity = E_{i≠j} mean |F(x_i) − F(x_j)| with F = VGG19 relu4_1, over the --count outputs of a target; higher is more diverse
/// time      = wall-clock seconds per image
/// The "noise" row is the solvers' common input, for scale.
///
/// Example:
///   nst-infer eval-texture --targets textures/ --methods gatys,propo --checkpoint propo=checkpoints/propo --count 4 --csv eval.csv
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct EvalArgs {
    /// Folder of target textures.
    #[arg(long, value_name = "DIR")]
    pub targets: PathBuf,
    /// Methods to compare (comma-separated): gatys, po, adapo, propo.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "gatys,propo")]
    pub methods: Vec<TextureMethod>,
    /// Checkpoints: METHOD=PATH per learned method (or just PATH when one learned method is listed).
    #[arg(long, value_name = "METHOD=PATH")]
    pub checkpoint: Vec<String>,
    /// Outputs per target (≥ 2 for diversity).
    #[arg(long, default_value_t = 4)]
    pub count: usize,
    /// Side of the square outputs and of the targets.
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Long side the targets are read at, aspect kept, for their statistics
    /// (default: --size, squared). A single-target PO draws the texture at the
    /// pixel scale it was trained at: to score outputs larger than its
    /// training crops, give the training size here.
    #[arg(long, value_name = "PX")]
    pub target_size: Option<u32>,
    /// Gatys: L-BFGS loss evaluations per image.
    #[arg(long, default_value_t = 500)]
    pub steps: usize,
    /// The per-target table (CSV), written atomically. Default:
    /// eval_texture.csv in --out-dir if given, else in the current folder.
    #[arg(long, value_name = "PATH")]
    pub csv: Option<PathBuf>,
    /// Also save the outputs here.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    #[command(flatten)]
    pub vgg: VggArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

fn checkpoint_for(
    method: TextureMethod,
    specs: &[String],
    learned: usize,
) -> Result<Option<PathBuf>> {
    if method == TextureMethod::Gatys {
        return Ok(None);
    }
    for s in specs {
        match s.split_once('=') {
            Some((m, p)) if m == method.name() => return Ok(Some(PathBuf::from(p))),
            None if learned == 1 => return Ok(Some(PathBuf::from(s))),
            _ => {}
        }
    }
    bail!(
        "no checkpoint for {}: give --checkpoint {}=PATH",
        method.name(),
        method.name()
    )
}

pub fn run_eval(a: EvalArgs) -> Result<()> {
    if a.count < 2 {
        bail!("--count must be at least 2 (diversity compares outputs pairwise)");
    }
    let files = nst_core::images_in(&a.targets).context("reading --targets")?;
    let device = a.runtime.init()?;
    let learned = a.methods.iter().filter(|m| m.variant().is_some()).count();
    let mut solvers = Vec::new();
    for &m in &a.methods {
        let ck = checkpoint_for(m, &a.checkpoint, learned)?;
        solvers.push((
            m,
            build_solver(
                m,
                ck.as_deref(),
                a.steps,
                &a.vgg,
                device,
                a.runtime.precision,
            )?,
        ));
    }
    if let Some(d) = &a.out_dir {
        std::fs::create_dir_all(d)?;
    }
    // The reference loss: the published one (the learned models are checked to
    // use it), always in fp32 so that scores compare across --precision.
    let reference = TextureLoss::published(a.vgg.load(
        nst_vgg::Pooling::Avg,
        device,
        nst_core::Precision::Fp32,
    )?)?;
    // Images are read at 32 px or more; the deepest layer needs its stride.
    let min = reference
        .min_side()
        .max(nst_core::image_io::MIN_IMAGE_SIDE as i64);
    for (flag, side) in [("--size", Some(a.size)), ("--target-size", a.target_size)] {
        if let Some(side) = side.filter(|&v| (v as i64) < min) {
            bail!("{flag} {side} is too small: the texture layers need at least {min} px");
        }
    }
    let s = a.size as i64;
    let n = a.count as i64;
    // Learned solvers run 4 outputs at a time, or fewer if 4 do not fit;
    // Gatys makes one at a time.
    let mut batch = 1;
    for (_, solver) in &solvers {
        batch = batch.max(common::fit_memory(
            solver.footprint(),
            (s, s),
            solver.batch(4),
            device,
            "--size",
        )?);
    }
    let named: Vec<(&str, &Solver)> = solvers.iter().map(|(m, sv)| (m.name(), sv)).collect();
    let mut rows: Vec<nst_po::eval::EvalRow> = Vec::new();
    let mut notes = Vec::new();
    let pb = common::progress_bar(files.len() as u64, "eval", a.runtime.quiet);
    for (ti, f) in files.iter().enumerate() {
        let img = match common::load(
            f,
            match a.target_size {
                Some(t) => ImageSize::LongSide(t),
                None => ImageSize::Exact {
                    width: a.size,
                    height: a.size,
                },
            },
            device,
            "target",
        ) {
            Ok(img) => img,
            Err(e) => {
                eprintln!("warning: skipping {}: {e:#}", f.display());
                continue;
            }
        };
        let z0 = noise(a.runtime.seed.wrapping_add(ti as u64), n, s, s, device);
        let name = stem(f);
        rows.extend(nst_po::eval::evaluate_target(
            &reference,
            &name,
            &img,
            &named,
            &z0,
            batch,
            |method, out| {
                if let Some(dir) = &a.out_dir {
                    for j in 0..n {
                        nst_core::save_image(
                            &out.get(j),
                            dir.join(format!("{name}_{method}_{j}.png")),
                        )?;
                    }
                }
                Ok(())
            },
            &mut notes,
        )?);
        pb.inc(1);
    }
    pb.finish_and_clear();
    for note in &notes {
        eprintln!("warning: {note}");
    }
    if rows.is_empty() {
        bail!(
            "no target in {} could be read (see the warnings above)",
            a.targets.display()
        );
    }
    let csv_path = a.csv.clone().unwrap_or_else(|| {
        a.out_dir
            .as_deref()
            .unwrap_or(std::path::Path::new("."))
            .join("eval_texture.csv")
    });
    nst_core::fsutil::write_bytes_atomic(&csv_path, nst_po::eval::to_csv(&rows).as_bytes())?;
    let n_targets = rows.iter().filter(|r| r.method == "noise").count();
    let read_at = match a.target_size {
        Some(t) => format!("targets read at a {t}-px long side"),
        None => format!("targets read at {}x{}", a.size, a.size),
    };
    println!("{n_targets} targets ({read_at}), {} outputs each, {}x{} px; quality = mean L_tex (lower is better), diversity = E|relu4_1(x_i) - relu4_1(x_j)| (higher is more diverse)", a.count, a.size, a.size);
    println!(
        "{:<8} {:>12} {:>12} {:>14}",
        "method", "quality", "diversity", "s/image"
    );
    let mut names = vec!["noise"];
    names.extend(a.methods.iter().map(|m| m.name()));
    for (name, q, d, t) in nst_po::eval::means(&rows, &names) {
        println!("{name:<8} {q:>12.4e} {d:>12.4e} {t:>14.4}");
    }
    println!("per-target rows: {}", csv_path.display());
    Ok(())
}
