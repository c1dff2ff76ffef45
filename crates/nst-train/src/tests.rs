//! Engine tests with a tiny model: exact resume, interrupt, NaN, pruning,
//! model-kind checks, and TensorBoard events read by the official reader.
#![allow(clippy::unwrap_used)]
use crate::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tch::{nn, nn::Module, Device, Reduction, Tensor};

/// LibTorch's RNG is process-wide: see `nst_testkit::rng_lock`.
use nst_testkit::rng_lock as serial;

/// One conv mapping content to style colours; can be told to produce NaN.
struct Tiny {
    vs: nn::VarStore,
    conv: nn::Conv2D,
    calls: u64,
    nan_at: Option<u64>,
    kind: &'static str,
    uses_content: bool,
}

impl Tiny {
    fn new(seed: i64) -> Self {
        tch::manual_seed(seed);
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = nn::conv2d(
            vs.root() / "conv",
            3,
            3,
            3,
            nn::ConvConfig {
                padding: 1,
                ..Default::default()
            },
        );
        Self {
            vs,
            conv,
            calls: 0,
            nan_at: None,
            kind: "tiny",
            uses_content: true,
        }
    }
}

impl nst_model::ModelIdentity for Tiny {
    fn kind(&self) -> &str {
        self.kind
    }
}

impl TrainModel for Tiny {
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    fn uses_content(&self) -> bool {
        self.uses_content
    }
    fn step(&mut self, content: &Tensor, style: &Tensor) -> nst_model::Result<StepOutput> {
        self.calls += 1;
        // Dropout makes the step depend on LibTorch's RNG, which the trainer seeds per step.
        let out = self.conv.forward(content).dropout(0.1, true);
        let mut fit = out.mse_loss(style, Reduction::Mean);
        if self.nan_at == Some(self.calls) {
            fit = fit * f64::NAN;
        }
        let tv = (out.narrow(3, 1, 31) - out.narrow(3, 0, 31))
            .square()
            .mean(tch::Kind::Float)
            * 0.1;
        Ok(StepOutput {
            loss: &fit + &tv,
            terms: vec![("fit".into(), fit), ("tv".into(), tv)],
        })
    }
    fn sample_grid(&self, content: &Tensor, style: &Tensor) -> nst_model::Result<Tensor> {
        let out = self.conv.forward(content).clamp(0.0, 1.0);
        Ok(Tensor::cat(&[content.get(0), style.get(0), out.get(0)], 2))
    }
}

fn images(dir: &Path, n: u32, salt: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        image::RgbImage::from_fn(40, 36, |x, y| {
            image::Rgb([
                (x * 6 + i * 20) as u8,
                (y * 7 + salt) as u8,
                (i * 30 + salt) as u8,
            ])
        })
        .save(dir.join(format!("{i}.png")))
        .unwrap();
    }
}

fn config(root: &Path, run: &str, steps: u64, extra: &[&str]) -> TrainConfig {
    images(&root.join("content"), 6, 0);
    images(&root.join("style"), 5, 100);
    let text = format!(
        r#"
[model]
kind = "tiny"
[data]
content = {{ kind = "folder", root = "{c}" }}
style = {{ kind = "folder", root = "{s}" }}
resize_shorter = 36
crop = 32
batch_size = 2
threads = 2
[optim]
lr = 0.01
lr_decay = 0.01
[train]
run = "{run}"
steps = {steps}
seed = 5
device = "cpu"
checkpoint_dir = "{ck}"
checkpoint_every = 3
[log]
dir = "{logs}"
scalar_every = 1
image_every = 2
"#,
        c = root.join("content").display(),
        s = root.join("style").display(),
        ck = root.join("ck").display(),
        logs = root.join("runs").display(),
    );
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    TrainConfig::parse(&text, &extra, "test").unwrap()
}

/// Trains `m` on `cfg` without logging or hooks, resuming from `resume`.
fn train(cfg: &TrainConfig, m: &mut Tiny, resume: Option<&Path>) -> crate::Result<TrainOutcome> {
    Trainer::new(cfg, Device::Cpu).run(m, resume, &mut NullLogger, TrainerHooks::default())
}

/// The names of the files in `dir`.
fn file_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn recording() -> (TrainerHooks, Arc<Mutex<Vec<(u64, f64)>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let hooks = TrainerHooks {
        on_step: Some(Box::new(move |s: u64, t: &BTreeMap<String, f64>| {
            l.lock().unwrap().push((s, t["total"]))
        })),
        ..Default::default()
    };
    (hooks, log)
}

#[test]
fn resume_continues_exactly_and_the_loss_falls() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    // Uninterrupted: 8 steps.
    let cfg = config(d.path(), "full", 8, &[]);
    let mut m = Tiny::new(1);
    let (hooks, full) = recording();
    let out = Trainer::new(&cfg, Device::Cpu)
        .run(&mut m, None, &mut NullLogger, hooks)
        .unwrap();
    assert!(matches!(out, TrainOutcome::Finished { step: 8, .. }));
    let full = full.lock().unwrap().clone();
    // Random content/style pairs cannot be fitted exactly; the loss still falls clearly.
    assert!(full[7].1 < full[0].1 * 0.8, "loss should fall: {full:?}");

    // Same run in two parts: 3 steps, then resume to 8.
    let cfg3 = config(d.path(), "split", 3, &[]);
    let mut m = Tiny::new(1);
    train(&cfg3, &mut m, None).unwrap();
    let cfg8 = config(d.path(), "split", 8, &[]);
    let mut fresh = Tiny::new(99); // different init: everything must come from the checkpoint
    let (hooks, resumed) = recording();
    Trainer::new(&cfg8, Device::Cpu)
        .run(&mut fresh, Some(&cfg8.run_dir()), &mut NullLogger, hooks)
        .unwrap();
    let resumed = resumed.lock().unwrap().clone();
    assert_eq!(
        resumed.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![4, 5, 6, 7, 8]
    );
    for (a, b) in resumed.iter().zip(&full[3..]) {
        assert_eq!(
            a, b,
            "resumed loss curve differs from the uninterrupted one"
        );
    }
}

#[test]
fn interrupt_writes_a_checkpoint_and_nan_keeps_the_last_good_one() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), "int", 20, &[]);
    let mut m = Tiny::new(1);
    let (mut hooks, _) = recording();
    let stop = hooks.stop.clone();
    hooks.on_step = Some(Box::new(move |s, _| {
        if s == 4 {
            stop.store(true, Ordering::SeqCst);
        }
    }));
    let out = Trainer::new(&cfg, Device::Cpu)
        .run(&mut m, None, &mut NullLogger, hooks)
        .unwrap();
    match out {
        TrainOutcome::Interrupted {
            step: 4,
            checkpoint: Some(p),
        } => assert!(p.ends_with("step_0000004.json")),
        o => panic!("{o:?}"),
    }
    let latest = std::fs::read_to_string(cfg.run_dir().join("latest")).unwrap();
    assert_eq!(latest.trim(), "step_0000004");
    assert!(cfg.run_dir().join("config.toml").exists());

    // NaN at the 5th step after resuming (step 9): step 6 was the last checkpoint.
    let mut m = Tiny::new(1);
    m.nan_at = Some(5);
    let e = train(&cfg, &mut m, Some(&cfg.run_dir()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("step 9") && e.contains("\"fit\"") && e.contains("NaN"),
        "{e}"
    );
    let latest = std::fs::read_to_string(cfg.run_dir().join("latest")).unwrap();
    assert_eq!(
        latest.trim(),
        "step_0000006",
        "the last good checkpoint stays `latest`"
    );
    let names = file_names(&cfg.run_dir());
    assert!(
        !names.iter().any(|n| n.contains(".tmp-")),
        "temporary files left: {names:?}"
    );
}

#[test]
fn keeps_the_last_k_and_refuses_other_models() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let cfg = config(
        d.path(),
        "keep",
        5,
        &["train.checkpoint_every=1", "train.keep_last=2"],
    );
    let mut m = Tiny::new(1);
    train(&cfg, &mut m, None).unwrap();
    let mut jsons = file_names(&cfg.run_dir());
    jsons.retain(|n| n.starts_with("step_"));
    jsons.sort();
    assert_eq!(
        jsons,
        vec![
            "step_0000004.json",
            "step_0000004.optim.safetensors",
            "step_0000004.safetensors",
            "step_0000005.json",
            "step_0000005.optim.safetensors",
            "step_0000005.safetensors"
        ]
    );
    // The weights file names its model kind.
    let (_, meta) =
        checkpoint::read_safetensors(&cfg.run_dir().join("step_0000005.safetensors")).unwrap();
    assert_eq!(meta["model_kind"], "tiny");

    // A checkpoint of another model kind is refused, naming both kinds.
    let mut other = Tiny::new(1);
    other.kind = "adain";
    let cfg_other = config(d.path(), "keep", 6, &["model.kind=\"adain\""]);
    let e = train(&cfg_other, &mut other, Some(&cfg.run_dir()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"tiny\"") && e.contains("\"adain\""), "{e}");
    // Mismatched weights are listed.
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = nn::linear(vs.root() / "fc", 2, 2, Default::default());
    let e = Checkpoint::load_weights(&cfg.run_dir().join("step_0000005.safetensors"), &vs, "tiny")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing [fc.bias, fc.weight]")
            && e.contains("unexpected [conv.bias, conv.weight]"),
        "{e}"
    );
}

#[test]
fn tensorboard_events_are_read_by_the_official_reader() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), "tb", 4, &[]);
    let mut m = Tiny::new(1);
    let tb_dir = cfg.log.dir.join(&cfg.train.run);
    let mut tb = TensorBoard::new(&tb_dir).unwrap();
    Trainer::new(&cfg, Device::Cpu)
        .run(&mut m, None, &mut tb, TrainerHooks::default())
        .unwrap();
    drop(tb);
    let v = nst_testkit::read_tensorboard(&tb_dir);
    for tag in [
        "loss/total",
        "loss/fit",
        "loss/tv",
        "optim/lr",
        "perf/images_per_s",
        "perf/data_wait_s",
        "perf/compute_s",
    ] {
        let pts = v["scalars"][tag]
            .as_array()
            .unwrap_or_else(|| panic!("no scalar {tag}: {v}"));
        assert_eq!(pts.len(), 4, "{tag}: {pts:?}");
    }
    let lr = &v["scalars"]["optim/lr"];
    assert!((lr[0][1].as_f64().unwrap() - 0.01).abs() < 1e-6);
    let imgs = v["images"]["samples/content_style_output"]
        .as_array()
        .unwrap();
    // Steps 2 and 4; the 96x32 grid is padded to a 96x96 square.
    assert_eq!(imgs.len(), 2, "{imgs:?}");
    assert_eq!(
        imgs[0].as_array().unwrap()[1..],
        [serde_json::json!(96), serde_json::json!(96)]
    );
}

#[test]
fn a_model_without_content_trains_on_the_style_stream_alone() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), "nocontent", 2, &[]);
    cfg.data.content = None;
    let mut m = Tiny::new(1);
    let e = train(&cfg, &mut m, None).unwrap_err();
    assert!(e.to_string().contains("data.content is missing"), "{e}");
    m.uses_content = false;
    let out = train(&cfg, &mut m, None).unwrap();
    assert!(matches!(out, TrainOutcome::Finished { step: 2, .. }));
}

#[test]
fn grad_clip_scales_the_global_norm_and_is_validated() {
    let vs = nn::VarStore::new(Device::Cpu);
    let a = vs.root().var_copy("a", &Tensor::from_slice(&[1.0f32, 2.0]));
    let b = vs.root().var_copy("b", &Tensor::from_slice(&[3.0f32]));
    // loss = 3·Σa + 4·b: gradients (3, 3) and (4), global norm √34.
    let backward = || {
        Adam::zero_grad(&vs);
        ((&a * 3.0).sum(tch::Kind::Float) + (&b * 4.0).sum(tch::Kind::Float)).backward();
    };
    let norm_of_grads = || {
        (a.grad().square().sum(tch::Kind::Double).double_value(&[])
            + b.grad().square().sum(tch::Kind::Double).double_value(&[]))
        .sqrt()
    };
    backward();
    // Off (0): reported, not changed.
    let n = Adam::clip_grad_norm(&vs, 0.0);
    assert!((n - 34f64.sqrt()).abs() < 1e-9, "{n}");
    assert!((norm_of_grads() - 34f64.sqrt()).abs() < 1e-5);
    // Above the norm: not changed.
    assert!((Adam::clip_grad_norm(&vs, 10.0) - 34f64.sqrt()).abs() < 1e-9);
    assert!((norm_of_grads() - 34f64.sqrt()).abs() < 1e-5);
    // Below it: scaled to exactly the limit, direction kept.
    let n = Adam::clip_grad_norm(&vs, 1.0);
    assert!((n - 34f64.sqrt()).abs() < 1e-9);
    assert!((norm_of_grads() - 1.0).abs() < 1e-6, "{}", norm_of_grads());
    let ga: Vec<f32> = Vec::try_from(a.grad()).unwrap();
    let gb: Vec<f32> = Vec::try_from(b.grad()).unwrap();
    let s = 1.0 / 34f32.sqrt();
    assert!((ga[0] - 3.0 * s).abs() < 1e-6 && (ga[1] - 3.0 * s).abs() < 1e-6);
    assert!((gb[0] - 4.0 * s).abs() < 1e-6);
    // A non-finite gradient is reported, not scaled into the weights.
    Adam::zero_grad(&vs);
    (&a * f64::NAN).sum(tch::Kind::Float).backward();
    assert!(!Adam::clip_grad_norm(&vs, 1.0).is_finite());

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "clip", 2, &["optim.grad_clip=0.5"]);
    assert_eq!(cfg.optim.grad_clip, 0.5);
    for bad in [-1.0, f64::NAN, f64::INFINITY] {
        cfg.optim.grad_clip = bad;
        let err = cfg.validate().expect_err("a bad grad_clip").to_string();
        assert!(err.contains("optim.grad_clip"), "{bad}: {err}");
    }
}

/// Adam's first step moves every coordinate by lr (m̂/√v̂ = sign g); with
/// `lr_scale` the variables under a prefix move by lr·scale, 0 freezes them,
/// the longest prefix wins, and a prefix naming no variable is refused.
#[test]
fn lr_scale_multiplies_the_rate_per_name_prefix() {
    let vs = nn::VarStore::new(Device::Cpu);
    let a = (vs.root() / "relu1_1").var_copy("w", &Tensor::from_slice(&[0.0f32, 0.0]));
    let b = (vs.root() / "relu1_10").var_copy("w", &Tensor::from_slice(&[0.0f32]));
    let c = (vs.root() / "relu5_1").var_copy("w", &Tensor::from_slice(&[0.0f32]));
    let d = vs.root().var_copy("other", &Tensor::from_slice(&[0.0f32]));
    let scale: std::collections::BTreeMap<String, f64> = [
        ("relu1_1".to_string(), 3.0),
        ("relu1_10".to_string(), 0.5),
        ("relu5_1".to_string(), 0.0),
    ]
    .into_iter()
    .collect();
    let mut adam = Adam::new(AdamConfig::default()).with_lr_scale(&scale);
    Adam::zero_grad(&vs);
    // loss = −Σ of everything: every gradient is −1, every step is +lr·scale.
    (-(a.sum(tch::Kind::Float)
        + b.sum(tch::Kind::Float)
        + c.sum(tch::Kind::Float)
        + d.sum(tch::Kind::Float)))
    .backward();
    adam.step(&vs, 0.1);
    let v = |t: &Tensor| Vec::<f32>::try_from(t.detach()).unwrap();
    assert!(v(&a).iter().all(|x| (x - 0.3).abs() < 1e-5), "{:?}", v(&a));
    assert!(
        (v(&b)[0] - 0.05).abs() < 1e-5,
        "longest prefix wins: {:?}",
        v(&b)
    );
    assert_eq!(v(&c)[0], 0.0, "scale 0 freezes");
    assert!((v(&d)[0] - 0.1).abs() < 1e-5, "no prefix: base rate");

    let dir = tempfile::tempdir().unwrap();
    images(&dir.path().join("c"), 4, 1);
    images(&dir.path().join("s"), 4, 2);
    let cfg = config(dir.path(), "lrs", 1, &["optim.lr_scale.nope=2.0"]);
    let mut m = Tiny::new(0);
    let err = train(&cfg, &mut m, None).expect_err("an unknown prefix");
    assert!(err.to_string().contains("optim.lr_scale.nope"), "{err}");
    let mut cfg = config(dir.path(), "lrs2", 1, &[]);
    cfg.optim.lr_scale.insert("conv".into(), -1.0);
    let err = cfg.validate().expect_err("a negative scale").to_string();
    assert!(err.contains("optim.lr_scale.conv"), "{err}");
}

/// Issue 30: a truncated checkpoint, one with a flipped bit in its tensor
/// data, and one with a flipped bit in its header each give one line naming
/// the file; the intact one loads.
#[test]
fn truncated_and_bit_flipped_checkpoints_are_refused_in_one_line() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), "corrupt", 3, &[]);
    let mut m = Tiny::new(0);
    train(&cfg, &mut m, None).unwrap();
    let good = cfg.run_dir().join("step_0000003.safetensors");
    let bytes = std::fs::read(&good).unwrap();
    let (_, meta) = checkpoint::read_safetensors(&good).unwrap();
    assert_eq!(meta[checkpoint::CHECKSUM_KEY].len(), 8);
    Checkpoint::load_weights(&good, m.var_store(), "tiny").unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize + 8;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", bytes[..bytes.len() * 2 / 3].to_vec()),
        ("data bit", {
            let mut b = bytes.clone();
            let k = header + (b.len() - header) / 2;
            b[k] ^= 0x10;
            b
        }),
        ("header bit", {
            let mut b = bytes.clone();
            b[header / 2] ^= 0x01;
            b
        }),
        // The checksum's key renamed by one bit, and a data bit flipped: the
        // check must not be switched off (the fuzzer found this).
        ("key and data bits", {
            let mut b = bytes.clone();
            let key = checkpoint::CHECKSUM_KEY.as_bytes();
            let at = b[..header]
                .windows(key.len())
                .position(|w| w == key)
                .unwrap();
            b[at + key.len() - 1] ^= 0x01;
            let k = header + (b.len() - header) / 2;
            b[k] ^= 0x10;
            b
        }),
    ];
    for (what, b) in cases {
        let p = d
            .path()
            .join(format!("{}.safetensors", what.replace(' ', "_")));
        std::fs::write(&p, b).unwrap();
        let e = Checkpoint::load_weights(&p, m.var_store(), "tiny")
            .expect_err(what)
            .to_string();
        assert!(e.contains(&p.display().to_string()), "{what}: {e}");
        assert!(!e.contains('\n'), "{what}: one line: {e}");
        eprintln!("{what}: {e}");
    }
}
