//! Operator parity with PyTorch, shapes, interpolation, sampling and the overfit test.
#![allow(clippy::unwrap_used)]
use crate::*;
use nst_testkit::{assert_close, torch_reference, vgg19_weights};
use nst_train::{ModelIdentity, TrainModel, Trainer};
use nst_vgg::{Pooling, Tap, Vgg, VggOptions};
use std::sync::Mutex;
use tch::{Device, Kind, Tensor};

/// The tests below reseed LibTorch's global generator.
static SERIAL: Mutex<()> = Mutex::new(());

fn vgg() -> Vgg {
    Vgg::load(vgg19_weights(), VggOptions::cpu(Pooling::Max)).unwrap()
}

fn small(content_encoder: ContentEncoderKind, style_encoder: StyleEncoderKind) -> VaeAdainModel {
    let cfg = VaeModelConfig {
        width: 0.25,
        style_dim: 8,
        hidden: 32,
        content_encoder,
        style_encoder,
        ..Default::default()
    };
    VaeAdainModel::new(vgg(), cfg, VaeLoss::default()).unwrap()
}

#[test]
fn operators_match_pytorch() {
    let _rng = nst_testkit::rng_lock();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(11);
    let r = |s: &[i64]| Tensor::randn(s, (Kind::Float, Device::Cpu));
    let (mu, logvar, eps) = (r(&[3, 6]) * 2.0, r(&[3, 6]), r(&[3, 6]));
    // e1/e2 close together for some rows (hinge inactive) and far for others.
    let (e1, s) = (r(&[4, 5]), r(&[4, 5]));
    let e2 = &e1 + r(&[4, 5]) * Tensor::from_slice(&[0.1f32, 3.0, 0.1, 3.0]).view([4, 1]);
    let x = r(&[2, 4, 5, 7]) * 3.0 + 1.0;
    let (sigma, mean) = (r(&[2, 4]).abs() + 0.1, r(&[2, 4]));
    let want = torch_reference(
        "vae_ref.py",
        &[
            ("mu", &mu),
            ("logvar", &logvar),
            ("eps", &eps),
            ("e1", &e1),
            ("e2", &e2),
            ("s", &s),
            ("x", &x),
            ("sigma", &sigma),
            ("mean", &mean),
        ],
        &[] as &[&str],
    );
    assert_close(
        &reparameterize(&mu, &logvar, &eps),
        &want["z"],
        1e-6,
        "reparameterisation",
    );
    assert_close(
        &kl_divergence(&mu, &logvar).reshape([1]),
        &want["kl"],
        1e-5,
        "KL",
    );
    assert_close(
        &disentanglement_loss(&e1, &e2, &s).reshape([1]),
        &want["hinge"],
        1e-5,
        "disentanglement",
    );
    assert_close(
        &adain_with(&x, &sigma, &mean),
        &want["adain"],
        1e-5,
        "AdaIN with given parameters",
    );
    // The hinge is zero when both stylisations coincide, and KL is zero at the prior.
    assert_eq!(disentanglement_loss(&e1, &e1, &s).double_value(&[]), 0.0);
    assert!(
        kl_divergence(&mu.zeros_like(), &logvar.zeros_like())
            .double_value(&[])
            .abs()
            < 1e-7
    );
}

#[test]
fn shapes_for_every_encoder_choice() {
    let _rng = nst_testkit::rng_lock();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(0);
    for (ce, se) in [
        (ContentEncoderKind::Vgg, StyleEncoderKind::VggStats),
        (ContentEncoderKind::Learned, StyleEncoderKind::Conv),
    ] {
        let m = small(ce, se);
        for (h, w) in [(32, 32), (40, 64)] {
            let c = Tensor::rand([2, 3, h, w], (Kind::Float, Device::Cpu));
            let s = Tensor::rand([2, 3, 48, 40], (Kind::Float, Device::Cpu));
            let code = m.encode_content(&c).unwrap();
            assert_eq!(code.size(), [2, 512, h / 8, w / 8], "{ce:?}");
            let (mu, logvar) = m.encode_style(&s).unwrap();
            assert_eq!(mu.size(), [2, 8]);
            assert_eq!(logvar.size(), [2, 8]);
            let params = m.adain_params(&mu);
            let chans: Vec<i64> = params.iter().map(|(s, _)| s.size()[1]).collect();
            assert_eq!(
                chans,
                [512, 64, 32, 16],
                "AdaIN channels at each decoder level"
            );
            assert!(
                params.iter().all(|(s, _)| s.min().double_value(&[]) > 0.0),
                "σ̂ must be positive"
            );
            let y = m.stylize(&c, &s, 1.0).unwrap();
            assert_eq!(y.size(), [2, 3, h, w]);
            let y = m.stylize(&c, &s, 0.5).unwrap();
            assert_eq!(y.size(), [2, 3, h, w]);
        }
        assert_eq!(m.kind(), KIND);
    }
}

#[test]
fn interpolation_endpoints_reproduce_each_style() {
    let _rng = nst_testkit::rng_lock();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(1);
    let m = small(ContentEncoderKind::Vgg, StyleEncoderKind::VggStats);
    let c = Tensor::rand([1, 3, 32, 32], (Kind::Float, Device::Cpu));
    let a = Tensor::rand([1, 3, 32, 32], (Kind::Float, Device::Cpu));
    let b = Tensor::rand([1, 3, 32, 32], (Kind::Float, Device::Cpu)).square();
    let (ma, _) = m.encode_style(&a).unwrap();
    let (mb, _) = m.encode_style(&b).unwrap();
    let with_a = m.stylize(&c, &a, 1.0).unwrap();
    let mixed = mix_codes(&[ma.shallow_clone(), mb.shallow_clone()], &[1.0, 0.0]).unwrap();
    let via_mix = m.stylize_code(&c, &mixed, 1.0).unwrap();
    assert_close(
        &via_mix,
        &with_a,
        1e-6,
        "weight 1.0 on style a = stylisation with a",
    );
    let half = mix_codes(&[ma.shallow_clone(), mb.shallow_clone()], &[0.3, 0.3]).unwrap();
    assert_close(
        &half,
        &((&ma + &mb) * 0.5),
        1e-6,
        "equal weights = midpoint",
    );
    assert!(mix_codes(&[ma.shallow_clone()], &[1.0, 2.0]).is_err());
    assert!(mix_codes(&[ma, mb], &[0.0, 0.0]).is_err());
}

#[test]
fn sampling_is_deterministic_for_a_seed() {
    let _rng = nst_testkit::rng_lock();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let a = sample_codes(8, 8, 1, 1.0, Device::Cpu);
    let b = sample_codes(8, 8, 1, 1.0, Device::Cpu);
    let c = sample_codes(8, 8, 2, 1.0, Device::Cpu);
    assert_eq!(a.size(), [8, 8]);
    assert_eq!((&a - &b).abs().max().double_value(&[]), 0.0);
    assert!((&a - &c).abs().max().double_value(&[]) > 0.1);
    let m = small(ContentEncoderKind::Vgg, StyleEncoderKind::VggStats);
    let x = Tensor::rand([1, 3, 24, 24], (Kind::Float, Device::Cpu));
    let y1 = m.stylize_code(&x.repeat([8, 1, 1, 1]), &a, 1.0).unwrap();
    let y2 = m.stylize_code(&x.repeat([8, 1, 1, 1]), &b, 1.0).unwrap();
    assert_eq!((&y1 - &y2).abs().max().double_value(&[]), 0.0);
    assert!(
        m.stylize_code(&x, &sample_codes(1, 9, 1, 1.0, Device::Cpu), 1.0)
            .is_err(),
        "a code of the wrong size is an error"
    );
}

#[test]
fn kl_weight_anneals_linearly() {
    let _rng = nst_testkit::rng_lock();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let loss = VaeLoss {
        kl_weight: 0.5,
        kl_anneal_steps: 100,
        ..Default::default()
    };
    let mut m = VaeAdainModel::new(
        vgg(),
        VaeModelConfig {
            width: 0.25,
            hidden: 16,
            ..Default::default()
        },
        loss,
    )
    .unwrap();
    m.set_step(0);
    assert_eq!(m.kl_weight_now(), 0.0);
    m.set_step(50);
    assert!((m.kl_weight_now() - 0.25).abs() < 1e-12);
    m.set_step(1000);
    assert!((m.kl_weight_now() - 0.5).abs() < 1e-12);
}

/// Overfit: 2 contents × 2 styles at 64 px. The total loss must fall at least
/// 3× within 150 steps, and the outputs' Gram style loss must end below that
/// of the unstylised contents.
#[test]
fn overfits_two_contents_and_two_styles() {
    let _rng = nst_testkit::rng_lock();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let model_lines = "width = 0.5\nstyle_dim = 16\nhidden = 128";
    let loss_lines = "kl_weight = 1e-3\nkl_anneal_steps = 50\ndisentangle_weight = 0.1";
    let text = nst_testkit::overfit_config(d.path(), KIND, model_lines, loss_lines, 150);
    let (model, log) = Trainer::train_recorded::<VaeAdainModel>(&text, 0, Device::Cpu).unwrap();
    for key in ["content", "style", "kl", "disentangle", "total"] {
        assert!(log[0].contains_key(key), "term {key} is logged");
    }
    for i in [0, 1, 2, 5, 10, 20, 50, 100, 149] {
        eprintln!("step {i}: {:?}", log[i]);
    }
    let totals: Vec<f64> = log.iter().map(|t| t["total"]).collect();
    nst_testkit::assert_loss_fell(&totals, 3.0);

    let taps: Vec<Tap> = (1..=4).map(|b| Tap::relu(b, 1)).collect();
    nst_testkit::assert_closer_in_style(
        d.path(),
        |c, s| model.stylize(c, s, 1.0).unwrap(),
        |x| model.vgg.encode(x, &taps).unwrap().into_maps(),
    );
}

/// Tiled stylisation against the whole image, with an untrained model (the
/// computation, not the look, is under test): 256² with 160-px tiles (3 × 3),
/// at alpha 0.7 so that the content's own code (its style statistics taken
/// tile by tile) and every decoder AdaIN layer's global statistics are used.
/// PSNR over the output's range.
#[test]
fn tiled_vae_adain_matches_the_whole_image() {
    let _rng = nst_testkit::rng_lock();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(7);
    let load = |p: &str, n: u32| nst_testkit::sample_image(p, n, n);
    let (c, s) = (
        load("samples/content/astronaut.png", 256),
        load("samples/style/coffee.png", 192),
    );
    for kind in [StyleEncoderKind::VggStats, StyleEncoderKind::Conv] {
        let model = small(ContentEncoderKind::Vgg, kind);
        // The untiled path is the plain one.
        let whole = model.stylize_tiled(&c, &s, 0.7, None).unwrap();
        let plain = tch::no_grad(|| model.stylize(&c, &s, 0.7)).unwrap();
        assert_eq!(f64::try_from((&whole - &plain).abs().max()).unwrap(), 0.0);
        let peak = f64::try_from(whole.max() - whole.min()).unwrap();
        assert!(peak > 0.05, "untrained output too flat to compare: {peak}");
        // The style code from tiled statistics (a 192² style in 64-px windows).
        let t64 = nst_tiling::Tiling::new(64 + 2 * 32, 32, 16).unwrap();
        let (mu_t, lv_t) = tch::no_grad(|| model.encode_style_tiled(&s, &t64)).unwrap();
        let (mu, lv) = tch::no_grad(|| model.encode_style(&s)).unwrap();
        assert!(nst_testkit::rel_err(&mu_t, &mu) < 1e-4, "{kind:?} μ");
        assert!(nst_testkit::rel_err(&lv_t, &lv) < 1e-4, "{kind:?} log σ²");
        let tiling = nst_tiling::Tiling::new(160, HALO, STRIDE).unwrap();
        assert!(tiling.grid(256, 256).unwrap().len() >= 9);
        let tiled = model.stylize_tiled(&c, &s, 0.7, Some(&tiling)).unwrap();
        let db = nst_core::psnr(&tiled, &whole, peak);
        assert!(db >= 40.0, "{kind:?}: tiled vs whole {db:.1} dB");
        // A budget that keeps no decoder map between passes recomputes them: the same image.
        let mut tight = tiling;
        tight.cache_bytes = Some(0);
        let again = model.stylize_tiled(&c, &s, 0.7, Some(&tight)).unwrap();
        assert!(nst_testkit::rel_err(&again, &tiled) < 1e-5);
        // Without a halo the tiles disagree at their boundaries.
        let bare = nst_tiling::Tiling::new(160, 0, STRIDE).unwrap();
        let db0 = nst_core::psnr(
            &model.stylize_tiled(&c, &s, 0.7, Some(&bare)).unwrap(),
            &whole,
            peak,
        );
        assert!(
            db0 < db - 6.0,
            "halo 0: {db0:.1} dB, halo {HALO}: {db:.1} dB"
        );
        eprintln!("{kind:?}: tiled vs whole at 256², tiles of 160: {db:.1} dB (halo {HALO}), {db0:.1} dB (no halo); output range {peak:.3}");
    }
    // The learned content encoder is not tiled: one clear error.
    let learned = small(ContentEncoderKind::Learned, StyleEncoderKind::VggStats);
    let t = nst_tiling::Tiling::new(160, HALO, STRIDE).unwrap();
    let e = learned.stylize_tiled(&c, &s, 1.0, Some(&t)).err().unwrap();
    assert!(e.to_string().contains("content_encoder"), "{e}");
}
