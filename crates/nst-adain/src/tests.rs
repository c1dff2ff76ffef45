//! AdaIN operator parity with PyTorch, decoder shapes, and the overfit test.
#![allow(clippy::unwrap_used)]
use crate::*;
use nst_model::Model;
use nst_testkit::{assert_close, torch_reference, vgg19_weights};
use nst_train::{NullLogger, TrainConfig, TrainModel, Trainer, TrainerHooks};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tch::{nn, nn::Module, Device, Kind, Tensor};

#[test]
fn adain_and_statistics_match_pytorch() {
    let _rng = nst_testkit::rng_lock();
    tch::manual_seed(4);
    let c = Tensor::randn([2, 5, 7, 6], (Kind::Float, Device::Cpu)) * 3.0 + 1.0;
    let s = Tensor::randn([2, 5, 9, 4], (Kind::Float, Device::Cpu)) * 0.5 - 2.0;
    let want = torch_reference("adain_ref.py", &[("c", &c), ("s", &s)], &[]);
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
    nst_testkit::write_tiny_images(&d.path().join("c"), false);
    nst_testkit::write_tiny_images(&d.path().join("s"), true);
    let text = format!(
        r#"
[model]
kind = "adain"
vgg_weights = "{w}"
width = 0.5
[data]
content = {{ kind = "folder", root = "{c}" }}
style = {{ kind = "folder", root = "{s}" }}
resize_shorter = 64
crop = 64
flip = false
batch_size = 2
threads = 1
[loss]
style_weight = 10.0
[optim]
lr = 1e-3
[train]
run = "overfit"
steps = 150
seed = 0
device = "cpu"
checkpoint_dir = "{ck}"
checkpoint_every = 1000
"#,
        w = vgg19_weights().display(),
        c = d.path().join("c").display(),
        s = d.path().join("s").display(),
        ck = d.path().join("ck").display(),
    );
    let cfg = TrainConfig::parse(&text, &[], "overfit").unwrap();
    tch::manual_seed(0);
    let mut model = AdainModel::from_config(&cfg.model, &cfg.loss, Device::Cpu).unwrap();
    let log: Arc<Mutex<Vec<BTreeMap<String, f64>>>> = Arc::default();
    let l = log.clone();
    let hooks = TrainerHooks {
        on_step: Some(Box::new(move |_, t| l.lock().unwrap().push(t.clone()))),
        ..Default::default()
    };
    Trainer::new(&cfg, Device::Cpu)
        .run(&mut model, None, &mut NullLogger, hooks)
        .unwrap();
    let log = log.lock().unwrap();
    let first = log[0]["total"];
    let last10: f64 = log[log.len() - 10..]
        .iter()
        .map(|t| t["total"])
        .sum::<f64>()
        / 10.0;
    eprintln!(
        "overfit: total loss {first:.4e} -> {last10:.4e} (mean of last 10), ratio {:.1}",
        first / last10
    );
    assert!(
        last10 * 3.0 < first,
        "total loss fell only from {first} to {last10}"
    );

    // Style loss of the outputs vs that of the unstylised contents, against their styles.
    let load = |p: std::path::PathBuf| nst_core::load_image(p, Default::default()).unwrap();
    let c = Tensor::cat(
        &[
            load(d.path().join("c/0.png")),
            load(d.path().join("c/1.png")),
        ],
        0,
    );
    let s = Tensor::cat(
        &[
            load(d.path().join("s/0.png")),
            load(d.path().join("s/1.png")),
        ],
        0,
    );
    let out = tch::no_grad(|| model.stylize(&c, &s, 1.0)).unwrap();
    let style_loss = |x: &Tensor| -> f64 {
        let taps: Vec<nst_vgg::Tap> = (1..=4).map(|b| nst_vgg::Tap::relu(b, 1)).collect();
        let fx = model.vgg.encode(x, &taps).unwrap();
        let fs = model.vgg.encode(&s, &taps).unwrap();
        taps.iter()
            .map(|&t| nst_losses::gram_loss(&fx[t], &nst_losses::gram(&fs[t])).double_value(&[]))
            .sum()
    };
    let (lo, lc) = tch::no_grad(|| (style_loss(&out), style_loss(&c)));
    eprintln!("Gram style loss: outputs {lo:.4e}, unstylised contents {lc:.4e}");
    assert!(
        lo < lc,
        "stylised outputs ({lo}) must be closer in style than the contents ({lc})"
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
        nst_vgg::VggOptions {
            pooling: nst_vgg::Pooling::Max,
            device: Device::Cpu,
        },
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
