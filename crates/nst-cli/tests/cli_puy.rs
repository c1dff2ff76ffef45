//! `nst-train --config configs/puy_perez_smoke.toml` and `nst-infer puy-perez`
//! as a user runs them: artistic and photoreal outputs from the same weights,
//! --save-steps, --report-loss, and the errors for wrong checkpoints and options.
#![allow(clippy::unwrap_used)]
use nst_testkit::{assert_ok, clean_error, run_bin};

#[test]
fn train_then_stylize_artistic_and_photoreal() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).display().to_string();
    let train = env!("CARGO_BIN_EXE_nst-train");
    let infer = env!("CARGO_BIN_EXE_nst-infer");
    let train_tiny = |config: &str, steps: &str, channels: &str| {
        let steps = format!("train.steps={steps}");
        let channels = format!("model.channels={channels}");
        let sets = [
            steps.as_str(),
            "data.crop=32",
            "data.resize_shorter=40",
            channels.as_str(),
        ];
        nst_testkit::train_in(train, config, tmp.path(), &sets);
    };
    train_tiny("configs/puy_perez_smoke.toml", "2", "[4, 8, 8]");
    let ck = p("ck/puy_perez_smoke");
    let base = |out: &str| {
        vec![
            "puy-perez".to_string(),
            "--checkpoint".into(),
            ck.clone(),
            "--content".into(),
            "samples/content/chelsea.png".into(),
            "--style".into(),
            "samples/style/coffee.png".into(),
            "--size".into(),
            "48".into(),
            "--out".into(),
            p(out),
            "--device".into(),
            "cpu".into(),
            "-q".into(),
        ]
    };
    let run = |args: &[String]| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run_bin(infer, &a)
    };

    // Artistic, every step written, loss reported.
    let mut a = base("art.png");
    a.extend(["--save-steps".into(), "--report-loss".into()]);
    let o = run(&a);
    assert_ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("output: L ="), "{stdout}");
    let img = image::open(p("art.png")).unwrap();
    assert_eq!(img.height().max(img.width()), 48);
    for t in 1..=4 {
        assert!(tmp.path().join(format!("art_step{t}.png")).exists());
    }

    // Photoreal, same weights; the projection runs on a 24-px grid here.
    let mut ph = base("photo.png");
    ph.extend(
        [
            "--photoreal",
            "--k",
            "60",
            "--proj-size",
            "24",
            "--proj-degree",
            "40",
            "--report-loss",
        ]
        .map(String::from),
    );
    let o = run(&ph);
    assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Tr(XᵀLX)"));
    assert!(tmp.path().join("photo.png").exists());

    // Tiled (issue 27), photoreal at 160 px in 96-px tiles: the same image
    // as the whole run, up to 8-bit rounding; --report-loss is refused.
    let sized = |out: &str, extra: &[&str]| {
        let mut a = base(out);
        a[8] = "160".into();
        a.extend(
            [
                "--photoreal",
                "--k",
                "60",
                "--proj-size",
                "24",
                "--proj-degree",
                "40",
            ]
            .iter()
            .chain(extra)
            .map(|s| s.to_string()),
        );
        a
    };
    assert_ok(&run(&sized("whole.png", &[])));
    assert_ok(&run(&sized("tiled.png", &["--tile", "96"])));
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
    let e = clean_error(&run(&sized("x.png", &["--tile", "96", "--report-loss"])));
    assert!(e.contains("--report-loss"), "{e}");

    // Errors: too many steps, a checkpoint of another model, a bad cutoff.
    let mut bad = base("x.png");
    bad.extend(["--steps".into(), "9".into()]);
    assert!(clean_error(&run(&bad)).contains("--steps must be in 1..=4"));
    let mut bad = base("x.png");
    bad.extend(["--photoreal".into(), "--cutoff".into(), "1.5".into()]);
    assert!(clean_error(&run(&bad)).contains("--cutoff must be in (0, 1)"));
    assert!(!tmp.path().join("x.png").exists(), "no output on error");
    train_tiny("configs/propo_smoke.toml", "1", "[4, 4, 4, 4, 4]");
    let mut wrong = base("x.png");
    wrong[2] = p("ck/propo_smoke");
    let e = clean_error(&run(&wrong));
    assert!(
        e.contains("\"po\" checkpoint") && e.contains("puy_perez"),
        "{e}"
    );
}
