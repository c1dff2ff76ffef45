//! AdaIN operator parity with PyTorch, decoder shapes, and the overfit test.
#![allow(clippy::unwrap_used)]
use crate::*;
use nst_testkit::{assert_close, torch_reference, vgg19_weights};
use nst_train::{ModelIdentity, Trainer};
use tch::{nn, nn::Module, Device, Kind, Tensor};

#[test]
fn adain_and_statistics_match_pytorch() {
    let _rng = nst_testkit::rng_lock();
    tch::manual_seed(4);
    let c = Tensor::randn([2, 5, 7, 6], (Kind::Float, Device::Cpu)) * 3.0 + 1.0;
    let s = Tensor::randn([2, 5, 9, 4], (Kind::Float, Device::Cpu)) * 0.5 - 2.0;
    let want = torch_reference("adain_ref.py", &[("c", &c), ("s", &s)], &[] as &[&str]);
    let (m, sd) = mean_std(&c, ops::EPS);
    assert_close(&m, &want["mean_c"], 1e-5, "mean");
    assert_close(&sd, &want["std_c"], 1e-5, "std");
    assert_close(&adain(&c, &s), &want["adain"], 1e-5, "adain");
    // The output carries the style's statistics.
    let (mo, so) = mean_std(&adain(&c, &s), ops::EPS);
    let (ms, ss) = mean_std(&s, ops::EPS);
    assert_close(&mo, &ms, 1e-4, "output mean = style mean");
    assert_close(&so, &ss, 1e-3, "output std = style std");
}

#[test]
fn decoder_mirrors_the_encoder_shapes() {
    let _rng = nst_testkit::rng_lock();
    let vs = nn::VarStore::new(Device::Cpu);
    let dec = decoder(&vs.root(), 0.25, 255.0);
    for (h, w) in [(8, 8), (5, 12)] {
        let y = dec.forward(&Tensor::rand([2, 512, h, w], (Kind::Float, Device::Cpu)));
        assert_eq!(y.size(), [2, 3, h * 8, w * 8]);
    }
    let names: Vec<String> = vs.variables().into_keys().collect();
    assert!(
        names.contains(&"decoder.conv4_1.weight".to_string())
            || names.contains(&"conv4_1.weight".to_string()),
        "{names:?}"
    );
}

#[test]
fn bf16_decoder_stays_near_fp32_and_trains_fp32_weights() {
    let _rng = nst_testkit::rng_lock();
    let vs = nn::VarStore::new(Device::Cpu);
    let mut dec = decoder(&vs.root(), 0.25, 255.0);
    tch::manual_seed(5);
    let f = Tensor::rand([1, 512, 6, 5], (Kind::Float, Device::Cpu)) * 255.0;
    let exact = dec.forward(&f);
    dec.set_precision(nst_vgg::Precision::Bf16);
    let y = dec.forward(&f);
    assert_eq!(y.kind(), Kind::Float);
    // Nine bf16 convolutions: about 2^-8 relative rounding each.
    let e = nst_testkit::rel_err(&y, &exact);
    assert!(
        e > 0.0 && e < 3e-2,
        "bf16 decoder vs fp32: relative error {e:.3e}"
    );
    // Mixed precision training: the gradient reaches the fp32 weights.
    y.sum(Kind::Float).backward();
    for (name, v) in vs.variables() {
        assert_eq!(v.kind(), Kind::Float, "{name} must stay fp32");
        assert!(
            v.grad().defined() && v.grad().kind() == Kind::Float,
            "{name} has no fp32 gradient"
        );
    }
}

/// Overfit: 2 contents × 2 styles at 64 px; the total loss must fall at least
/// 3× within 150 steps, and the outputs' style loss must end below that of
/// the unstylised content images.
#[test]
fn overfits_two_contents_and_two_styles() {
    let _rng = nst_testkit::rng_lock();
    let d = tempfile::tempdir().unwrap();
    let text =
        nst_testkit::overfit_config(d.path(), KIND, "width = 0.5", "style_weight = 10.0", 150);
    let (model, log) = Trainer::train_recorded::<AdainModel>(&text, 0, Device::Cpu).unwrap();
    let totals: Vec<f64> = log.iter().map(|t| t["total"]).collect();
    nst_testkit::assert_loss_fell(&totals, 3.0);

    // Style loss of the outputs vs that of the unstylised contents, against their styles.
    let taps: Vec<nst_vgg::Tap> = (1..=4).map(|b| nst_vgg::Tap::relu(b, 1)).collect();
    nst_testkit::assert_closer_in_style(
        d.path(),
        |c, s| model.stylize(c, s, 1.0).unwrap(),
        |x| model.vgg.encode(x, &taps).unwrap().into_maps(),
    );
    assert_eq!(model.kind(), "adain");
}

/// Tiled stylisation of a 256² photo with 160-px tiles (3 × 3) against the whole
/// image, with an untrained decoder (the computation, not the look, is
/// under test): PSNR over the output's range.
#[test]
fn tiled_stylisation_matches_the_whole_image() {
    let _rng = nst_testkit::rng_lock();
    tch::manual_seed(7);
    let vgg = nst_vgg::Vgg::load(
        vgg19_weights(),
        nst_vgg::VggOptions::cpu(nst_vgg::Pooling::Max),
    )
    .unwrap();
    let model = AdainModel::new(vgg, 0.25, AdainLoss::default()).unwrap();
    let load = |p: &str, n: u32| nst_testkit::sample_image(p, n, n);
    let (c, s) = (
        load("samples/content/astronaut.png", 256),
        load("samples/style/coffee.png", 192),
    );
    let whole = model.stylize_tiled(&c, &s, 1.0, None).unwrap();
    // The batch path and the one-image path agree.
    let batch = tch::no_grad(|| model.stylize(&c, &s, 1.0)).unwrap();
    assert!(nst_testkit::rel_err(&whole, &batch) < 1e-4);
    let tiling = nst_tiling::Tiling::new(160, HALO, STRIDE).unwrap();
    let tiled = model.stylize_tiled(&c, &s, 1.0, Some(&tiling)).unwrap();
    let peak = f64::try_from(whole.max() - whole.min()).unwrap();
    let db = nst_core::psnr(&tiled, &whole, peak);
    assert!(tiling.grid(256, 256).unwrap().len() >= 9);
    assert!(db >= 40.0, "tiled vs whole: {db:.1} dB");
    // Without a halo the tiles disagree at their boundaries.
    let bare = nst_tiling::Tiling::new(160, 0, STRIDE).unwrap();
    let db0 = nst_core::psnr(
        &model.stylize_tiled(&c, &s, 1.0, Some(&bare)).unwrap(),
        &whole,
        peak,
    );
    assert!(
        db0 < db - 6.0,
        "halo 0: {db0:.1} dB, halo {HALO}: {db:.1} dB"
    );
    eprintln!(
        "tiled vs whole at 256², tiles of 160: {db:.1} dB (halo {HALO}), {db0:.1} dB (no halo)"
    );
}
