//! `nst-infer vae-adain` as a user runs it: a short run of the smoke config,
//! then stylise (single and batch), interpolate, sample, and the errors for a
//! checkpoint of another model kind.
#![allow(clippy::unwrap_used)]
use std::path::Path;
use std::process::{Command, Output};

fn bin(name: &str, args: &[String]) -> Output {
    let exe = match name {
        "nst-train" => env!("CARGO_BIN_EXE_nst-train"),
        _ => env!("CARGO_BIN_EXE_nst-infer"),
    };
    Command::new(exe)
        .args(args)
        .current_dir(nst_testkit::repo_root())
        .env("NST_VGG_WEIGHTS", nst_testkit::vgg19_weights())
        .output()
        .unwrap()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn train(tmp: &Path, config: &str, run: &str) {
    let mut a = s(&[
        "--config",
        config,
        "--device",
        "cpu",
        "-q",
        "--set",
        "train.steps=4",
        "--set",
        "data.crop=64",
        "--set",
    ]);
    a.push(format!("train.run=\"{run}\""));
    a.extend([
        "--set".into(),
        format!("train.checkpoint_dir=\"{}\"", tmp.join("ck").display()),
    ]);
    a.extend([
        "--set".into(),
        format!("log.dir=\"{}\"", tmp.join("runs").display()),
    ]);
    let o = bin("nst-train", &a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn image_size(p: &Path) -> (u32, u32) {
    image::image_dimensions(p).unwrap()
}

#[test]
fn stylise_interpolate_sample_and_kind_errors() {
    let tmp = tempfile::tempdir().unwrap();
    train(tmp.path(), "configs/vae_adain_smoke.toml", "vae");
    let ck = tmp.path().join("ck/vae").display().to_string();
    let out = |n: &str| tmp.path().join(n).display().to_string();
    let common = |extra: &[&str]| {
        let mut a = s(&["vae-adain"]);
        a.extend(s(extra));
        a.extend(s(&[
            "--checkpoint",
            &ck,
            "--size",
            "64",
            "--device",
            "cpu",
            "-q",
        ]));
        a
    };

    // One pair, with colour preservation.
    let o = bin(
        "nst-infer",
        &common(&[
            "--content",
            "samples/content/chelsea.png",
            "--style",
            "samples/style/coffee.png",
            "--out",
            &out("one.png"),
            "--preserve-color",
            "--alpha",
            "0.5",
        ]),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (w, h) = image_size(&tmp.path().join("one.png"));
    assert_eq!((w % 8, h % 8, w.max(h)), (0, 0, 64));

    // Batch over folders: every content × style pair.
    let o = bin(
        "nst-infer",
        &common(&[
            "--content-dir",
            "samples/content",
            "--style-dir",
            "samples/style",
            "--out-dir",
            &out("batch"),
        ]),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read_dir(tmp.path().join("batch")).unwrap().count(),
        9
    );

    // Interpolation strip: 4 images side by side.
    let mut a = s(&[
        "vae-adain",
        "interpolate",
        "--content",
        "samples/content/chelsea.png",
        "--style",
        "samples/style/coffee.png",
        "--style",
        "samples/style/retina.jpg",
        "--steps",
        "4",
        "--out",
        &out("strip.png"),
    ]);
    a.extend(s(&[
        "--checkpoint",
        &ck,
        "--size",
        "64",
        "--device",
        "cpu",
        "-q",
    ]));
    let o = bin("nst-infer", &a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (sw, sh) = image_size(&tmp.path().join("strip.png"));
    assert_eq!((sw, sh), (4 * w, h));

    // Samples: deterministic for a seed.
    let sample = |name: &str, seed: &str| {
        let mut a = s(&[
            "vae-adain",
            "sample",
            "--content",
            "samples/content/chelsea.png",
            "--count",
            "3",
            "--seed",
            seed,
            "--out",
            &out(name),
        ]);
        a.extend(s(&[
            "--checkpoint",
            &ck,
            "--size",
            "64",
            "--device",
            "cpu",
            "-q",
        ]));
        let o = bin("nst-infer", &a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(tmp.path().join(name)).unwrap()
    };
    assert_eq!(
        sample("s1.png", "1"),
        sample("s1b.png", "1"),
        "same seed, same samples"
    );

    // An AdaIN checkpoint given to vae-adain: one line naming both kinds, no output file.
    train(tmp.path(), "configs/smoke.toml", "plain");
    let mut a = common(&[
        "--content",
        "samples/content/chelsea.png",
        "--style",
        "samples/style/coffee.png",
        "--out",
        &out("bad.png"),
    ]);
    let i = a.iter().position(|x| x == &ck).unwrap();
    a[i] = tmp.path().join("ck/plain").display().to_string();
    let o = bin("nst-infer", &a);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("\"adain\"") && err.contains("\"vae_adain\""),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!tmp.path().join("bad.png").exists());
    // And the other way round.
    let mut a = s(&[
        "adain",
        "--checkpoint",
        &ck,
        "--content",
        "samples/content/chelsea.png",
        "--style",
        "samples/style/coffee.png",
        "--out",
        &out("bad2.png"),
        "--size",
        "64",
        "--device",
        "cpu",
    ]);
    a.push("-q".into());
    let o = bin("nst-infer", &a);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("vae_adain"), "{err}");
}
