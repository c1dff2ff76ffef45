//! `nst-infer strotss` bad input: each ends in one error line before any optimisation.
#![allow(clippy::unwrap_used)]
use std::process::Command;

fn img(path: &std::path::Path, f: impl Fn(u32, u32) -> [u8; 3]) {
    image::RgbImage::from_fn(64, 48, |x, y| image::Rgb(f(x, y)))
        .save(path)
        .unwrap();
}

#[test]
fn mask_problems_give_one_error_line() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    img(&p("c.png"), |x, y| [(x * 3) as u8, (y * 4) as u8, 100]);
    img(&p("s.png"), |x, _| [200, (x * 2) as u8, 30]);
    img(
        &p("cm.png"),
        |x, _| if x < 32 { [255, 0, 0] } else { [0, 0, 255] },
    );
    img(
        &p("sm.png"),
        |x, _| if x < 32 { [255, 0, 0] } else { [0, 255, 0] },
    );
    let out = p("o.png");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_nst-infer"))
            .env("NST_VGG_WEIGHTS", nst_testkit::vgg19_weights())
            .args([
                "strotss",
                "--content",
                p("c.png").to_str().unwrap(),
                "--style",
                p("s.png").to_str().unwrap(),
            ])
            .args([
                "--out",
                out.to_str().unwrap(),
                "--size",
                "64",
                "--steps",
                "2",
                "--scales",
                "1",
                "--device",
                "cpu",
                "-q",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let cm = p("cm.png");
    let sm = p("sm.png");
    for (extra, needle) in [
        (
            vec![
                "--content-mask",
                cm.to_str().unwrap(),
                "--style-mask",
                sm.to_str().unwrap(),
            ],
            "#0000ff",
        ),
        (vec!["--style-weights", "1,2"], "--style-weights"),
        (vec!["--layers", "relu1_1,relu6_1"], "relu6_1"),
    ] {
        let o = run(&extra);
        let err = String::from_utf8_lossy(&o.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {err}");
        assert_eq!(lines.len(), 1, "{extra:?}: {err}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(needle),
            "{extra:?}: {err}"
        );
        assert!(!out.exists());
    }
    // `nearest` pairs blue with the nearest style colour and runs.
    let o = run(&[
        "--content-mask",
        cm.to_str().unwrap(),
        "--style-mask",
        sm.to_str().unwrap(),
        "--mask-match",
        "nearest",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.exists());
}

/// Tiled STROTSS (issue 27): a 240×160 run whose last scale works in
/// 208-px tiles writes its image and reports the tiled scale; each bad
/// tiling is one error line naming the problem, with no output.
#[test]
fn tiled_strotss_runs_and_bad_tilings_are_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiled.png");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_nst-infer"))
            .env("NST_VGG_WEIGHTS", nst_testkit::vgg19_weights())
            .args([
                "strotss",
                "--content",
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../samples/content/chelsea.png"
                ),
                "--style",
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../samples/style/coffee.png"
                ),
                "--size",
                "240",
                "--scales",
                "2",
                "--steps",
                "2",
                "--samples",
                "128",
                "--style-samples",
                "500",
                "--device",
                "cpu",
                "--out",
                out.to_str().unwrap(),
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&["--tile", "208"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("scale 240x160: 2 steps in "), "{err}");
    assert!(err.contains("scale 120x80: 2 steps whole"), "{err}");
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (240, 160));
    std::fs::remove_file(&out).unwrap();
    for (extra, want) in [
        (&["--tile", "100"][..], "smaller than twice the halo"),
        (&["--tile", "400"][..], "larger than the image"),
        (&["--tile", "208", "--max-memory", "1M"][..], "--max-memory"),
    ] {
        let o = run(extra);
        let err = String::from_utf8_lossy(&o.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert_eq!(lines.len(), 1, "expected one error line: {err}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(want),
            "{err}"
        );
        assert!(!out.exists());
    }
}
