//! The bf16 quality guard at small size (issue 9): Gatys and STROTSS run in
//! bf16 and in fp32 from the same seed; the bf16 result's loss must be within
//! a stated tolerance of fp32's and its image within a stated PSNR of it.
//! The same bounds are the guard of `nst-bench --precision bf16`.
#![allow(clippy::unwrap_used)]
use crate::strotss::{Strotss, StrotssConfig};
use crate::strotss_tests::{blobs, run_single};
use crate::*;
use nst_testkit::vgg19_weights;
use nst_vgg::{Pooling, Precision, Vgg, VggOptions};
use tch::{Device, Tensor};

/// Whole optimisations diverge in detail once their first steps differ in
/// rounding, so the guard is on the objective and on a PSNR floor well above
/// that of unrelated images (which sits near 10–12 dB).
const LOSS_TOL: f64 = 0.05;
const PSNR_FLOOR_DB: f64 = 20.0;

fn vgg(pooling: Pooling, p: Precision) -> Vgg {
    Vgg::load(
        vgg19_weights(),
        VggOptions {
            pooling,
            device: Device::Cpu,
        },
    )
    .unwrap()
    .with_precision(p)
    .unwrap()
}

/// PSNR of two images in [0, 1], after 8-bit quantisation as when saved.
fn psnr(a: &Tensor, b: &Tensor) -> f64 {
    let q = |x: &Tensor| (x.clamp(0.0, 1.0) * 255.0).round();
    nst_core::psnr(&q(a), &q(b), 255.0)
}

#[test]
fn gatys_bf16_reaches_the_fp32_loss_and_image() {
    let _serial = crate::tests::serial();
    let exact = vgg(Pooling::Avg, Precision::Fp32);
    let (c, s) = (blobs(64, 64, 1), blobs(64, 64, 2));
    // 80 evaluations: at 40 the loss still falls ~5 % per 5 evaluations, and
    // one line-search bump in either run (bf16's rounding changes the path)
    // moved the comparison by 8 % on an AMX machine; at 60–120 the two agree
    // within 3 %.
    let cfg = GatysConfig {
        steps: 80,
        ..Default::default()
    };
    let mut outs = Vec::new();
    for p in [Precision::Fp32, Precision::Bf16] {
        let v = vgg(Pooling::Avg, p);
        let g = Gatys::new(&v, cfg.clone(), Some(&c), &s).unwrap();
        outs.push(g.run(&g.initial_image(64, 64), |_, _| true).unwrap());
    }
    // Both results scored by the exact (fp32) objective.
    let judge = Gatys::new(&exact, cfg, Some(&c), &s).unwrap();
    let l = |x: &Tensor| tch::no_grad(|| judge.loss(x).unwrap().0.double_value(&[]));
    let (l32, l16) = (l(&outs[0]), l(&outs[1]));
    let start = l(&judge.initial_image(64, 64));
    assert!(
        l32 < start / 5.0,
        "fp32 run did not converge: {start} → {l32}"
    );
    let rel = (l16 - l32).abs() / l32;
    assert!(
        rel <= LOSS_TOL,
        "bf16 loss {l16:.4e} vs fp32 {l32:.4e}: {rel:.3}"
    );
    let p = psnr(&outs[0], &outs[1]);
    assert!(
        p >= PSNR_FLOOR_DB,
        "bf16 image PSNR {p:.1} dB < {PSNR_FLOOR_DB}"
    );
}

#[test]
fn strotss_bf16_reaches_the_fp32_loss_and_image() {
    let _serial = crate::tests::serial();
    let (c, s) = (blobs(48, 64, 3), blobs(64, 64, 4));
    let mut finals = Vec::new();
    let mut outs = Vec::new();
    // fp32, bf16 on the same seed, and fp32 on another seed: STROTSS samples
    // locations at random, so seed-to-seed variation is its own noise floor.
    for (p, seed) in [
        (Precision::Fp32, 0),
        (Precision::Bf16, 0),
        (Precision::Fp32, 1),
    ] {
        let v = vgg(Pooling::Max, p);
        let cfg = StrotssConfig {
            scales: 2,
            steps_per_scale: 25,
            output_samples: 256,
            style_samples: 600,
            lr: 2e-2,
            precision: p,
            ..Default::default()
        };
        tch::manual_seed(seed);
        let mut last = Vec::new();
        let solver = Strotss::new(&v, cfg).unwrap();
        let out = run_single(&solver, &c, &s, |scale, step, t| {
            if scale == 1 && step > 15 {
                last.push(t.total);
            }
            true
        });
        finals.push(last.iter().sum::<f64>() / last.len() as f64);
        outs.push(out.last().unwrap().shallow_clone());
    }
    let rel = (finals[1] - finals[0]).abs() / finals[0];
    eprintln!(
        "finals fp32 {:.4e} bf16 {:.4e} fp32 seed 1 {:.4e}",
        finals[0], finals[1], finals[2]
    );
    assert!(
        rel <= LOSS_TOL,
        "bf16 final loss {:.4e} vs fp32 {:.4e}: {rel:.3}",
        finals[1],
        finals[0]
    );
    // At this test's high learning rate (10× the default) the runs part ways
    // within a few steps, so the floor is the method's own seed-to-seed PSNR
    // rather than a fixed figure: bf16 must move the result about as far as
    // drawing other sample locations does, not further (3 dB of slack: the
    // two distances vary between builds by about 1 dB; an unrelated image
    // sits near 10 dB).
    let p = psnr(&outs[0], &outs[1]);
    let seed_floor = psnr(&outs[0], &outs[2]) - 3.0;
    eprintln!(
        "bf16 vs fp32 PSNR {p:.1} dB; seed-to-seed {:.1} dB",
        seed_floor + 3.0
    );
    assert!(
        p >= seed_floor.min(PSNR_FLOOR_DB),
        "bf16 image PSNR {p:.1} dB below the seed-to-seed floor {seed_floor:.1} dB"
    );
}
