//! nst-bench: the same work in nst and in PyTorch eager, on the same machine in
//! one run. Each case runs in a fresh child process per implementation, so the
//! peak memory (VmHWM / ru_maxrss) belongs to that case alone.
//!
//! Compare ratios, never absolute times across runs.
use anyhow::{bail, Context, Result};
use clap::Parser;
use nst_vgg::{Pooling, Precision, Tap, Vgg, VggOptions};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// A benchmark case: one variant per case, named on the command line as in
/// [`Case::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    VggFeatures,
    GatysStep,
    AdainTrainStep,
    Strotss,
    StrotssGuided,
    StrotssPeer,
    VaeInfer,
    VaeTrainStep,
    Optex(OptexCase),
    /// The decoders' closed-form transfer (`nst-infer adain-wct`): AdaIN at
    /// relu4_1 alone (`wct: false`) or WCT at relu5_1…relu1_1.
    ClosedForm {
        wct: bool,
    },
    PropoTrainStep,
    PuyArtistic,
    PuyProjection,
    Loader {
        threads: usize,
    },
    TrainDataWait,
    PropoVsGatys {
        side: i64,
    },
    PuyPhotorealVsLuan,
    Tiled(TiledCase),
}

/// The tiled families (issue 27): whole against tiled in one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TiledCase {
    Adain,
    Wct,
    Optex,
    Vae,
    Gatys,
    Strotss,
    Puy,
    Texture,
}

impl TiledCase {
    fn name(self) -> &'static str {
        match self {
            TiledCase::Adain => "adain",
            TiledCase::Wct => "wct",
            TiledCase::Optex => "optex",
            TiledCase::Vae => "vae",
            TiledCase::Gatys => "gatys",
            TiledCase::Strotss => "strotss",
            TiledCase::Puy => "puy",
            TiledCase::Texture => "texture",
        }
    }

    /// (halo, alignment) of the family's tiles, where they do not depend on
    /// the network (Puy–Pérez's and the texture solvers' come from the model).
    fn tiling(self) -> (i64, i64) {
        match self {
            TiledCase::Strotss => (nst_optim::strotss::HALO, nst_optim::strotss::ALIGN),
            TiledCase::Puy | TiledCase::Texture => (0, 1),
            TiledCase::Adain => (nst_adain::HALO, nst_adain::STRIDE),
            TiledCase::Wct | TiledCase::Optex => (nst_decoders::halo(5), nst_decoders::STRIDE),
            TiledCase::Vae => (nst_vae::HALO, nst_vae::STRIDE),
            TiledCase::Gatys => (
                nst_optim::gatys::tiled::HALO,
                nst_optim::gatys::tiled::ALIGN,
            ),
        }
    }
}

/// The Optimal Textures cases: one per matching strategy, and the pyramid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OptexCase {
    Cdf,
    Symmetric,
    Pca,
    Cholesky,
    Pyramid,
}

/// Which model's random weights a case shares with its PyTorch reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SharedWeights {
    Vae,
    Decoders,
    Propo,
    Puy,
}

impl Case {
    /// Every case, in the order a full run takes them.
    const ALL: [Case; 33] = [
        Case::VggFeatures,
        Case::GatysStep,
        Case::AdainTrainStep,
        Case::Strotss,
        Case::StrotssGuided,
        Case::StrotssPeer,
        Case::VaeInfer,
        Case::VaeTrainStep,
        Case::Optex(OptexCase::Cdf),
        Case::Optex(OptexCase::Symmetric),
        Case::Optex(OptexCase::Pca),
        Case::Optex(OptexCase::Cholesky),
        Case::Optex(OptexCase::Pyramid),
        Case::ClosedForm { wct: false },
        Case::ClosedForm { wct: true },
        Case::PropoTrainStep,
        Case::PuyArtistic,
        Case::PuyProjection,
        Case::Loader { threads: 1 },
        Case::Loader { threads: 2 },
        Case::TrainDataWait,
        Case::PropoVsGatys { side: 128 },
        Case::PropoVsGatys { side: 256 },
        Case::PropoVsGatys { side: 512 },
        Case::PuyPhotorealVsLuan,
        Case::Tiled(TiledCase::Adain),
        Case::Tiled(TiledCase::Wct),
        Case::Tiled(TiledCase::Optex),
        Case::Tiled(TiledCase::Vae),
        Case::Tiled(TiledCase::Gatys),
        Case::Tiled(TiledCase::Strotss),
        Case::Tiled(TiledCase::Puy),
        Case::Tiled(TiledCase::Texture),
    ];

    fn name(self) -> String {
        match self {
            Case::VggFeatures => "vgg_features".into(),
            Case::GatysStep => "gatys_step".into(),
            Case::AdainTrainStep => "adain_train_step".into(),
            Case::Strotss => "strotss".into(),
            Case::StrotssGuided => "strotss_guided".into(),
            Case::StrotssPeer => "strotss_peer".into(),
            Case::VaeInfer => "vae_infer".into(),
            Case::VaeTrainStep => "vae_train_step".into(),
            Case::Optex(o) => format!("optex_{}", o.name()),
            Case::ClosedForm { wct: false } => "closed_adain".into(),
            Case::ClosedForm { wct: true } => "closed_wct".into(),
            Case::PropoTrainStep => "propo_train_step".into(),
            Case::PuyArtistic => "puy_artistic".into(),
            Case::PuyProjection => "puy_projection".into(),
            Case::Loader { threads: 1 } => "loader_1_thread".into(),
            Case::Loader { threads } => format!("loader_{threads}_threads"),
            Case::TrainDataWait => "train_data_wait".into(),
            Case::PropoVsGatys { side } => format!("propo_vs_gatys_{side}"),
            Case::PuyPhotorealVsLuan => "puy_photoreal_vs_luan".into(),
            Case::Tiled(t) => format!("tiled_{}", t.name()),
        }
    }

    fn description(self) -> String {
        let d = match self {
            Case::VggFeatures => "VGG19 relu1_1…relu5_1 forward, 1×3×S×S, no grad",
            Case::GatysStep => "one Gatys evaluation (forward + backward), content relu4_2 + 5 style Grams, S×S",
            Case::AdainTrainStep => "AdaIN training step (VGG19→relu4_1, decoder, losses, backward, Adam), batch 4, 256² crops",
            Case::Strotss => "a whole STROTSS run: --strotss-scales scales × --strotss-steps RMSprop steps to S×S, 1,024 vs 5,000 samples (quality: final loss)",
            Case::StrotssGuided => "the same run guided by two-region masks (quality: final loss)",
            Case::StrotssPeer => "STROTSS at 256 px, 3 scales × --strotss-steps, 1,024 vs 5,000 samples, against a PyTorch reference of the public futscdav/strotss procedure (it recomputes the style moments, the full REMD matrix through autograd and both self-similarity matrices every step); issue 9's goals: ratio ≤ 0.7 in fp32, ≤ 0.25 in bf16",
            Case::VaeInfer => "variational AdaIN inference, S×S content and style: VGG to relu4_1 twice, E_s, code MLP, decoder (same weights both sides)",
            Case::VaeTrainStep => "variational AdaIN training step (all four losses, backward, Adam), batch 4, 256² crops",
            Case::Optex(OptexCase::Cdf) => "Optimal Textures synthesis S×S from noise, 5 levels, sliced OT (4 passes, PCA 0.9), width-1 decoders",
            Case::Optex(OptexCase::Symmetric) => "the same with closed-form mean/covariance matching by matrix square roots",
            Case::Optex(OptexCase::Pca) => "the same with closed-form matching through eigenbases",
            Case::Optex(OptexCase::Cholesky) => "the same with closed-form matching through Cholesky factors",
            Case::Optex(OptexCase::Pyramid) => "sliced OT synthesis at 2S×2S through a 3-scale pyramid (S/2 → S → 2S)",
            Case::ClosedForm { wct: false } => "AdaIN transfer at relu4_1 alone with the width-1 decoder (nst-infer adain-wct --method adain --levels 4 --alpha 1), S×S content and style (same weights both sides)",
            Case::ClosedForm { wct: true } => "WCT transfer at relu5_1, 4_1, 3_1, 2_1, 1_1 in turn (adain-wct --levels 5,4,3,2,1 --alpha 1): the style encoded once to relu5_1, the image re-encoded at each level, S×S (same weights both sides)",
            Case::PropoTrainStep => "ProPO training step (5 stages, Gram-gradient inputs, texture losses, backward, Adam), batch 4, 128² (same weights both sides)",
            Case::PuyArtistic => "Puy–Pérez artistic inference: 4 learned updates (forward maps, style Grams, cubic term, masked backward maps), S×S content and style (same weights both sides)",
            Case::PuyProjection => "one photoreal projection of an S×S image: area-downsample to 128 px, Chebyshev degree-100 low-pass on the matting Laplacian, guided upsampling",
            Case::Loader { threads: 1 } => "decode 512×384 JPEGs → resize 288 → 256² crop/flip → batch 8, 1 decode thread (images/s)",
            Case::Loader { .. } => "the same with 2 decode threads (images/s)",
            Case::TrainDataWait => "share of AdaIN step time spent waiting for data (2 decode threads, batch 4, 256²)",
            Case::PropoVsGatys { side: 128 } => "ProPO (--po-checkpoint) synthesis of one 128² texture (the CPU-scale training size) vs Gatys L-BFGS from the same noise until it reaches ProPO's texture loss",
            Case::PropoVsGatys { side } => return format!("the same at {side}²"),
            Case::PuyPhotorealVsLuan => "Puy–Pérez photoreal inference at S (--puy-checkpoint; projection set-up with k = 1000 included) vs Gatys L-BFGS with Luan's matting term from the content until it reaches the solver output's loss L",
            Case::Tiled(TiledCase::Adain) => "AdaIN at relu4_1, S×S whole vs in tiles of --tile px (random decoder weights): time ratio and PSNR",
            Case::Tiled(TiledCase::Wct) => "WCT at relu5_1…relu1_1 with the width-1 decoders (random weights), whole vs tiled",
            Case::Tiled(TiledCase::Optex) => "Optimal Textures transfer (5 levels, one scale), whole vs tiled",
            Case::Tiled(TiledCase::Vae) => "variational AdaIN (random weights), whole vs tiled",
            Case::Tiled(TiledCase::Gatys) => "Gatys, 10 L-BFGS evaluations from the content, whole vs tiled: time ratio and final loss (measured whole)",
            Case::Tiled(TiledCase::Strotss) => "STROTSS, one scale of 10 steps, whole vs tiled from the same seed: time ratio and final loss (measured whole on one fixed draw of samples)",
            Case::Tiled(TiledCase::Puy) => "Puy–Pérez artistic solver, 4 learned updates (random weights), whole vs tiled",
            Case::Tiled(TiledCase::Texture) => "ProPO texture solver (random weights, batch norm, zero padding) from noise, whole vs tiled",
        };
        d.into()
    }

    /// Measured in nst only: no PyTorch counterpart.
    fn solo(self) -> bool {
        matches!(
            self,
            Case::Loader { .. }
                | Case::TrainDataWait
                | Case::PropoVsGatys { .. }
                | Case::PuyPhotorealVsLuan
                | Case::Tiled(_)
        )
    }

    /// The image side the case runs at, for `--size S`.
    fn px(self, size: i64) -> i64 {
        match self {
            Case::PropoTrainStep => 128,
            Case::StrotssPeer => 256,
            Case::Optex(OptexCase::Pyramid) => 2 * size,
            Case::AdainTrainStep | Case::VaeTrainStep => 256,
            _ => size,
        }
    }

    /// A training step starts from random weights on each side: no result to compare.
    fn compares_result(self) -> bool {
        !matches!(
            self,
            Case::AdainTrainStep | Case::VaeTrainStep | Case::PropoTrainStep
        )
    }

    /// The random weights the case shares with its reference, if any.
    fn shared_weights(self) -> Option<SharedWeights> {
        match self {
            Case::VaeInfer | Case::VaeTrainStep => Some(SharedWeights::Vae),
            Case::Optex(_) | Case::ClosedForm { .. } => Some(SharedWeights::Decoders),
            Case::PropoTrainStep => Some(SharedWeights::Propo),
            Case::PuyArtistic => Some(SharedWeights::Puy),
            _ => None,
        }
    }

    /// The guard of `--precision bf16`: (result tolerance, PSNR floor if the PSNR is guarded).
    fn guard(self) -> (f64, Option<f64>) {
        match self {
            Case::Optex(_) => (TOL_SYNTHESIS, None),
            Case::Strotss | Case::StrotssGuided | Case::StrotssPeer => {
                (TOL_OPTIMISATION, Some(FLOOR_OPTIMISATION_DB))
            }
            _ => (TOL_FEEDFORWARD, Some(FLOOR_FEEDFORWARD_DB)),
        }
    }

    /// How nst's and PyTorch's results compare in the table: `false` where
    /// they measure different things (the peer's objective is not nst's;
    /// Optimal Textures reports a Gram distance against a checksum).
    fn results_comparable(self) -> bool {
        !matches!(self, Case::StrotssPeer | Case::Optex(_))
    }
}

impl OptexCase {
    fn name(self) -> &'static str {
        match self {
            OptexCase::Cdf => "cdf",
            OptexCase::Symmetric => "symmetric",
            OptexCase::Pca => "pca",
            OptexCase::Cholesky => "cholesky",
            OptexCase::Pyramid => "pyramid",
        }
    }
}

impl std::fmt::Display for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl std::str::FromStr for Case {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Case::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .with_context(|| {
                format!(
                    "unknown case {s:?}; known: {}",
                    Case::ALL
                        .into_iter()
                        .map(Case::name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "nst-bench",
    about = "Benchmarks nst against PyTorch-eager references in one run",
    // A child process gets this run's options, then its own (--child,
    // --precision, …), which override them.
    args_override_self = true
)]
struct Cli {
    /// Comma-separated cases (default: all): vgg_features, gatys_step.
    #[arg(long)]
    cases: Option<String>,
    /// Image side in px (default 512; --quick: 256).
    #[arg(long)]
    size: Option<i64>,
    /// Timed repetitions per case (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// A quick look in under 10 minutes: 1 timed run after the warm-up, 256 px,
    /// 10 STROTSS steps per scale.
    #[arg(long)]
    quick: bool,
    /// Also write the table as Markdown to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Scales of the STROTSS cases.
    #[arg(long, default_value_t = 4)]
    strotss_scales: usize,
    /// RMSprop steps per scale of the STROTSS cases (default 200; --quick: 10).
    #[arg(long)]
    strotss_steps: Option<usize>,
    /// A trained pseudo-optimizer run (nst-train, model.kind = "po"; ProPO as
    /// the issue names, or a PO/AdaPO run to compare) for the propo_vs_gatys
    /// cases; they are skipped without it.
    #[arg(long, value_name = "PATH")]
    po_checkpoint: Option<PathBuf>,
    /// Target texture of the propo_vs_gatys cases.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "samples/texture/gravel.png"
    )]
    po_target: PathBuf,
    /// Side the propo_vs_gatys target is read at, for its statistics (a
    /// square). Default: the output's side. Give the solver's training size to
    /// measure a large output of a small exemplar, the way a single-target PO
    /// is used: it draws the texture at the pixel scale it was trained at.
    #[arg(long, value_name = "PX")]
    po_target_size: Option<i64>,
    /// A trained Puy–Pérez run (nst-train, model.kind = "puy_perez") for
    /// puy_photoreal_vs_luan; skipped without it.
    #[arg(long, value_name = "PATH")]
    puy_checkpoint: Option<PathBuf>,
    /// Seed of the STROTSS cases' random sampling, on both sides (runs with
    /// several seeds show how far the final loss moves by chance).
    #[arg(long, default_value_t = 0)]
    strotss_seed: i64,
    /// Content and style photos of puy_photoreal_vs_luan.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "samples/content/chelsea.png"
    )]
    puy_content: PathBuf,
    #[arg(long, value_name = "PATH", default_value = "samples/style/coffee.png")]
    puy_style: PathBuf,
    /// λ of Luan's matting term in the Gatys baseline.
    #[arg(long, default_value_t = 1e3)]
    luan_weight: f64,
    /// Precision of nst's side: fp32, or bf16 to also run every case in bf16
    /// and report the speed-up and the quality guard (bf16 against fp32 on
    /// the same seed: result within a stated tolerance, output PSNR above a
    /// stated floor). The PyTorch references stay fp32. The propo_vs_gatys
    /// cases run the solver at this precision and Gatys at --gatys-precision.
    #[arg(long, default_value = "fp32", value_parser = parse_precision)]
    precision: Precision,
    /// Precision of the Gatys side of the propo_vs_gatys cases (its VGG
    /// forward and backward). fp32 by default; bf16 gives Gatys the same
    /// speed-up the solver gets from --precision bf16, for a comparison at
    /// equal precision. Either way Gatys stops when its own loss reaches the
    /// solver output's measured by the same loss, and both are then scored
    /// on one fp32 yardstick.
    #[arg(long, default_value = "fp32", value_parser = parse_precision)]
    gatys_precision: Precision,
    /// Run the PyTorch references with glibc's malloc tuned the way nst's
    /// allocator behaves (freed memory kept: MALLOC_MMAP_THRESHOLD_ and
    /// MALLOC_TRIM_THRESHOLD_ at 2 GiB), to compare the compute alone. By
    /// default they keep glibc's defaults, as a PyTorch user has.
    #[arg(long)]
    tuned_reference: bool,
    /// Run the PyTorch references under torch.autocast(cpu, bfloat16),
    /// PyTorch's own mixed precision, for a bf16-to-bf16 comparison (their
    /// result column then compares nst fp32 with PyTorch bf16).
    #[arg(long)]
    reference_bf16: bool,
    /// Run the closed_* references on channels-last inputs, PyTorch's own
    /// layout tuning (nst's reduced-precision convolutions always use it).
    #[arg(long)]
    reference_channels_last: bool,
    /// Tile side of the tiled_* cases (default: 2 × 2 tiles).
    #[arg(long, value_name = "PX")]
    tile: Option<i64>,
    /// Internal: write the case's output image here (for the PSNR).
    #[arg(long, hide = true)]
    save_image: Option<PathBuf>,
    /// Internal: the VAE weights file shared with the reference.
    #[arg(long, hide = true)]
    vae_weights: Option<PathBuf>,
    /// Internal: run one case in this process and print its JSON result.
    #[arg(long, hide = true)]
    child: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CaseResult {
    case: String,
    seconds: f64,
    peak_mb: f64,
    #[serde(default)]
    quality: Option<f64>,
    /// A sentence for the nst-only table.
    #[serde(default)]
    detail: Option<String>,
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    s.parse().map_err(|e: nst_core::Error| e.to_string())
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// The median as Python's `statistics.median` takes it (the reference's):
/// the mean of the two middle values of an even count.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn time_it(repeat: usize, mut f: impl FnMut() -> Result<f64>) -> Result<(f64, f64)> {
    let mut q = f()?; // warm-up
    let mut times = Vec::new();
    for _ in 0..repeat {
        let t = Instant::now();
        q = f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok((median(times), q))
}

fn blobs(s: i64, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::rand([1, 3, s / 16, s / 16], (Kind::Float, Device::Cpu)).upsample_bilinear2d(
        [s, s],
        false,
        None,
        None,
    )
}

fn blobs4(s: i64, seed: i64) -> Tensor {
    Tensor::cat(
        &(0..4).map(|i| blobs(s, seed * 10 + i)).collect::<Vec<_>>(),
        0,
    )
}

/// A folder of deterministic 512×384 JPEGs for the loader benchmarks.
fn fake_jpegs(dir: &std::path::Path, n: u32) -> Result<nst_data::Dataset> {
    for i in 0..n {
        let img = image::RgbImage::from_fn(512, 384, |x, y| {
            image::Rgb([
                ((x * 3 + i * 17) % 256) as u8,
                ((y * 5 + x / 7) % 256) as u8,
                ((x ^ y) % 256) as u8,
            ])
        });
        img.save(dir.join(format!("{i:03}.jpg")))?;
    }
    Ok(nst_data::SourceConfig::folder(dir).open()?)
}

/// The VGG of every case, at the precision under test.
fn load_vgg(weights: &std::path::Path, pooling: Pooling, precision: Precision) -> Result<Vgg> {
    Ok(Vgg::load(
        weights,
        VggOptions {
            pooling,
            device: Device::Cpu,
        },
    )?
    .with_precision(precision)?)
}

/// One whole STROTSS run on blob images; returns (seconds, mean total loss over
/// the last 20 steps of the final scale, the result).
fn strotss_run(
    weights: &std::path::Path,
    size: i64,
    scales: usize,
    steps: usize,
    seed: i64,
    guided: bool,
    precision: Precision,
) -> Result<(f64, f64, Tensor)> {
    let vgg = load_vgg(weights, Pooling::Max, precision)?;
    let (c, s) = (blobs(size, 1), blobs(size, 2));
    tch::manual_seed(seed);
    let cfg = nst_optim::StrotssConfig {
        scales,
        steps_per_scale: steps,
        precision,
        ..Default::default()
    };
    let st = nst_optim::Strotss::new(&vgg, cfg)?;
    let halves = (Tensor::arange(size, (Kind::Int64, Device::Cpu))
        .ge(size / 2)
        .to_kind(Kind::Int64))
    .view([1, size])
    .expand([size, size], false)
    .contiguous();
    let guidance = nst_optim::Guidance {
        content: halves.shallow_clone(),
        styles: vec![halves],
        regions: 2,
    };
    let mut finals = Vec::new();
    let t = Instant::now();
    let mut results = st.run(
        &c,
        &[nst_optim::StyleInput {
            image: &s,
            weight: 1.0,
        }],
        guided.then_some(&guidance),
        |si, step, terms| {
            if si + 1 == scales && step + 20 > steps {
                finals.push(terms.total);
            }
            true
        },
    )?;
    let secs = t.elapsed().as_secs_f64();
    Ok((
        secs,
        finals.iter().sum::<f64>() / finals.len().max(1) as f64,
        results.pop().context("no STROTSS result")?,
    ))
}

/// Where the VAE cases' shared weights live: written once by the parent, read by both children.
fn vae_weights_path() -> PathBuf {
    std::env::temp_dir().join(format!("nst-bench-vae-{}.safetensors", std::process::id()))
}

/// A model of random weights (seed 0), wholly at the precision under test:
/// VGG and its own convolutions.
fn random_model<M: nst_model::TrainModel>(
    weights: &std::path::Path,
    pooling: Pooling,
    precision: Precision,
    build: impl FnOnce(Vgg) -> nst_model::Result<M>,
) -> Result<M> {
    let vgg = load_vgg(weights, pooling, Precision::Fp32)?;
    tch::manual_seed(0);
    let mut model = build(vgg)?;
    model.set_precision(precision)?;
    Ok(model)
}

fn vae_model(weights: &std::path::Path, precision: Precision) -> Result<nst_vae::VaeAdainModel> {
    random_model(weights, Pooling::Max, precision, |vgg| {
        nst_vae::VaeAdainModel::new(vgg, Default::default(), Default::default())
    })
}

fn decoders_model(
    weights: &std::path::Path,
    precision: Precision,
) -> Result<nst_decoders::Decoders> {
    random_model(weights, Pooling::Max, precision, |vgg| {
        nst_decoders::Decoders::new(vgg, Default::default(), Default::default())
    })
}

fn po_model(weights: &std::path::Path, precision: Precision) -> Result<nst_po::PseudoOptimizer> {
    random_model(weights, Pooling::Avg, precision, |vgg| {
        let cfg = nst_po::PoConfig::new(nst_po::Variant::Propo);
        nst_po::PseudoOptimizer::new(vgg, cfg, Default::default())
    })
}

fn puy_model(weights: &std::path::Path, precision: Precision) -> Result<nst_puy::FlexibleSolver> {
    random_model(weights, Pooling::Avg, precision, |vgg| {
        nst_puy::FlexibleSolver::new(vgg, Default::default(), Default::default())
    })
}

/// Sets every variable of `vs` to N(0, scale²) noise, in the order of their
/// names (so one seed gives the same weights in every process): the
/// Puy–Pérez updates start as no-ops (zero last layers), which would leave
/// nothing to measure.
fn randomize(vs: &tch::nn::VarStore, scale: f64) {
    let mut vars: Vec<_> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (_, mut v) in vars {
            v.copy_(&(Tensor::randn_like(&v) * scale));
        }
    });
}

/// Times an L-BFGS baseline until its loss reaches `goal`. `run` starts it
/// with a callback taking (evaluation, loss) that returns false to stop, and
/// gives back the solver's early-stop note. Returns (seconds, a sentence
/// naming the baseline `who`, its evaluation `limit` and its `loss`).
fn race(
    (who, limit, loss): (&str, &str, &str),
    goal: f64,
    run: impl FnOnce(&mut dyn FnMut(usize, f64) -> bool) -> Result<Option<String>>,
) -> Result<(f64, String)> {
    let t = Instant::now();
    let (mut reached, mut last) = (None, f64::NAN);
    let early = run(&mut |e, l| {
        last = l;
        if l <= goal {
            reached = Some((e, t.elapsed().as_secs_f64()));
        }
        reached.is_none()
    })?;
    Ok(match reached {
        Some((e, secs)) => (
            secs,
            format!("{who} reached it after {e} L-BFGS evaluations in {secs:.1} s"),
        ),
        None => {
            let secs = t.elapsed().as_secs_f64();
            let why = early.map_or_else(String::new, |n| format!("; {n}"));
            (secs, format!("{who} did NOT reach it within {limit} evaluations ({secs:.1} s; {loss} {last:.3e}{why})"))
        }
    })
}

/// ProPO once (median of `repeat`) against Gatys from the same noise until
/// its loss reaches ProPO's (at most 2,000 evaluations).
fn propo_vs_gatys(size: i64, repeat: usize, ck: &std::path::Path, cli: &Cli) -> Result<Outcome> {
    let (precision, gatys_precision) = (cli.precision, cli.gatys_precision);
    let target = &cli.po_target;
    let target_side = cli.po_target_size.unwrap_or(size);
    // The solver at the precision under test (its VGG included); Gatys runs
    // at gatys_precision and the yardstick below stays fp32.
    let nst_model::Loaded { model, meta, .. } =
        nst_model::load::<nst_po::PseudoOptimizer>(ck, Device::Cpu, precision)?;
    let cfg = nst_model::ModelSections::parse(&meta.config, &ck.display().to_string())?;
    let name = match model.variant() {
        nst_po::Variant::Po => "PO",
        nst_po::Variant::Adapo => "AdaPO",
        nst_po::Variant::Propo => "ProPO",
    };
    let img = nst_core::load_image(
        target,
        nst_core::LoadOptions {
            size: nst_core::ImageSize::Exact {
                width: target_side as u32,
                height: target_side as u32,
            },
            device: Device::Cpu,
        },
    )?;
    let tg = model.loss.target(&img)?;
    tch::manual_seed(1);
    let z0 = nst_po::PseudoOptimizer::noise(1, size, size, Device::Cpu);
    let (t_po, _) = time_it(repeat, || {
        Ok(model
            .run(&z0, &tg)?
            .output()
            .sum(Kind::Double)
            .double_value(&[]))
    })?;
    let out = model.run(&z0, &tg)?.output();
    // The yardstick for both sides: the solver's layers and weights through
    // the standard zero-padded VGG, whatever padding the solver trained with
    // (a circular solver's own loss reads the image as a torus).
    let texture_loss = |p: Precision| -> Result<nst_po::TextureLoss> {
        let mut vgg = Vgg::load_or_default(
            cfg.model
                .get("vgg_weights")
                .and_then(|v| v.as_str())
                .map(std::path::Path::new),
            VggOptions::cpu(Pooling::Avg),
        )?;
        vgg.set_precision(p)?;
        Ok(nst_po::TextureLoss::new(
            vgg,
            model.loss.layers.clone(),
            model.loss.weights.clone(),
        )?)
    };
    let reference = texture_loss(Precision::Fp32)?;
    let tg = reference.target(&img)?;
    let q_po = nst_po::eval::quality(&reference, &out, &tg)?;
    let q_noise = nst_po::eval::quality(&reference, &z0.sigmoid(), &tg)?;
    // Gatys's own loss: the yardstick itself in fp32, or a copy at
    // gatys_precision, whose stopping level is the solver output measured by
    // that same copy (so rounding cannot stop it early or late).
    let low = match gatys_precision {
        Precision::Fp32 => None,
        p => {
            let l = texture_loss(p)?;
            let t = l.target(&img)?;
            let stop_at = nst_po::eval::quality(&l, &out, &t)?;
            Some((l, t, stop_at))
        }
    };
    let (g_loss, g_tg, stop_at) = match &low {
        Some((l, t, s)) => (l, t, *s),
        None => (&reference, &tg, q_po),
    };
    let who = format!("Gatys ({gatys_precision})");
    let (t_g, what) = race((&who, "2,000", "its loss"), stop_at, |f| {
        Ok(nst_po::baseline::synthesize(g_loss, g_tg, &z0, 2000, f)?.2)
    })?;
    Ok(Outcome::timed((t_po, t_g / t_po)).with_detail(
        format!("{name} ({precision}) {:.3} s/image (target read at {target_side}²), texture loss {q_po:.3e} (noise input {q_noise:.3e}); {what}: speed-up {:.1}×", t_po, t_g / t_po),
    ))
}

/// The photoreal options of the benchmarks (a fixed cutoff, so both sides do the same work).
fn puy_bench_projection() -> nst_puy::PhotorealOptions {
    nst_puy::PhotorealOptions {
        band: nst_puy::Band::Fraction(0.02),
        work_side: 128,
        degree: 100,
        ..Default::default()
    }
}

/// The photoreal solver (median of `repeat`, projection set-up included)
/// against Gatys + Luan's matting term from the content until its loss L
/// reaches the solver output's (at most 300 evaluations).
fn puy_vs_luan(size: i64, repeat: usize, ck: &std::path::Path, cli: &Cli) -> Result<Outcome> {
    let model: nst_puy::FlexibleSolver =
        nst_model::Model::from_checkpoint(ck, Device::Cpu, Precision::Fp32)?;
    let load = |p: &std::path::Path| {
        nst_core::load_image(
            p,
            nst_core::LoadOptions {
                size: nst_core::ImageSize::LongSide(size as u32),
                device: Device::Cpu,
            },
        )
    };
    let (c, s) = (load(&cli.puy_content)?, load(&cli.puy_style)?);
    let opts = nst_puy::PhotorealOptions::default();
    let mut proj_secs = Vec::new();
    let (t_puy, _) = time_it(repeat, || {
        let t = Instant::now();
        let p = nst_puy::PhotorealProjection::new(&c, opts)?;
        let f = |x: &Tensor| p.apply_image(x);
        let xs = model.run(&c, &s, model.steps(), Some(&f))?;
        proj_secs.push(t.elapsed().as_secs_f64());
        Ok(xs
            .last()
            .map(|x| x.sum(Kind::Double).double_value(&[]))
            .unwrap_or(0.0))
    })?;
    let p = nst_puy::PhotorealProjection::new(&c, opts)?;
    let f = |x: &Tensor| p.apply_image(x);
    let out = model
        .run(&c, &s, model.steps(), Some(&f))?
        .pop()
        .context("no output")?
        .clamp(0.0, 1.0);
    let targets = model.loss.targets(&c, &s)?;
    let l = |x: &Tensor| -> Result<f64> {
        let t = tch::no_grad(|| model.loss.terms(x, &targets))?;
        Ok(model.loss.total(&t).double_value(&[]))
    };
    let (l_in, l_out) = (l(&c)?, l(&out)?);
    if l_out >= l_in {
        return Ok(Outcome::timed((t_puy, f64::NAN)).with_detail(format!(
                "photoreal solver {t_puy:.2} s per image ({size} px long side, k = 1000 on a 128-px grid, {} updates); L: content {l_in:.3e} → output {l_out:.3e}: the solver did not lower L below the content's, so there is no loss for Luan-regularised Gatys to reach (no speed-up figure)",
                model.steps()
        )));
    }
    // The same loss for Gatys, plus λ·Tr(XᵀLX) on the full-resolution Laplacian.
    let (cw, sw, lw) = model.loss.gatys_weights();
    let gcfg = nst_optim::GatysConfig {
        content_layers: vec![model.loss.content_layer],
        style_layers: model.loss.style_layers.clone(),
        style_layer_weights: lw,
        content_weight: cw,
        style_weight: sw,
        steps: 300,
        ..Default::default()
    };
    let gatys = nst_optim::Gatys::new(&model.loss.vgg, gcfg, Some(&c), &s)?
        .with_photorealism(cli.luan_weight)?;
    let who = format!("Luan-regularised Gatys (λ = {:.0e})", cli.luan_weight);
    let (t_g, what) = race((&who, "300", "its L"), l_out, |f| {
        match gatys.run_report(&c, |e, terms| f(e, terms.content + terms.style)) {
            Ok((_, report)) => Ok(report.and_then(|r| r.early_stop_note(300))),
            Err(nst_optim::Error::Interrupted) => Ok(None),
            Err(e) => Err(e.into()),
        }
    })?;
    Ok(Outcome::timed((t_puy, t_g / t_puy)).with_detail(format!(
            "photoreal solver {t_puy:.2} s per image ({size} px long side, k = 1000 on a 128-px grid, {} updates); L: content {l_in:.3e} → output {l_out:.3e}; {what}: speed-up {:.1}×",
            model.steps(),
            t_g / t_puy
    )))
}

/// What a child process measured: the median seconds, the result (loss,
/// checksum or the case's figure), the output image for the bf16-vs-fp32
/// PSNR, and a sentence for the nst-only table.
struct Outcome {
    seconds: f64,
    quality: f64,
    image: Option<Tensor>,
    detail: Option<String>,
}

impl Outcome {
    fn timed((seconds, quality): (f64, f64)) -> Self {
        Outcome {
            seconds,
            quality,
            image: None,
            detail: None,
        }
    }

    fn with_image(mut self, image: Tensor) -> Self {
        self.image = Some(image);
        self
    }

    fn with_detail(mut self, detail: String) -> Self {
        self.detail = Some(detail);
        self
    }

    fn skipped(why: &str) -> Self {
        Self::timed((0.0, f64::NAN)).with_detail(format!("skipped: {why}"))
    }
}

/// The tiling of a tiled case: `--tile`, or by default 2 × 2 tiles (each
/// core about half the side, plus its halo); `Err` with the reason to skip.
fn tiled_plan(
    size: i64,
    tile: Option<i64>,
    (halo, align): (i64, i64),
) -> Result<std::result::Result<(i64, nst_tiling::Tiling), String>> {
    let min = nst_tiling::Tiling::min_tile(halo, align);
    if min >= size {
        return Ok(Err(format!(
            "its smallest tile ({min} px) is not below --size {size}: use a larger --size"
        )));
    }
    let tile = tile.unwrap_or(((size / 2 + halo + align - 1) / align * align).max(min));
    Ok(Ok((tile, nst_tiling::Tiling::new(tile, halo, align)?)))
}

/// Whole against tiled for one family at `size`² with tiles of `tile` px
/// (default: 2 × 2 tiles):
/// the tiled time, with the ratio and the quality in the detail.
fn tiled_case(
    family: TiledCase,
    weights: &std::path::Path,
    size: i64,
    tile: Option<i64>,
    precision: Precision,
    repeat: usize,
) -> Result<Outcome> {
    // The networks whose receptive field sets the halo are built first.
    let puy = match family {
        TiledCase::Puy => Some(puy_model(weights, precision)?),
        _ => None,
    };
    let po = match family {
        TiledCase::Texture => Some(po_model(weights, precision)?),
        _ => None,
    };
    let halo_align = match (&puy, &po) {
        (Some(m), _) => (m.tile_halo(), m.tile_align()),
        // Staged (no room limit here, so the finest split: the levels from
        // stride 2 on whole, a 16-px halo).
        (_, Some(m)) => (
            m.staged_plans(size, size)
                .first()
                .map_or(m.tile_halo(), |p| p.halo),
            nst_po::PseudoOptimizer::TILE_ALIGN,
        ),
        _ => family.tiling(),
    };
    let (tile, tiling) = match tiled_plan(size, tile, halo_align)? {
        Ok(p) => p,
        Err(why) => return Ok(Outcome::skipped(&why)),
    };
    let n = tiling.grid(size, size)?.len();
    let (c, s) = (blobs(size, 1), blobs(size, 2));
    let timed = |run: &mut dyn FnMut(bool) -> Result<Tensor>| whole_and_tiled(repeat, run);
    tch::manual_seed(0);
    let (whole, tiled, quality) = match family {
        TiledCase::Adain => {
            let vgg = load_vgg(weights, Pooling::Max, precision)?;
            let m = nst_adain::AdainModel::new(vgg, 1.0, nst_adain::AdainLoss::default())?;
            let (w, t) =
                timed(&mut |tiled| Ok(m.stylize_tiled(&c, &s, 1.0, tiled.then_some(&tiling))?))?;
            (w, t, None)
        }
        TiledCase::Wct => {
            let m = decoders_model(weights, precision)?;
            let levels = [5u8, 4, 3, 2, 1];
            let (w, t) = timed(&mut |tiled| {
                let t = tiled.then_some(&tiling);
                Ok(nst_decoders::closed_form(
                    &m, &c, &s, true, &levels, 1.0, t,
                )?)
            })?;
            (w, t, None)
        }
        TiledCase::Optex => {
            let m = decoders_model(weights, precision)?;
            let cfg = nst_decoders::OptexConfig::default();
            let styles = [(s.shallow_clone(), 1.0)];
            let (w, t) = timed(&mut |tiled| {
                tch::manual_seed(3);
                let t = tiled.then_some(&tiling);
                Ok(nst_decoders::optimal_textures(
                    &m,
                    &styles,
                    Some(&c),
                    (size, size),
                    &cfg,
                    t,
                )?)
            })?;
            (w, t, None)
        }
        TiledCase::Vae => {
            let m = vae_model(weights, precision)?;
            let (w, t) =
                timed(&mut |tiled| Ok(m.stylize_tiled(&c, &s, 1.0, tiled.then_some(&tiling))?))?;
            (w, t, None)
        }
        TiledCase::Gatys => {
            let vgg = load_vgg(weights, Pooling::Avg, precision)?;
            let cfg = nst_optim::GatysConfig {
                steps: 10,
                ..Default::default()
            };
            let g = nst_optim::Gatys::new(&vgg, cfg, Some(&c), &s)?;
            let (w, t) = timed(&mut |tiled| {
                Ok(if tiled {
                    g.run_tiled(&c, &tiling, 100, |_, _| true)?.0
                } else {
                    g.run_report(&c, |_, _| true)?.0
                })
            })?;
            let loss = |x: &Tensor| -> Result<f64> { Ok(tch::no_grad(|| g.loss(x))?.1.total()) };
            let (lw, lt) = (loss(&w.1)?, loss(&t.1)?);
            (w, t, Some(loss_change(lw, lt)))
        }
        TiledCase::Strotss => {
            let vgg = load_vgg(weights, Pooling::Max, precision)?;
            let cfg = nst_optim::StrotssConfig {
                scales: 1,
                steps_per_scale: 10,
                precision,
                ..Default::default()
            };
            let alpha = cfg.alpha_at(0);
            let st = nst_optim::Strotss::new(&vgg, cfg)?;
            let styles = [nst_optim::StyleInput {
                image: &s,
                weight: 1.0,
            }];
            let (w, t) = timed(&mut |tiled| {
                tch::manual_seed(11);
                let tiles = |_: i64, _: i64| Ok(tiled.then_some(tiling));
                let out = st.run_tiled(&c, &styles, None, tiles, |_, _, _| true)?;
                out.last()
                    .map(|x| x.shallow_clone())
                    .context("STROTSS returned no scale")
            })?;
            let loss =
                |x: &Tensor| -> Result<f64> { Ok(st.measure(x, &c, &styles, alpha, 99)?.total) };
            let (lw, lt) = (loss(&w.1)?, loss(&t.1)?);
            (w, t, Some(loss_change(lw, lt)))
        }
        TiledCase::Puy => {
            let m = puy.context("the Puy–Pérez model")?;
            // Random weights everywhere, so the tiled and whole runs have
            // work to agree on.
            randomize(nst_model::TrainModel::var_store(&m), 0.3);
            let (w, t) = timed(&mut |tiled| {
                let xs = tch::no_grad(|| match tiled {
                    true => m.run_tiled(&c, &s, 4, None, &tiling),
                    false => m.run(&c, &s, 4, None),
                })?;
                xs.last().map(|x| x.shallow_clone()).context("no iterate")
            })?;
            (w, t, None)
        }
        TiledCase::Texture => {
            let m = po.context("the texture solver")?;
            let target = m.loss.target(&s)?;
            tch::manual_seed(1);
            let z0 = nst_po::PseudoOptimizer::noise(1, size, size, Device::Cpu);
            let (w, t) = timed(&mut |tiled| {
                Ok(match tiled {
                    true => m.run_tiled(&z0, &target, &tiling, false)?,
                    false => m.run(&z0, &target)?,
                }
                .output())
            })?;
            (w, t, None)
        }
    };
    let quality = quality.unwrap_or_else(|| {
        let peak = f64::try_from(whole.1.max() - whole.1.min()).unwrap_or(1.0);
        let moved = match family {
            TiledCase::Texture => String::new(),
            _ => format!(
                " (the whole result {:.1} dB from the content)",
                nst_core::psnr(&c, &whole.1, peak)
            ),
        };
        format!(
            "PSNR tiled vs whole {:.1} dB{moved}",
            nst_core::psnr(&tiled.1, &whole.1, peak)
        )
    });
    let ratio = tiled.0 / whole.0;
    Ok(Outcome::timed((tiled.0, ratio)).with_detail(format!(
        "{size}²: whole {:.2} s, {n} tiles of ≤ {tile} px {:.2} s ({ratio:.2}×); {quality}",
        whole.0, tiled.0
    )))
}

/// The whole and the tiled run (`run(false)`, `run(true)`): one warm-up of
/// each, then `repeat` rounds taking turns; the median times and the last
/// outputs.
fn whole_and_tiled(
    repeat: usize,
    run: &mut dyn FnMut(bool) -> Result<Tensor>,
) -> Result<((f64, Tensor), (f64, Tensor))> {
    let (mut whole, mut tiled) = (run(false)?, run(true)?);
    let (mut tw, mut tt) = (Vec::new(), Vec::new());
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        whole = run(false)?;
        tw.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        tiled = run(true)?;
        tt.push(t.elapsed().as_secs_f64());
    }
    Ok(((median(tw), whole), (median(tt), tiled)))
}

/// "final loss … whole, … tiled (±x %)".
fn loss_change(whole: f64, tiled: f64) -> String {
    format!(
        "final loss {whole:.4e} whole, {tiled:.4e} tiled ({:+.2} %)",
        100.0 * (tiled / whole - 1.0)
    )
}

/// Loads the random weights the parent shared with the reference (`--vae-weights`).
fn load_shared(vs: &tch::nn::VarStore, path: Option<&std::path::Path>) -> Result<()> {
    let path = path.context("--vae-weights")?;
    let (tensors, _) = nst_model::checkpoint::read_safetensors(path)?;
    nst_model::checkpoint::load_into(vs, tensors, path)?;
    Ok(())
}

/// One Adam step of a model on a batch, for the training-step cases; returns the loss.
fn train_step(
    model: &mut dyn nst_model::TrainModel,
    adam: &mut nst_train::Adam,
    lr: f64,
    content: &Tensor,
    style: &Tensor,
) -> Result<f64> {
    let out = model.step(content, style)?;
    nst_train::Adam::zero_grad(model.var_store());
    out.loss.backward();
    adam.step(model.var_store(), lr);
    Ok(out.loss.double_value(&[]))
}

/// Runs one case in this process (the `--child` mode).
fn run_child(
    case: Case,
    cli: &Cli,
    size: i64,
    repeat: usize,
    strotss_steps: usize,
) -> Result<CaseResult> {
    use nst_model::TrainModel;
    let weights = nst_vgg::default_weights_path()?;
    let precision = cli.precision;
    let shared = cli.vae_weights.as_deref();
    let out = match case {
        Case::PropoVsGatys { side } => match &cli.po_checkpoint {
            Some(ck) => propo_vs_gatys(side, repeat, ck, cli)?,
            None => Outcome::skipped("give --po-checkpoint (a ProPO run from nst-train)"),
        },
        Case::PuyArtistic => {
            let model = puy_model(&weights, precision)?;
            load_shared(model.var_store(), shared)?;
            let (c, st) = (blobs(size, 41), blobs(size, 42));
            let r = time_it(repeat, || {
                let xs = model.run(&c, &st, 4, None)?;
                Ok(xs[4].sum(Kind::Double).double_value(&[]))
            })?;
            Outcome::timed(r).with_image(model.run(&c, &st, 4, None)?[4].shallow_clone())
        }
        Case::PuyProjection => {
            let c = blobs(size, 43);
            let x = blobs(size, 44);
            let t = Instant::now();
            let p = nst_puy::PhotorealProjection::new(&c, puy_bench_projection())?;
            let setup = t.elapsed().as_secs_f64();
            let r = time_it(repeat, || {
                Ok(p.apply_image(&x).sum(Kind::Double).double_value(&[]))
            })?;
            Outcome::timed(r).with_detail(format!("set-up {setup:.2} s"))
        }
        Case::PuyPhotorealVsLuan => match &cli.puy_checkpoint {
            Some(ck) => puy_vs_luan(size, repeat, ck, cli)?,
            None => Outcome::skipped("give --puy-checkpoint (a puy_perez run from nst-train)"),
        },
        Case::PropoTrainStep => {
            let mut model = po_model(&weights, precision)?;
            load_shared(model.var_store(), shared)?;
            let t = Tensor::cat(&(0..4).map(|i| blobs(128, 20 + i)).collect::<Vec<_>>(), 0);
            let mut adam = nst_train::Adam::new(nst_train::AdamConfig {
                beta1: 0.5,
                ..Default::default()
            });
            Outcome::timed(time_it(repeat, || {
                train_step(&mut model, &mut adam, 2e-4, &t, &t)
            })?)
        }
        Case::ClosedForm { wct } => {
            let model = decoders_model(&weights, precision)?;
            load_shared(model.var_store(), shared)?;
            let (c, s) = (blobs(size, 1), blobs(size, 2));
            let levels: &[u8] = if wct { &[5, 4, 3, 2, 1] } else { &[4] };
            let run = || nst_decoders::closed_form(&model, &c, &s, wct, levels, 1.0, None);
            let r = time_it(repeat, || Ok(run()?.sum(Kind::Double).double_value(&[])))?;
            Outcome::timed(r).with_image(run()?)
        }
        Case::Optex(which) => {
            let model = decoders_model(&weights, precision)?;
            load_shared(model.var_store(), shared)?;
            let strategy = match which {
                OptexCase::Symmetric => nst_decoders::Strategy::Symmetric,
                OptexCase::Pca => nst_decoders::Strategy::Pca,
                OptexCase::Cholesky => nst_decoders::Strategy::Cholesky,
                OptexCase::Cdf | OptexCase::Pyramid => nst_decoders::Strategy::Cdf,
            };
            let (pyramid, out) = if which == OptexCase::Pyramid {
                (3, 2 * size)
            } else {
                (1, size)
            };
            let cfg = nst_decoders::OptexConfig {
                strategy,
                pyramid,
                ..Default::default()
            };
            let style = blobs(size, 2);
            let mut last = None;
            let r = time_it(repeat, || {
                tch::manual_seed(0);
                let y = nst_decoders::optimal_textures(
                    &model,
                    &[(style.shallow_clone(), 1.0)],
                    None,
                    (out, out),
                    &cfg,
                    None,
                )?;
                let q = y.sum(Kind::Double).double_value(&[]);
                last = Some(y);
                Ok(q)
            })?;
            // Texture synthesis from noise has no single right output: its
            // quality figure is the distance of the output's Gram statistics
            // to the exemplar's, measured with an fp32 VGG.
            let y = last.context("no optex output")?;
            let q = texture_distance(&weights, &y, &style)?;
            Outcome::timed((r.0, q)).with_image(y)
        }
        Case::VaeInfer => {
            let model = vae_model(&weights, precision)?;
            load_shared(model.var_store(), shared)?;
            let (c, s) = (blobs(size, 1), blobs(size, 2));
            let r = time_it(repeat, || {
                Ok(tch::no_grad(|| model.stylize(&c, &s, 1.0))?
                    .sum(Kind::Double)
                    .double_value(&[]))
            })?;
            Outcome::timed(r).with_image(tch::no_grad(|| model.stylize(&c, &s, 1.0))?)
        }
        Case::VaeTrainStep => {
            let mut model = vae_model(&weights, precision)?;
            load_shared(model.var_store(), shared)?;
            let (c, s) = (blobs4(256, 1), blobs4(256, 2));
            let mut adam = nst_train::Adam::new(Default::default());
            Outcome::timed(time_it(repeat, || {
                train_step(&mut model, &mut adam, 1e-4, &c, &s)
            })?)
        }
        Case::Strotss | Case::StrotssGuided | Case::StrotssPeer => {
            // strotss_peer: the peer's setting, 3 scales to 256 px.
            let scales = if case == Case::StrotssPeer {
                3
            } else {
                cli.strotss_scales
            };
            let (secs, q, y) = strotss_run(
                &weights,
                case.px(size),
                scales,
                strotss_steps,
                cli.strotss_seed,
                case == Case::StrotssGuided,
                precision,
            )?;
            Outcome::timed((secs, q)).with_image(y)
        }
        Case::VggFeatures => {
            let vgg = load_vgg(&weights, Pooling::Max, precision)?;
            let taps: Vec<Tap> = (1..=5).map(|b| Tap::relu(b, 1)).collect();
            let x = blobs(size, 0);
            Outcome::timed(time_it(repeat, || {
                let f = tch::no_grad(|| vgg.encode(&x, &taps))?;
                Ok(f.iter()
                    .map(|(_, t)| t.sum(Kind::Double).double_value(&[]))
                    .sum())
            })?)
        }
        Case::GatysStep => {
            let vgg = load_vgg(&weights, Pooling::Avg, precision)?;
            let (c, s) = (blobs(size, 1), blobs(size, 2));
            let g = nst_optim::Gatys::new(&vgg, nst_optim::GatysConfig::default(), Some(&c), &s)?;
            let x = blobs(size, 3);
            Outcome::timed(time_it(repeat, || {
                let xv = x.detach().set_requires_grad(true);
                let (loss, _) = g.loss(&xv)?;
                let grad = Tensor::run_backward(&[&loss], &[&xv], false, false);
                Ok(loss.double_value(&[]) + 0.0 * grad[0].sum(Kind::Double).double_value(&[]))
            })?)
        }
        Case::AdainTrainStep => {
            let vgg = load_vgg(&weights, Pooling::Max, precision)?;
            tch::manual_seed(0);
            let mut model = nst_adain::AdainModel::new(vgg, 1.0, nst_adain::AdainLoss::default())?;
            let (c, s) = (blobs4(256, 1), blobs4(256, 2));
            let mut adam = nst_train::Adam::new(Default::default());
            Outcome::timed(time_it(repeat, || {
                train_step(&mut model, &mut adam, 1e-4, &c, &s)
            })?)
        }
        Case::Loader { threads } => {
            let dir = tempfile::tempdir()?;
            let ds = fake_jpegs(dir.path(), 64)?;
            let cfg = nst_data::PipelineConfig {
                resize_shorter: 288,
                crop: 256,
                batch_size: 8,
                threads,
                prefetch: 4,
                ..Default::default()
            };
            let mut loader = nst_data::Loader::new(ds, cfg, 0, Default::default())?;
            loader.next_batch()?; // warm-up
            let n = 8 * repeat.max(2) * 2;
            let t = Instant::now();
            for _ in 0..n / 8 {
                loader.next_batch()?;
            }
            let secs = t.elapsed().as_secs_f64();
            Outcome::timed((secs, n as f64 / secs))
        }
        Case::Tiled(family) => tiled_case(family, &weights, size, cli.tile, precision, repeat)?,
        Case::TrainDataWait => {
            let vgg = load_vgg(&weights, Pooling::Max, precision)?;
            let mut model = nst_adain::AdainModel::new(vgg, 1.0, nst_adain::AdainLoss::default())?;
            let dir = tempfile::tempdir()?;
            let ds = fake_jpegs(dir.path(), 32)?;
            let cfg = nst_data::PipelineConfig {
                resize_shorter: 288,
                crop: 256,
                batch_size: 4,
                threads: 2,
                prefetch: 4,
                ..Default::default()
            };
            let mut lc = nst_data::Loader::new(ds.clone(), cfg.clone(), 1, Default::default())?;
            let mut ls = nst_data::Loader::new(ds, cfg, 2, Default::default())?;
            let mut adam = nst_train::Adam::new(Default::default());
            let (mut wait, mut compute) = (0.0, 0.0);
            for i in 0..repeat.max(2) + 1 {
                let t0 = Instant::now();
                let (c, s) = (lc.next_batch()?.images, ls.next_batch()?.images);
                let w = t0.elapsed().as_secs_f64();
                let t1 = Instant::now();
                train_step(&mut model, &mut adam, 1e-4, &c, &s)?;
                if i > 0 {
                    wait += w;
                    compute += t1.elapsed().as_secs_f64();
                }
            }
            Outcome::timed((wait + compute, 100.0 * wait / (wait + compute)))
        }
    };
    if let (Some(path), Some(y)) = (&cli.save_image, &out.image) {
        let y = y.clamp(0.0, 1.0);
        let y = if y.dim() == 4 { y.get(0) } else { y };
        nst_core::save_image(&y, path)?;
    }
    Ok(CaseResult {
        case: case.name(),
        seconds: out.seconds,
        peak_mb: peak_rss_mb(),
        quality: case.compares_result().then_some(out.quality),
        detail: out.detail,
    })
}

fn spawn(cmd: &mut Command, what: &str) -> Result<CaseResult> {
    let out = cmd.output().with_context(|| format!("starting {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("no JSON result")?;
    Ok(serde_json::from_str(line)?)
}

#[global_allocator]
static GLOBAL: nst_core::alloc::MiMalloc = nst_core::alloc::MiMalloc;

fn main() -> Result<()> {
    // nst's side runs with the allocator of its binaries (nst_core::alloc);
    // the PyTorch side keeps Python's (glibc's malloc) unless --tuned-reference.
    let setting = nst_core::alloc::configure_allocator();
    let cli = Cli::parse();
    let size = cli.size.unwrap_or(if cli.quick { 256 } else { 512 });
    let repeat = if cli.quick { 1 } else { cli.repeat.max(1) };
    let strotss_steps = cli
        .strotss_steps
        .unwrap_or(if cli.quick { 10 } else { 200 });
    if let Some(case) = &cli.child {
        let r = run_child(case.parse()?, &cli, size, repeat, strotss_steps)?;
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var_os("NST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    let weights = nst_vgg::default_weights_path()?;
    let wanted: Vec<Case> = match &cli.cases {
        Some(c) => c
            .split(',')
            .map(|n| n.trim().parse())
            .collect::<Result<_>>()?,
        None => Case::ALL.to_vec(),
    };
    let me = std::env::current_exe()?;
    let mut rows = Vec::new();
    eprintln!(
        "machine: {} cores, {}; LibTorch threads {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_name(),
        tch::get_num_threads()
    );
    let allocator = match (setting, cli.tuned_reference) {
        (nst_core::alloc::AllocatorSetting::KeepFreed, false) => "nst's processes use mimalloc and keep freed memory for reuse (`nst_core::alloc`, as nst-train and nst-infer do); the PyTorch processes keep glibc's malloc defaults, as a PyTorch user has (--tuned-reference tunes them)",
        (nst_core::alloc::AllocatorSetting::KeepFreed, true) => "nst's processes use mimalloc and keep freed memory for reuse (`nst_core::alloc`); the PyTorch processes run glibc's malloc without unmapping or trimming (MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ at 2 GiB, --tuned-reference)",
        (nst_core::alloc::AllocatorSetting::UserChoice, _) => "nst's processes use mimalloc with the environment's MIMALLOC_PURGE_DELAY",
    };
    eprintln!("allocator: {allocator}");
    let mut solo = Vec::new();
    for case in wanted {
        let (name, desc) = (case.name(), case.description());
        if case.solo() {
            eprintln!("running {name} ({desc}) ...");
            let mut cmd = Command::new(&me);
            cmd.args(std::env::args_os().skip(1))
                .args(["--child", &name]);
            let r = spawn(&mut cmd, "nst")?;
            solo.push((case, desc, r));
            continue;
        }
        eprintln!("running {name} at {}px ({desc}) ...", case.px(size));
        let vae_file = vae_weights_path();
        {
            use nst_model::TrainModel;
            match case.shared_weights() {
                Some(SharedWeights::Vae) => vae_model(&weights, Precision::Fp32)?
                    .var_store()
                    .save(&vae_file)?,
                Some(SharedWeights::Decoders) => decoders_model(&weights, Precision::Fp32)?
                    .var_store()
                    .save(&vae_file)?,
                Some(SharedWeights::Propo) => po_model(&weights, Precision::Fp32)?
                    .var_store()
                    .save(&vae_file)?,
                Some(SharedWeights::Puy) => {
                    let m = puy_model(&weights, Precision::Fp32)?;
                    // Non-zero last convs, so the whole update is exercised.
                    randomize(m.var_store(), 0.05);
                    m.var_store().save(&vae_file)?;
                }
                None => {}
            }
        }
        let vae_args = ["--vae-weights".to_string(), vae_file.display().to_string()];
        let images = tempfile::tempdir()?;
        let nst_at = |p: Precision| -> Result<CaseResult> {
            spawn(
                Command::new(&me)
                    .args(std::env::args_os().skip(1))
                    .args(["--child", &name, "--precision", &p.to_string()])
                    .arg("--save-image")
                    .arg(images.path().join(format!("{p}.png")))
                    .args(&vae_args),
                &format!("nst ({p})"),
            )
        };
        let ours = nst_at(Precision::Fp32)?;
        let reduced = if cli.precision.is_reduced() && case != Case::PuyProjection {
            let r = nst_at(cli.precision)?;
            let psnr = psnr(
                &images.path().join("fp32.png"),
                &images.path().join(format!("{}.png", cli.precision)),
            );
            Some((r, psnr))
        } else {
            None
        };
        let (ref_case, guided): (String, &[&str]) = if case == Case::StrotssGuided {
            (Case::Strotss.name(), &["--guided"])
        } else {
            (name.clone(), &[])
        };
        // The reference takes --size S as nst's side does, except the peer's fixed setting.
        let (ref_size, ref_scales) = if case == Case::StrotssPeer {
            (256, 3)
        } else {
            (size, cli.strotss_scales)
        };
        let mut reference = Command::new(&python);
        if cli.tuned_reference {
            let t = i32::MAX.to_string();
            reference
                .env("MALLOC_MMAP_THRESHOLD_", &t)
                .env("MALLOC_TRIM_THRESHOLD_", &t);
        }
        let theirs = spawn(
            reference
                .arg(root.join("bench/torch_ref.py"))
                .args([
                    &ref_case,
                    "--size",
                    &ref_size.to_string(),
                    "--repeat",
                    &repeat.to_string(),
                ])
                .args([
                    "--scales",
                    &ref_scales.to_string(),
                    "--steps",
                    &strotss_steps.to_string(),
                    "--seed",
                    &cli.strotss_seed.to_string(),
                ])
                .args(guided)
                .args(cli.reference_bf16.then_some("--autocast-bf16"))
                .args(cli.reference_channels_last.then_some("--channels-last"))
                .args(&vae_args)
                .arg("--weights")
                .arg(&weights),
            "PyTorch reference",
        );
        let _ = std::fs::remove_file(&vae_file);
        let theirs = theirs?;
        rows.push((case, desc, ours, theirs, reduced));
    }
    let theirs_label = match (cli.reference_bf16, cli.reference_channels_last) {
        (false, false) => "PyTorch eager",
        (true, false) => "PyTorch eager, bf16 autocast",
        (false, true) => "PyTorch eager, channels-last",
        (true, true) => "PyTorch eager, bf16 autocast, channels-last",
    };
    let mut md = format!(
        "| case | nst (s) | {theirs_label} (s) | ratio nst/PyTorch | nst peak RSS (MB) | PyTorch peak RSS (MB) | result nst / PyTorch (rel. diff) |\n|---|---|---|---|---|---|---|\n",
    );
    for (case, _, o, t, _) in &rows {
        let qd = match (o.quality, t.quality) {
            // Different objectives (the peer's loss is not nst's): nothing to compare.
            _ if *case == Case::StrotssPeer => "n/a (different objectives)".into(),
            // nst reports the texture's Gram distance, the reference a checksum.
            _ if !case.results_comparable() => "n/a".into(),
            (Some(a), Some(b)) => format!(
                "{a:.4e} / {b:.4e} ({:.1e})",
                (a - b).abs() / b.abs().max(1e-12)
            ),
            _ => "n/a".into(),
        };
        md += &format!(
            "| {case} {}px | {:.3} | {:.3} | {:.2} | {:.0} | {:.0} | {qd} |\n",
            case.px(size),
            o.seconds,
            t.seconds,
            o.seconds / t.seconds,
            o.peak_mb,
            t.peak_mb
        );
    }
    if cli.precision.is_reduced() {
        let p = cli.precision;
        md += &format!(
            "\n### {p} against fp32\n\nQuality guard, {p} against fp32 on the same seed: the result (loss, checksum, or for Optimal Textures the distance of the output's Gram statistics to the exemplar's) within {:.0} % for one-shot work (a forward pass, a training step, a feed-forward stylisation), {:.0} % for whole optimisations (STROTSS) and {:.0} % for syntheses from noise (Optimal Textures); the output PSNR at least {FLOOR_FEEDFORWARD_DB:.0} dB for one-shot work and {FLOOR_OPTIMISATION_DB:.0} dB for optimisations, whose trajectories part ways. A synthesis from noise is one sample of a texture, and sorting-based matching reorders under any perturbation, so its PSNR is shown but not guarded.\n\n| case | nst fp32 (s) | nst {p} (s) | {p} speed-up | {} (s) | ratio nst {p}/PyTorch | nst {p} peak RSS (MB) | result fp32 / {p} (rel. diff) | PSNR {p} vs fp32 (dB) | guard |\n|---|---|---|---|---|---|---|---|---|---|\n",
            TOL_FEEDFORWARD * 100.0,
            TOL_OPTIMISATION * 100.0,
            TOL_SYNTHESIS * 100.0,
            if cli.reference_bf16 {
                "PyTorch bf16 autocast"
            } else {
                "PyTorch fp32"
            },
        );
        for (case, _, o, t, red) in &rows {
            let Some((b, psnr)) = red else { continue };
            let (tol, floor) = case.guard();
            let (qd, q_ok) = match (o.quality, b.quality) {
                (Some(x), Some(y)) => {
                    let rel = (x - y).abs() / x.abs().max(1e-12);
                    (format!("{x:.4e} / {y:.4e} ({rel:.1e})"), rel <= tol)
                }
                _ => ("n/a".into(), true),
            };
            let (ps, p_ok) = match (psnr, floor) {
                (Some(v), Some(f)) => (format!("{v:.1}"), *v >= f),
                (Some(v), None) => (format!("{v:.1} (not guarded)"), true),
                (None, _) => ("n/a".into(), true),
            };
            md += &format!(
                "| {case} {}px | {:.3} | {:.3} | {:.2}× | {:.3} | {:.2} | {:.0} | {qd} | {ps} | {} |\n",
                case.px(size),
                o.seconds,
                b.seconds,
                o.seconds / b.seconds,
                t.seconds,
                b.seconds / t.seconds,
                b.peak_mb,
                if q_ok && p_ok { "pass" } else { "FAIL" }
            );
        }
    }
    if !solo.is_empty() {
        md += "\n| nst-only case | figure | peak RSS (MB) |\n|---|---|---|\n";
        for (case, desc, r) in &solo {
            let fig = match *case {
                _ if r.detail.is_some() => r.detail.clone().unwrap_or_default(),
                Case::TrainDataWait => format!(
                    "{:.1}% of step time waiting for data",
                    r.quality.unwrap_or(f64::NAN)
                ),
                _ => format!("{:.1} images/s", r.quality.unwrap_or(f64::NAN)),
            };
            md += &format!("| {case}: {desc} | {fig} | {:.0} |\n", r.peak_mb);
        }
    }
    println!("{md}");
    if let Some(p) = &cli.markdown {
        let header = format!(
            "# Benchmarks\n\nMachine: {} ({} cores). Command: `cargo run --release -p nst-bench -- --size {}{}{}`.\nMedian of {repeat} timed runs after a warm-up; each implementation in its own process. The STROTSS rows are one whole run on each side, with no warm-up on either side.\nAllocator: {}.\n\n",
            cpu_name(),
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            size,
            if cli.quick { " --quick" } else { "" },
            if cli.precision.is_reduced() {
                format!(" --precision {}", cli.precision)
            } else {
                String::new()
            },
            allocator
        );
        nst_core::fsutil::write_bytes_atomic(p, (header + &md).as_bytes())?;
    }
    Ok(())
}

/// Quality guard of `--precision bf16`: largest relative change of a case's
/// result (loss or checksum) for one-shot work (a forward pass, a training
/// step, a feed-forward stylisation) and for whole optimisations (STROTSS),
/// and the lowest PSNR of the output image against fp32's.
const TOL_FEEDFORWARD: f64 = 0.02;
const TOL_OPTIMISATION: f64 = 0.05;
const FLOOR_FEEDFORWARD_DB: f64 = 30.0;
const FLOOR_OPTIMISATION_DB: f64 = 20.0;
const TOL_SYNTHESIS: f64 = 0.10;

/// Σ_ℓ ‖G_ℓ(y) − G_ℓ(s)‖² / ‖G_ℓ(s)‖² over relu1_1…relu5_1, with an fp32
/// VGG: how far a synthesised texture's statistics are from the exemplar's.
fn texture_distance(weights: &std::path::Path, y: &Tensor, s: &Tensor) -> Result<f64> {
    let vgg = load_vgg(weights, Pooling::Avg, Precision::Fp32)?;
    let taps: Vec<Tap> = (1..=5).map(|b| Tap::relu(b, 1)).collect();
    let (fy, fs) =
        tch::no_grad(|| -> Result<_> { Ok((vgg.encode(y, &taps)?, vgg.encode(s, &taps)?)) })?;
    let mut d = 0.0;
    for &t in &taps {
        let (gy, gs) = (nst_losses::gram(&fy[t]), nst_losses::gram(&fs[t]));
        d += (&gy - &gs).square().sum(Kind::Double).double_value(&[])
            / gs.square().sum(Kind::Double).double_value(&[]).max(1e-30);
    }
    Ok(d)
}

/// PSNR in dB of two 8-bit images of the same size (None if either is missing).
fn psnr(a: &std::path::Path, b: &std::path::Path) -> Option<f64> {
    let (a, b) = (
        image::open(a).ok()?.to_rgb8(),
        image::open(b).ok()?.to_rgb8(),
    );
    if a.dimensions() != b.dimensions() {
        return None;
    }
    let n = a.as_raw().len() as f64;
    let mse = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / n;
    Some(if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    })
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
