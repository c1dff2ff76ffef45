//! `nst-train --config configs/puy_perez_smoke.toml` and `nst-infer puy-perez`
//! as a user runs them: artistic and photoreal outputs from the same weights,
//! --save-steps, --report-loss, and the errors for wrong checkpoints and options.
#![allow(clippy::unwrap_used)]
use nst_testkit::{assert_ok, clean_error, run_bin, sh};

#[test]
fn train_then_stylize_artistic_and_photoreal() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).display().to_string();
    let train = env!("CARGO_BIN_EXE_nst-train");
    let infer = env!("CARGO_BIN_EXE_nst-infer");
    let train_tiny = |config: &str, steps: &str, channels: &str| {
        let sets = sh!(
            "train.steps={steps} data.crop=32 data.resize_shorter=40 'model.channels={channels}'"
        );
        nst_testkit::train_in(train, config, tmp.path(), &sets);
    };
    train_tiny("configs/puy_perez_smoke.toml", "2", "[4, 8, 8]");
    let ck = p("ck/puy_perez_smoke");
    // puy-perez on chelsea and coffee into `out`, with more options.
    let run = |ck: &str, size: &str, out: &str, extra: &str| {
        let out = p(out);
        run_bin(infer, &sh!("puy-perez --checkpoint {ck:?} --content samples/content/chelsea.png --style samples/style/coffee.png --size {size} --out {out:?} --device cpu -q {extra}"))
    };

    // Artistic, every step written, loss reported.
    let o = run(&ck, "48", "art.png", "--save-steps --report-loss");
    assert_ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("output: L ="), "{stdout}");
    let img = image::open(p("art.png")).unwrap();
    assert_eq!(img.height().max(img.width()), 48);
    for t in 1..=4 {
        assert!(tmp.path().join(format!("art_step{t}.png")).exists());
    }

    // Photoreal, same weights; the projection runs on a 24-px grid here.
    let photoreal = "--photoreal --k 60 --proj-size 24 --proj-degree 40";
    let o = run(
        &ck,
        "48",
        "photo.png",
        &format!("{photoreal} --report-loss"),
    );
    assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Tr(XᵀLX)"));
    assert!(tmp.path().join("photo.png").exists());

    // Tiled (issue 27), photoreal at 160 px in 96-px tiles: the same image
    // as the whole run, up to 8-bit rounding; --report-loss is refused.
    let sized = |out: &str, extra: &str| run(&ck, "160", out, &format!("{photoreal} {extra}"));
    assert_ok(&sized("whole.png", ""));
    assert_ok(&sized("tiled.png", "--tile 96"));
    let (a, b) = (
        image::open(p("whole.png")).unwrap().to_rgb8(),
        image::open(p("tiled.png")).unwrap().to_rgb8(),
    );
    assert_eq!(a.dimensions(), b.dimensions());
    let worst = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (*x as i32 - *y as i32).abs())
        .max()
        .unwrap();
    assert!(worst <= 1, "tiled and whole differ by {worst}/255");
    let e = clean_error(&sized("x.png", "--tile 96 --report-loss"));
    assert!(e.contains("--report-loss"), "{e}");

    // Errors: too many steps, a checkpoint of another model, a bad cutoff.
    let bad = run(&ck, "48", "x.png", "--steps 9");
    assert!(clean_error(&bad).contains("--steps must be in 1..=4"));
    let bad = run(&ck, "48", "x.png", "--photoreal --cutoff 1.5");
    assert!(clean_error(&bad).contains("--cutoff must be in (0, 1)"));
    assert!(!tmp.path().join("x.png").exists(), "no output on error");
    train_tiny("configs/propo_smoke.toml", "1", "[4, 4, 4, 4, 4]");
    let e = clean_error(&run(&p("ck/propo_smoke"), "48", "x.png", ""));
    assert!(
        e.contains("\"po\" checkpoint") && e.contains("puy_perez"),
        "{e}"
    );
}
