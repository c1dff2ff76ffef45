//! `nst-infer strotss` bad input: each ends in one error line before any optimisation.
#![allow(clippy::unwrap_used)]
use nst_testkit::{assert_one_error, run_bin, sh};

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
    let (c, s, out) = (p("c.png"), p("s.png"), p("o.png"));
    let run = |extra: &[String]| {
        let a = sh!("strotss --content {c:?} --style {s:?} --out {out:?} --size 64 --steps 2 --scales 1 --device cpu -q");
        run_bin(
            env!("CARGO_BIN_EXE_nst-infer"),
            &[a, extra.to_vec()].concat(),
        )
    };
    let (cm, sm) = (p("cm.png"), p("sm.png"));
    for (extra, needle) in [
        (sh!("--content-mask {cm:?} --style-mask {sm:?}"), "#0000ff"),
        (sh!("--style-weights 1,2"), "--style-weights"),
        (sh!("--layers relu1_1,relu6_1"), "relu6_1"),
    ] {
        assert_one_error(&run(&extra), needle, &out);
    }
    // `nearest` pairs blue with the nearest style colour and runs.
    let o = run(&sh!(
        "--content-mask {cm:?} --style-mask {sm:?} --mask-match nearest"
    ));
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
    let run = |extra: &str| {
        run_bin(env!("CARGO_BIN_EXE_nst-infer"), &sh!(
            "strotss --content samples/content/chelsea.png --style samples/style/coffee.png --size 240 --scales 2 --steps 2 --samples 128 --style-samples 500 --device cpu --out {out:?} {extra}"
        ))
    };
    let o = run("--tile 208");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("scale 240x160: 2 steps in "), "{err}");
    assert!(err.contains("scale 120x80: 2 steps whole"), "{err}");
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (240, 160));
    std::fs::remove_file(&out).unwrap();
    for (extra, want) in [
        ("--tile 100", "smaller than twice the halo"),
        ("--tile 400", "larger than the image"),
        ("--tile 208 --max-memory 1M", "--max-memory"),
    ] {
        assert_one_error(&run(extra), want, &out);
    }
}
