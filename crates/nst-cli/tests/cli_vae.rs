//! `nst-infer vae-adain` as a user runs it: a short run of the smoke config,
//! then stylise (single and batch), interpolate, sample, and the errors for a
//! checkpoint of another model kind.
#![allow(clippy::unwrap_used)]
use nst_testkit::{run_bin, sh};
use std::path::Path;
use std::process::Output;

fn infer(args: &[String]) -> Output {
    run_bin(env!("CARGO_BIN_EXE_nst-infer"), args)
}

fn train(tmp: &Path, config: &str, run: &str) {
    let (ck, log) = (tmp.join("ck"), tmp.join("runs"));
    let o = run_bin(
        env!("CARGO_BIN_EXE_nst-train"),
        &sh!("--config {config:?} --device cpu -q --set train.steps=4 --set data.crop=64 --set 'train.run=\"{run}\"' --set 'train.checkpoint_dir={ck:?}' --set 'log.dir={log:?}'"),
    );
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
    let common = format!("--checkpoint {ck:?} --size 64 --device cpu -q");
    let pair = "--content samples/content/chelsea.png --style samples/style/coffee.png";

    // One pair, with colour preservation.
    let one = out("one.png");
    let o = infer(&sh!(
        "vae-adain {pair} --out {one:?} --preserve-color --alpha 0.5 {common}"
    ));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (w, h) = image_size(&tmp.path().join("one.png"));
    assert_eq!((w % 8, h % 8, w.max(h)), (0, 0, 64));

    // Batch over folders: every content × style pair.
    let batch = out("batch");
    let o = infer(&sh!("vae-adain --content-dir samples/content --style-dir samples/style --out-dir {batch:?} {common}"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read_dir(tmp.path().join("batch")).unwrap().count(),
        9
    );

    // Interpolation strip: 4 images side by side.
    let strip = out("strip.png");
    let o = infer(&sh!("vae-adain interpolate {pair} --style samples/style/retina.jpg --steps 4 --out {strip:?} {common}"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (sw, sh) = image_size(&tmp.path().join("strip.png"));
    assert_eq!((sw, sh), (4 * w, h));

    // Samples: deterministic for a seed.
    let sample = |name: &str, seed: &str| {
        let p = out(name);
        let o = infer(&sh!("vae-adain sample --content samples/content/chelsea.png --count 3 --seed {seed} --out {p:?} {common}"));
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
    let (plain, bad) = (tmp.path().join("ck/plain"), out("bad.png"));
    let o = infer(&sh!(
        "vae-adain {pair} --out {bad:?} --checkpoint {plain:?} --size 64 --device cpu -q"
    ));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("\"adain\"") && err.contains("\"vae_adain\""),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!tmp.path().join("bad.png").exists());
    // And the other way round.
    let bad2 = out("bad2.png");
    let o = infer(&sh!(
        "adain --checkpoint {ck:?} {pair} --out {bad2:?} --size 64 --device cpu -q"
    ));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("vae_adain"), "{err}");
}
