//! Loss-network tests: parity with the independent PyTorch reference in
//! tests/torch_ref/vgg_ref.py (relative tolerance 1e-4 of each map's scale),
//! strict loading, tap handling.
#![allow(clippy::unwrap_used)]
use super::*;
use nst_testkit::{assert_close, torch_reference, vgg19_weights};
use tch::{Device, Kind, Tensor};

const RTOL: f64 = 1e-4;

fn random_weights(arch: Arch) -> HashMap<String, Tensor> {
    tch::manual_seed(0);
    let mut m = HashMap::new();
    let mut cin = 3;
    for name in arch.conv_names() {
        let cout = arch.channels(name.parse().unwrap());
        // He init keeps activations O(1) through 16 layers.
        let std = (2.0 / (9.0 * cin as f64)).sqrt();
        m.insert(
            format!("{name}.weight"),
            Tensor::randn([cout, cin, 3, 3], (Kind::Float, Device::Cpu)) * std,
        );
        m.insert(
            format!("{name}.bias"),
            Tensor::randn([cout], (Kind::Float, Device::Cpu)) * 0.1,
        );
        cin = cout;
    }
    m
}

fn check_against_reference(arch: Arch, pooling: Pooling, prep: Preprocessing, prep_name: &str) {
    let weights = random_weights(arch);
    let vgg = Vgg::from_tensors(
        arch,
        weights.iter().map(|(k, v)| (k.clone(), v.copy())).collect(),
        prep,
        VggOptions::cpu(pooling),
        "test",
    )
    .unwrap();
    let x = Tensor::rand([2, 3, 36, 44], (Kind::Float, Device::Cpu));
    let taps: Vec<Tap> = arch.taps();
    let names: Vec<String> = taps.iter().map(Tap::to_string).collect();
    let got = vgg.encode(&x, &taps).unwrap();
    let mut inputs: Vec<(String, &Tensor)> =
        weights.iter().map(|(k, v)| (format!("w.{k}"), v)).collect();
    inputs.push(("x".into(), &x));
    let inputs: Vec<(&str, &Tensor)> = inputs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let (pool, taps_arg) = (pooling.to_string(), names.join(","));
    let want = torch_reference(
        "vgg_ref.py",
        &inputs,
        &nst_testkit::sh!("--arch {arch} --pooling {pool} --taps {taps_arg} --prep {prep_name}"),
    );
    for (tap, t) in got.iter() {
        assert_close(
            t,
            &want[&tap.to_string()],
            RTOL,
            &format!("{arch} {pool} {tap}"),
        );
    }
    // Run in channels-last layout: the same maps, with NHWC strides.
    let cl = crate::EncodeOptions {
        channels_last: true,
        keep_precision: false,
    };
    for (tap, t) in vgg.encode_with(&x, &taps, cl).unwrap().iter() {
        assert_eq!(t.stride()[1], 1, "{tap}: channels-last map expected");
        assert_close(
            t,
            &want[&tap.to_string()],
            RTOL,
            &format!("channels-last {arch} {pool} {tap}"),
        );
    }
}

#[test]
fn vgg19_random_weights_match_pytorch_all_taps_avg_pool() {
    let _rng = nst_testkit::rng_lock();
    check_against_reference(Arch::Vgg19, Pooling::Avg, Preprocessing::caffe(), "caffe");
}

#[test]
fn vgg16_random_weights_match_pytorch_all_taps_max_pool() {
    let _rng = nst_testkit::rng_lock();
    check_against_reference(
        Arch::Vgg16,
        Pooling::Max,
        Preprocessing::torchvision(),
        "torchvision",
    );
}

#[test]
fn real_vgg19_weights_match_pytorch() {
    let _rng = nst_testkit::rng_lock();
    let path = vgg19_weights();
    let vgg = Vgg::load(&path, VggOptions::cpu(Pooling::Max)).unwrap();
    assert_eq!(vgg.arch(), Arch::Vgg19);
    assert_eq!(
        vgg.preprocessing(),
        &Preprocessing::caffe(),
        "metadata must record Caffe preprocessing"
    );
    tch::manual_seed(1);
    let x = Tensor::rand([1, 3, 64, 48], (Kind::Float, Device::Cpu));
    let taps = vgg
        .taps("relu1_1,relu2_1,relu3_1,relu4_1,conv4_2,relu5_1")
        .unwrap();
    let got = vgg.encode(&x, &taps).unwrap();
    let want = torch_reference(
        "vgg_ref.py",
        &[("x", &x)],
        &nst_testkit::sh!(
            "--weights {path:?} --taps relu1_1,relu2_1,relu3_1,relu4_1,conv4_2,relu5_1"
        ),
    );
    for (tap, t) in got.iter() {
        assert_close(
            t,
            &want[&tap.to_string()],
            RTOL,
            &format!("real vgg19 {tap}"),
        );
    }
}

#[test]
fn strict_loading_lists_missing_unexpected_and_mismatched() {
    let _rng = nst_testkit::rng_lock();
    let mut w = random_weights(Arch::Vgg19);
    w.remove("conv3_2.bias");
    w.insert(
        "fc6.weight".into(),
        Tensor::zeros([2], (Kind::Float, Device::Cpu)),
    );
    w.insert(
        "conv1_1.weight".into(),
        Tensor::zeros([64, 3, 5, 5], (Kind::Float, Device::Cpu)),
    );
    let e = caffe_vgg(Arch::Vgg19, w, "x.safetensors")
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing [conv3_2.bias]"), "{e}");
    assert!(e.contains("unexpected [fc6.weight]"), "{e}");
    assert!(
        e.contains("conv1_1.weight: file [64, 3, 5, 5], expected [64, 3, 3, 3]"),
        "{e}"
    );
    // A VGG16 file is not a VGG19.
    let e = caffe_vgg(Arch::Vgg19, random_weights(Arch::Vgg16), "v16")
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing [conv3_4.bias, conv3_4.weight"), "{e}");
}

#[test]
fn missing_and_foreign_weight_files_give_clear_errors() {
    let _rng = nst_testkit::rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let e = Vgg::load(
        dir.path().join("nope.safetensors"),
        VggOptions::cpu(Pooling::Max),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("scripts/setup.sh"), "{e}");
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"\x08\0\0\0\0\0\0\0{}garbage").unwrap();
    assert!(matches!(
        Vgg::load(&junk, VggOptions::cpu(Pooling::Max)),
        Err(Error::BadWeights { .. })
    ));
    // A safetensors file without the preprocessing metadata is refused, not guessed.
    let plain = dir.path().join("plain.safetensors");
    Tensor::write_safetensors(
        &[(
            "conv1_1.weight",
            Tensor::zeros([64, 3, 3, 3], (Kind::Float, Device::Cpu)),
        )],
        &plain,
    )
    .unwrap();
    let e = Vgg::load(&plain, VggOptions::cpu(Pooling::Max))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nst-vgg"), "{e}");
}

/// `arch` from `weights` (named `name` in errors) with Caffe
/// preprocessing, max pooling, on the CPU.
fn caffe_vgg(arch: Arch, weights: HashMap<String, Tensor>, name: &str) -> Result<Vgg> {
    Vgg::from_tensors(
        arch,
        weights,
        Preprocessing::caffe(),
        VggOptions::cpu(Pooling::Max),
        name,
    )
}

/// VGG19 with [`random_weights`], max pooling, on the CPU.
fn random_vgg19() -> Vgg {
    caffe_vgg(Arch::Vgg19, random_weights(Arch::Vgg19), "t").unwrap()
}

/// Going on from a tap's map gives the one-pass maps deeper down (the first
/// stage at 32² and the rest at its 8² map: stride 4), in fp32 and in bf16;
/// taps not deeper than the start, or a map too small, are refused.
#[test]
fn encode_from_a_tap_matches_one_pass() {
    let _rng = nst_testkit::rng_lock();
    let mut vgg = random_vgg19();
    let x = Tensor::rand([1, 3, 32, 32], (Kind::Float, Device::Cpu));
    let (from, deep) = (Tap::relu(3, 1), [Tap::relu(5, 1), Tap::relu(4, 1)]);
    for precision in [nst_core::Precision::Fp32, nst_core::Precision::Bf16] {
        vgg.set_precision(precision).unwrap();
        let one = vgg.encode(&x, &[from, deep[0], deep[1]]).unwrap();
        let two = vgg.encode_from(&one[from], from, &deep).unwrap();
        for t in deep {
            assert_eq!(two[t].kind(), Kind::Float);
            // Same operations on the same values: equal to the last bit.
            assert_close(
                &two[t],
                &one[t],
                0.0,
                &format!("{t} from {from}, {precision:?}"),
            );
        }
    }
    let e = vgg.encode_from(
        &Tensor::zeros([1, 256, 8, 8], (Kind::Float, Device::Cpu)),
        from,
        &[Tap::relu(3, 2), from],
    );
    assert!(e
        .unwrap_err()
        .to_string()
        .contains("relu3_1 is not deeper than relu3_1"));
    let e = vgg.encode_from(
        &Tensor::zeros([1, 256, 2, 2], (Kind::Float, Device::Cpu)),
        from,
        &deep,
    );
    assert!(e.unwrap_err().to_string().contains("at least 4 px"));
}

#[test]
fn encode_runs_only_as_deep_as_needed_and_keeps_order() {
    let _rng = nst_testkit::rng_lock();
    let vgg = random_vgg19();
    // 4x4 is enough for block 1-3 but pool3 and deeper would need 8 px: a full
    // forward pass would fail, a truncated one succeeds.
    let x = Tensor::rand([1, 3, 4, 4], (Kind::Float, Device::Cpu));
    let f = vgg
        .encode(&x, &[Tap::relu(3, 1), Tap::relu(1, 1), Tap::relu(3, 1)])
        .unwrap();
    let order: Vec<Tap> = f.iter().map(|(t, _)| t).collect();
    assert_eq!(
        order,
        vec![Tap::relu(3, 1), Tap::relu(1, 1), Tap::relu(3, 1)]
    );
    assert_eq!(f[Tap::relu(3, 1)].size(), [1, 256, 1, 1]);
    let e = vgg.encode(&x, &[Tap::relu(4, 1)]).unwrap_err().to_string();
    assert!(e.contains("at least 8 px"), "{e}");
    assert!(vgg
        .encode(
            &Tensor::rand([1, 4, 8, 8], (Kind::Float, Device::Cpu)),
            &[Tap::relu(1, 1)]
        )
        .is_err());
}

#[test]
fn preprocessing_round_trips_and_matches_caffe_numbers() {
    let _rng = nst_testkit::rng_lock();
    let p = Preprocessing::caffe();
    let x = Tensor::from_slice(&[1.0f32, 0.5, 0.0]).view([1, 3, 1, 1]);
    let y: Vec<f32> = Vec::try_from(p.apply(&x).flatten(0, -1)).unwrap();
    // RGB (1, .5, 0) -> BGR (0, 127.5, 255) - mean
    let want = [0.0 - 103.939, 127.5 - 116.779, 255.0 - 123.68];
    for (a, b) in y.iter().zip(want) {
        assert!((*a as f64 - b).abs() < 1e-3);
    }
    for p in [Preprocessing::caffe(), Preprocessing::torchvision()] {
        let x = Tensor::rand([2, 3, 5, 5], (Kind::Float, Device::Cpu));
        assert_close(&p.unapply(&p.apply(&x)), &x, 1e-6, "round trip");
    }
}

#[test]
fn torchvision_state_dict_converts_and_matches_pytorch() {
    let _rng = nst_testkit::rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let pth = dir.path().join("vgg16-fake.pth");
    let st = dir.path().join("vgg16_tv.safetensors");
    let py = nst_testkit::python();
    let root = nst_testkit::repo_root();
    let run = |args: &[&std::ffi::OsStr]| {
        let o = std::process::Command::new(&py).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let fake = root.join("tests/torch_ref/fake_torchvision.py");
    run(&[
        fake.as_os_str(),
        "-".as_ref(),
        pth.as_os_str(),
        "vgg16".as_ref(),
    ]);
    let conv = root.join("scripts/convert_vgg.py");
    run(&[
        conv.as_os_str(),
        "torchvision".as_ref(),
        pth.as_os_str(),
        st.as_os_str(),
    ]);

    let vgg = Vgg::load(&st, VggOptions::cpu(Pooling::Max)).unwrap();
    assert_eq!(vgg.arch(), Arch::Vgg16);
    assert_eq!(vgg.preprocessing(), &Preprocessing::torchvision());
    let x = Tensor::rand([1, 3, 40, 40], (Kind::Float, Device::Cpu));
    let taps = "relu1_2,relu3_3,conv5_3,pool5";
    let got = vgg.encode(&x, &vgg.taps(taps).unwrap()).unwrap();
    let want = torch_reference(
        "vgg_ref.py",
        &[("x", &x)],
        &nst_testkit::sh!("--arch vgg16 --weights {st:?} --taps {taps:?}"),
    );
    for (tap, t) in got.iter() {
        assert_close(
            t,
            &want[&tap.to_string()],
            RTOL,
            &format!("torchvision vgg16 {tap}"),
        );
    }
}

#[test]
fn input_gain_of_each_preprocessing() {
    let _rng = nst_testkit::rng_lock();
    assert!((Preprocessing::caffe().input_gain() - 255.0).abs() < 1e-9);
    let tv = Preprocessing::torchvision().input_gain();
    assert!((tv - 3.0 / (0.229 + 0.224 + 0.225)).abs() < 1e-9, "{tv}");
}

#[test]
fn bf16_features_match_pytorch_bf16_and_stay_near_fp32() {
    let _rng = nst_testkit::rng_lock();
    let path = vgg19_weights();
    let fp32 = Vgg::load(&path, VggOptions::cpu(Pooling::Avg)).unwrap();
    let bf16 = Vgg::load(&path, VggOptions::cpu(Pooling::Avg))
        .unwrap()
        .with_precision(nst_core::Precision::Bf16)
        .unwrap();
    assert_eq!(bf16.precision(), nst_core::Precision::Bf16);
    tch::manual_seed(2);
    let x = Tensor::rand([1, 3, 48, 40], (Kind::Float, Device::Cpu));
    let names = "relu1_1,relu3_1,relu5_1";
    let taps = fp32.taps(names).unwrap();
    let exact = fp32.encode(&x, &taps).unwrap();
    let got = bf16.encode(&x, &taps).unwrap();
    let want = torch_reference(
        "vgg_ref.py",
        &[("x", &x)],
        &nst_testkit::sh!("--weights {path:?} --taps {names:?} --pooling avg --precision bf16"),
    );
    for (tap, t) in got.iter() {
        assert_eq!(t.kind(), Kind::Float, "{tap} must come back in fp32");
        // The same bf16 computation in PyTorch: differences only from kernel
        // choice and accumulation order.
        assert_close(
            t,
            &want[&tap.to_string()],
            2e-2,
            &format!("bf16 {tap} vs torch bf16"),
        );
        // bf16 keeps 8 significant bits; errors compound over 13 layers.
        let e = nst_testkit::rel_err(t, &exact[tap]);
        assert!(
            e > 0.0 && e < 8e-2,
            "bf16 {tap} vs fp32: relative error {e:.3e}"
        );
    }
    // Kept in bf16 (and channels-last): the values the fp32 maps were cast from.
    let kept = crate::EncodeOptions {
        channels_last: true,
        keep_precision: true,
    };
    for (tap, t) in bf16.encode_with(&x, &taps, kept).unwrap().iter() {
        assert_eq!(t.kind(), Kind::BFloat16, "{tap} kept in bf16");
        let e = nst_testkit::rel_err(&t.to_kind(Kind::Float), &got[tap]);
        assert!(
            e < 2e-2,
            "bf16 {tap} channels-last vs NCHW: relative error {e:.3e}"
        );
    }
    // Gradients reach an fp32 input through the casts.
    let xg = x.copy().set_requires_grad(true);
    bf16.encode(&xg, &[Tap::relu(3, 1)]).unwrap()[Tap::relu(3, 1)]
        .sum(Kind::Float)
        .backward();
    assert_eq!(xg.grad().kind(), Kind::Float);
    assert!(xg.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
}

#[test]
fn fp16_on_cpu_is_a_clear_error() {
    let _rng = nst_testkit::rng_lock();
    let vgg = caffe_vgg(Arch::Vgg16, random_weights(Arch::Vgg16), "test").unwrap();
    let e = vgg
        .with_precision(nst_core::Precision::Fp16)
        .unwrap_err()
        .to_string();
    assert!(e.contains("CUDA only"), "{e}");
}
