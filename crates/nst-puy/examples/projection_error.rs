//! The error and cost of the photoreal projection against the exact
//! eigenprojector U_kU_kᵀ, on an image small enough for a dense eigendecomposition.
//!
//!     cargo run --release -p nst-puy --example projection_error -- photo.jpg [side] [k]
use nst_puy::{Band, MattingLaplacian, PhotorealOptions, PhotorealProjection};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: projection_error IMAGE [side] [k]")?;
    let side: u32 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let k: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(100);
    tch::manual_seed(0);
    let img = nst_core::load_image(
        path,
        nst_core::LoadOptions {
            size: nst_core::ImageSize::LongSide(side),
            device: Device::Cpu,
        },
    )?;
    let (h, w) = (img.size()[2], img.size()[3]);
    let l = MattingLaplacian::new(&img, 1e-7)?;
    let t = Instant::now();
    let (evals, evecs) = l.dense().linalg_eigh("L");
    println!(
        "{w}x{h}, k = {k}: dense eigh {:.1} s; λ_k = {:.3e}",
        t.elapsed().as_secs_f64(),
        evals.double_value(&[k as i64 - 1])
    );
    let uk = evecs.narrow(1, 0, k as i64);
    let exact = |x: &Tensor| {
        let v = x.reshape([3, h * w]).to_kind(Kind::Double).transpose(0, 1);
        uk.matmul(&uk.transpose(0, 1).matmul(&v))
            .transpose(0, 1)
            .reshape([1, 3, h, w])
    };
    // A stylised-looking signal: the content with a colour shift and noise.
    let x = (&img * 0.7 + 0.2 + Tensor::randn([1, 3, h, w], (Kind::Float, Device::Cpu)) * 0.1)
        .to_kind(Kind::Double);
    let px = exact(&x);
    println!("work side | degree | rel. error vs U_kU_kᵀx | Tr(XᵀLX)/Tr(PxᵀLPx exact) | set-up s | apply s");
    for (ws, deg) in [
        (side as i64, 100),
        (side as i64, 300),
        (side as i64 / 2, 100),
        (side as i64 / 4, 100),
    ] {
        let opts = PhotorealOptions {
            band: Band::Count(k),
            work_side: ws,
            degree: deg,
            probes: 16,
            ..Default::default()
        };
        let t = Instant::now();
        let p = PhotorealProjection::new(&img, opts)?;
        let setup = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let q = p.apply_image(&x.to_kind(Kind::Float)).to_kind(Kind::Double);
        let apply = t.elapsed().as_secs_f64();
        let err = (&q - &px).norm().double_value(&[]) / px.norm().double_value(&[]);
        let e_ratio = l.quadratic_form(&q.squeeze_dim(0)) / l.quadratic_form(&px.squeeze_dim(0));
        println!(
            "{ws:>9} | {deg:>6} | {err:>22.3} | {e_ratio:>26.2} | {setup:>8.2} | {apply:>7.3}"
        );
    }
    Ok(())
}
