//! VGG19 to `relu5_1` in NCHW and channels-last layout, fp32 and bf16:
//! forward, and forward + backward to the input.
//!
//! `cargo run --release -p nst-vgg --example vgg_layout -- [SIZE] [REPEAT]`
use nst_vgg::{EncodeOptions, Precision, Tap, Vgg, VggOptions};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[global_allocator]
static GLOBAL: nst_core::alloc::MiMalloc = nst_core::alloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    nst_core::alloc::configure_allocator();
    let args: Vec<String> = std::env::args().collect();
    let size: i64 = args.get(1).map_or(Ok(256), |s| s.parse())?;
    let repeat: usize = args.get(2).map_or(Ok(4), |s| s.parse())?;
    let taps: Vec<Tap> = [
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
        (3, 1),
        (3, 2),
        (3, 3),
        (4, 1),
        (5, 1),
    ]
    .iter()
    .map(|&(b, i)| Tap::relu(b, i))
    .collect();
    let x0 = Tensor::rand([1, 3, size, size], (Kind::Float, Device::Cpu));
    for p in [Precision::Fp32, Precision::Bf16] {
        let vgg = Vgg::load(
            nst_vgg::default_weights_path()?,
            VggOptions {
                pooling: Default::default(),
                device: Device::Cpu,
            },
        )?
        .with_precision(p)?;
        for channels_last in [false, true] {
            let opts = EncodeOptions {
                channels_last,
                keep_precision: true,
            };
            let time = |backward: bool| -> Result<f64, nst_vgg::Error> {
                let mut total = 0.0;
                for i in 0..=repeat {
                    let x = x0.detach().set_requires_grad(backward);
                    let t = Instant::now();
                    let f = vgg.encode_with(&x, &taps, opts)?;
                    if backward {
                        let s = f
                            .iter()
                            .map(|(_, m)| m.to_kind(Kind::Float).square().mean(Kind::Float))
                            .fold(Tensor::zeros([], (Kind::Float, Device::Cpu)), |a, b| a + b);
                        s.backward();
                        let _ = x.grad().sum(Kind::Float).double_value(&[]);
                    } else {
                        let _ = f[taps[8]].sum(Kind::Float).double_value(&[]);
                    }
                    if i > 0 {
                        total += t.elapsed().as_secs_f64();
                    }
                }
                Ok(1e3 * total / repeat as f64)
            };
            let fwd = tch::no_grad(|| time(false))?;
            let both = time(true)?;
            println!("{p} {size}px channels_last={channels_last}: forward {fwd:.0} ms, forward + backward {both:.0} ms");
        }
    }
    Ok(())
}
