//! `nst-infer optex` and `adain-wct` as a user runs them, with decoders from a
//! few steps of the smoke config: output sizes, and the error for a
//! checkpoint of another kind.
#![allow(clippy::unwrap_used)]
use nst_testkit::{run_bin as bin, sh};

#[test]
fn synthesis_transfer_closed_form_and_kind_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (ck, log) = (tmp.path().join("ck"), tmp.path().join("runs"));
    let (ck_dir, log_dir) = (
        format!("train.checkpoint_dir={ck:?}"),
        format!("log.dir={log:?}"),
    );
    let train = env!("CARGO_BIN_EXE_nst-train");
    let infer = env!("CARGO_BIN_EXE_nst-infer");
    let o = bin(
        train,
        &sh!("--config configs/decoders_smoke.toml --set train.steps=2 --set data.crop=64 --set model.width=0.25 --set {ck_dir:?} --set {log_dir:?} --device cpu -q"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ck = tmp.path().join("ck/decoders_smoke").display().to_string();
    let out = |n: &str| tmp.path().join(n).display().to_string();
    let common = format!("--checkpoint {ck:?} --device cpu -q");
    let (chelsea, coffee) = ("samples/content/chelsea.png", "samples/style/coffee.png");

    // Synthesis larger than the exemplar, non-square, rounded to multiples of 16.
    let synth = out("synth.png");
    let o = bin(infer, &sh!("optex --style samples/texture/brick.png --style-size 64 --size 100x60 --pyramid 2 --passes 1 --out {synth:?} {common}"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(image::image_dimensions(&synth).unwrap(), (96, 64));

    // Transfer with two mixed styles, closed-form strategy, colour preservation.
    let tr = out("transfer.png");
    let o = bin(infer, &sh!("optex --content {chelsea} --style {coffee} --style samples/texture/grass.png --mix 0.7,0.3 --strategy cholesky --size 64 --preserve-color --pyramid 1 --out {tr:?} {common}"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A subset of levels, shallow only, runs; a level outside 1..=5 is one
    // error line and writes no file.
    for (levels, ok) in [("3,2,1", true), ("6,1", false)] {
        let p = out(&format!("levels_{levels}.png"));
        let o = bin(infer, &sh!("optex --style samples/texture/brick.png --size 64 --pyramid 1 --levels {levels} --out {p:?} {common}"));
        if ok {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        } else {
            let e = nst_testkit::clean_error(&o);
            assert!(e.contains("relu6_1") && e.lines().count() == 1, "{e}");
        }
        assert_eq!(std::path::Path::new(&p).exists(), ok);
    }

    // WCT and AdaIN.
    for m in ["wct", "adain"] {
        let p = out(&format!("{m}.png"));
        let o = bin(infer, &sh!("adain-wct --method {m} --content {chelsea} --style {coffee} --size 64 --out {p:?} {common}"));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(std::path::Path::new(&p).exists());
    }

    // A content whose sides are not multiples of 16 gives an output of its
    // exact size (padded for the work, cut back), with both commands.
    for (cmd, extra) in [
        ("adain-wct", ""),
        ("optex", "--pyramid 1 --passes 1 --style-size 64"),
    ] {
        let p = out(&format!("{cmd}_100x70.png"));
        let o = bin(infer, &sh!("{cmd} --content {chelsea} --style {coffee} --size 100x70 {extra} --out {p:?} {common}"));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(image::image_dimensions(&p).unwrap(), (100, 70), "{cmd}");
    }

    // Tiled (issue 27): a run in tiles writes the image; each bad tiling is
    // one line naming the option, and writes nothing.
    let wct_tiled = |extra: &str, p: &str| {
        bin(infer, &sh!("adain-wct --levels 2,1 --content {chelsea} --style {coffee} --size 160 --out {p:?} {extra} {common}"))
    };
    let p = out("tiled.png");
    let o = wct_tiled("--tile 96", &p);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::path::Path::new(&p).exists());
    for (extra, want) in [
        ("--tile 40", "smaller than twice the halo"),
        ("--tile 400", "larger than the image"),
        ("--tile 96 --max-memory 1M", "--max-memory 0.00G is below"),
    ] {
        let p = out("badtile.png");
        let o = wct_tiled(extra, &p);
        let e = nst_testkit::clean_error(&o);
        assert!(
            !o.status.success() && e.contains(want) && e.lines().count() == 1,
            "{extra:?}: {e}"
        );
        assert!(!std::path::Path::new(&p).exists());
    }

    // Reconstruction PSNR: one line per level.
    let o = bin(
        infer,
        &sh!(
            "decoders-psnr --checkpoint {ck:?} --images samples/content --size 64 --device cpu -q"
        ),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        table.lines().filter(|l| l.starts_with("relu")).count(),
        5,
        "{table}"
    );

    // A decoders checkpoint given to nst-infer adain: one line naming both kinds.
    let bad = out("bad.png");
    let o = bin(
        infer,
        &sh!("adain --checkpoint {ck:?} --content {chelsea} --style {coffee} --out {bad:?} --device cpu"),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("decoders") && err.contains("adain"),
        "{err}"
    );
    assert!(!std::path::Path::new(&bad).exists());
}

/// Issue 28: a damaged copy of the shipped decoders (cut short, or one byte
/// changed) is refused with one error line that names the weights file, by
/// both commands that use them; no output is written.
#[test]
fn a_damaged_shipped_checkpoint_is_one_error_line_naming_the_file() {
    let shipped = nst_testkit::repo_root().join("checkpoints/decoders");
    let latest = std::fs::read_to_string(shipped.join("latest")).unwrap();
    let step = latest.trim();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("decoders");
    std::fs::create_dir(&dir).unwrap();
    for f in ["latest".to_string(), format!("{step}.json")] {
        std::fs::copy(shipped.join(&f), dir.join(&f)).unwrap();
    }
    let weights = std::fs::read(shipped.join(format!("{step}.safetensors"))).unwrap();
    let target = dir.join(format!("{step}.safetensors"));
    let mut flipped = weights.clone();
    let mid = flipped.len() * 3 / 4;
    flipped[mid] ^= 0x55;
    let damages: [(&str, Vec<u8>); 2] = [
        ("truncated", weights[..weights.len() / 2].to_vec()),
        ("one byte changed", flipped),
    ];
    let infer = env!("CARGO_BIN_EXE_nst-infer");
    let out = tmp.path().join("o.png");
    for (damage, bytes) in damages {
        std::fs::write(&target, bytes).unwrap();
        for cmd in ["adain-wct", "optex"] {
            let o = bin(
                infer,
                &sh!("{cmd} --checkpoint {dir:?} --content samples/content/chelsea.png --style samples/style/coffee.png --size 64 --out {out:?} --device cpu"),
            );
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{cmd}, {damage}: accepted");
            let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
            assert_eq!(lines.len(), 1, "{cmd}, {damage}: {err}");
            assert!(
                lines[0].starts_with("error:") && lines[0].contains(target.to_str().unwrap()),
                "{cmd}, {damage}: {err}"
            );
            assert!(!out.exists(), "{cmd}, {damage}: an output was written");
        }
    }
}
