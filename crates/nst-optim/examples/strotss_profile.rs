//! Where one STROTSS step's time goes, at one scale: the parts of a step of
//! `nst_optim::Strotss::run` timed one by one (each forced to finish before
//! the next starts), in fp32 and bf16.
//!
//! `cargo run --release -p nst-optim --example strotss_profile -- [SIZE] [STEPS]`
use nst_losses::strotss::{
    mean_and_cov, moment_loss_to_fast_at, remd_cosine, remd_euclidean,
    self_similarity_loss_fast_at, UnitPool,
};
use nst_losses::{hypercolumns, random_coords};
use nst_vgg::{EncodeOptions, Pooling, Precision, Vgg, VggOptions};
use std::collections::BTreeMap;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

// As in nst's binaries (see nst_core::alloc): freed memory is reused.
#[global_allocator]
static GLOBAL: nst_core::alloc::MiMalloc = nst_core::alloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    nst_core::alloc::configure_allocator();
    let args: Vec<String> = std::env::args().collect();
    let size: i64 = args.get(1).map_or(Ok(256), |s| s.parse())?;
    let steps: usize = args.get(2).map_or(Ok(10), |s| s.parse())?;
    // STROTSS's hypercolumn layers.
    let layers = nst_optim::StrotssConfig::default().layers;
    // NST_LAYOUT=nchw: the maps in NCHW and fp32, as before channels-last sampling.
    let opts = if std::env::var("NST_LAYOUT").as_deref() == Ok("nchw") {
        EncodeOptions::default()
    } else {
        EncodeOptions {
            channels_last: true,
            keep_precision: true,
        }
    };
    for p in [Precision::Fp32, Precision::Bf16] {
        let vgg = Vgg::load(
            nst_vgg::default_weights_path()?,
            VggOptions::cpu(Pooling::Max),
        )?
        .with_precision(p)?;
        tch::manual_seed(0);
        let x0 = Tensor::rand([1, 3, size / 16, size / 16], (Kind::Float, Device::Cpu))
            .upsample_bilinear2d([size, size], false, None, None);
        let style = Tensor::rand([1, 3, size / 16, size / 16], (Kind::Float, Device::Cpu))
            .upsample_bilinear2d([size, size], false, None, None);
        let (pool, mom, spx, cfeats) = tch::no_grad(|| -> Result<_, nst_vgg::Error> {
            let sf = vgg.encode_with(&style, &layers, opts)?;
            let refs: Vec<&Tensor> = layers.iter().map(|&l| &sf[l]).collect();
            let c = random_coords(size, size, 5000, Device::Cpu);
            let feats = hypercolumns(&refs, &c, (size, size));
            let px = hypercolumns(&[&style], &c, (size, size));
            let cf = vgg.encode_with(&x0, &layers, opts)?;
            Ok((UnitPool::new(&feats, p), mean_and_cov(&feats), px, cf))
        })?;
        let mut times: BTreeMap<&str, f64> = BTreeMap::new();
        let mut lap = |name: &'static str, t: &mut Instant, x: &Tensor| {
            // Force the work to finish before reading the clock.
            let _ = x.sum(Kind::Float).double_value(&[]);
            *times.entry(name).or_default() += t.elapsed().as_secs_f64();
            *t = Instant::now();
        };
        for _ in 0..steps {
            let x = x0.detach().set_requires_grad(true);
            let mut clock = Instant::now();
            let f = vgg.encode_with(&x, &layers, opts)?;
            let fr: Vec<&Tensor> = layers.iter().map(|&l| &f[l]).collect();
            lap("1 vgg forward", &mut clock, &fr[8]);
            let coords = random_coords(size, size, 1024, Device::Cpu);
            let of = hypercolumns(&fr, &coords, (size, size));
            let op = hypercolumns(&[&x], &coords, (size, size));
            let cr: Vec<&Tensor> = layers.iter().map(|&l| &cfeats[l]).collect();
            let cf = tch::no_grad(|| hypercolumns(&cr, &coords, (size, size)));
            lap("2 sampling", &mut clock, &of);
            let lc = self_similarity_loss_fast_at(&cf, &of, p) * 1024.0;
            lap("3 self-similarity", &mut clock, &lc);
            let lr = remd_cosine(&of, &pool, None);
            lap("4 remd", &mut clock, &lr);
            let lm = moment_loss_to_fast_at(&mom.0, &mom.1, &of, p);
            lap("5 moments", &mut clock, &lm);
            let lp = remd_euclidean(&op, &spx, None);
            lap("6 palette", &mut clock, &lp);
            let total = nst_losses::strotss_total(16.0, &lc, &lm, &lr, &lp);
            total.backward();
            lap("7 backward", &mut clock, &x.grad());
        }
        // For scale: the VGG alone, forward and backward through all taps.
        let mut vgg_only = 0.0;
        for _ in 0..steps {
            let x = x0.detach().set_requires_grad(true);
            let clock = Instant::now();
            let f = vgg.encode_with(&x, &layers, opts)?;
            let s = layers
                .iter()
                .map(|&l| f[l].mean(Kind::Float))
                .fold(Tensor::zeros([], (Kind::Float, Device::Cpu)), |a, b| a + b);
            s.backward();
            let _ = x.grad().sum(Kind::Float).double_value(&[]);
            vgg_only += clock.elapsed().as_secs_f64();
        }
        let all: f64 = times.values().sum();
        println!(
            "{p}: VGG alone, forward + backward through the 9 taps: {:.0} ms",
            1e3 * vgg_only / steps as f64
        );
        println!(
            "{p} at {size} px, {:.0} ms per step:",
            1e3 * all / steps as f64
        );
        for (k, v) in &times {
            println!("  {k:<18} {:7.1} ms", 1e3 * v / steps as f64);
        }
    }
    Ok(())
}
