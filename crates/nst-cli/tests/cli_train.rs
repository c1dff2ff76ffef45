//! `nst-train` as a user runs it: the smoke config's loss falls by a stated
//! factor; Ctrl-C writes a checkpoint and --resume finishes the run; bad
//! configs end in one error line.
#![allow(clippy::unwrap_used)]
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn nst_train(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nst-train"));
    c.args(args)
        .current_dir(nst_testkit::repo_root())
        .env("NST_VGG_WEIGHTS", nst_testkit::vgg19_weights());
    c
}

fn dirs(tmp: &Path) -> Vec<String> {
    vec![
        "--set".into(),
        format!("train.checkpoint_dir=\"{}\"", tmp.join("ck").display()),
        "--set".into(),
        format!("log.dir=\"{}\"", tmp.join("runs").display()),
        "--device".into(),
        "cpu".into(),
        "-q".into(),
    ]
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn scalars(run_dir: &Path, tag: &str) -> Vec<(u64, f64)> {
    let out = Command::new(nst_testkit::python())
        .arg(nst_testkit::repo_root().join("tests/tools/read_tensorboard.py"))
        .arg(run_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["scalars"][tag]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
        .collect()
}

/// configs/smoke.toml (the real AdaIN model, 200 steps on the sample images):
/// the mean total loss of the last 5 logged points must be at least 4x
/// below the first step's (measured: 6.7x; the decoder starts near mid grey,
/// so the first loss is no longer inflated by an output far outside the
/// image range, as it was at 1800x). Then issue 31's check: a held-out photo
/// stylised with the trained decoder is not degenerate (pixel std ≥ 10 of
/// 255, luminance-gradient correlation with the content ≥ 0.2; measured
/// 54 and 0.38; before the grey start the output was near black, 11 and 0.17).
#[test]
fn smoke_config_loss_falls_4x_and_stylises_visibly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = vec!["--config".to_string(), "configs/smoke.toml".into()];
    args.extend(dirs(tmp.path()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let t = Instant::now();
    let o = run(&mut nst_train(&a));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    eprintln!("smoke run took {:.1} s", t.elapsed().as_secs_f64());
    let total = scalars(&tmp.path().join("runs/smoke"), "loss/total");
    let first = total[0].1;
    let last: f64 = total[total.len() - 5..].iter().map(|p| p.1).sum::<f64>() / 5.0;
    eprintln!(
        "smoke: loss {first:.3e} -> {last:.3e} ({:.0}x)",
        first / last
    );
    assert!(last * 4.0 < first, "loss fell only from {first} to {last}");
    assert!(tmp
        .path()
        .join("ck/smoke/step_0000200.safetensors")
        .exists());

    // The trained decoder stylises through nst-infer adain.
    let out = tmp.path().join("adain.png");
    let infer = |alpha: &str| {
        Command::new(env!("CARGO_BIN_EXE_nst-infer"))
            .current_dir(nst_testkit::repo_root())
            .env("NST_VGG_WEIGHTS", nst_testkit::vgg19_weights())
            .args([
                "adain",
                "--checkpoint",
                tmp.path().join("ck/smoke").to_str().unwrap(),
            ])
            .args([
                "--content",
                "samples/content/chelsea.png",
                "--style",
                "samples/style/coffee.png",
            ])
            .args([
                "--out",
                out.to_str().unwrap(),
                "--size",
                "100",
                "--alpha",
                alpha,
                "--device",
                "cpu",
                "-q",
            ])
            .output()
            .unwrap()
    };
    let o = infer("0.8");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = image::open(&out).unwrap();
    assert_eq!(
        (img.width(), img.height()),
        (96, 64),
        "100x66 cropped to multiples of 8"
    );
    let o = infer("1.5");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--alpha"));

    let held_out = nst_testkit::repo_root().join("samples/heldout/camera.png");
    let out = tmp.path().join("held_out.png");
    let o = Command::new(env!("CARGO_BIN_EXE_nst-infer"))
        .current_dir(nst_testkit::repo_root())
        .env("NST_VGG_WEIGHTS", nst_testkit::vgg19_weights())
        .args(["adain", "--checkpoint", tmp.path().join("ck/smoke").to_str().unwrap()])
        .args(["--content", held_out.to_str().unwrap(), "--style", "samples/style/coffee.png"])
        .args(["--out", out.to_str().unwrap(), "--size", "256", "--device", "cpu", "-q"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (std, corr) = nst_testkit::degeneracy_stats(&out, &held_out);
    eprintln!("adain smoke on a held-out photo: pixel std {std:.1}, gradient correlation {corr:.2}");
    assert!(std >= 10.0, "pixel std {std:.2}: the output is flat (black?)");
    assert!(corr >= 0.2, "gradient correlation {corr:.3}: no trace of the content");
}

#[test]
fn ctrl_c_checkpoints_and_resume_finishes() {
    signal_checkpoints_and_resume_finishes(libc::SIGINT);
}

/// Issue 30: SIGTERM, what a job scheduler sends, stops as Ctrl-C does: a
/// checkpoint is written, it loads, and the run resumes from it.
#[test]
fn sigterm_checkpoints_and_resume_finishes() {
    signal_checkpoints_and_resume_finishes(libc::SIGTERM);
}

fn signal_checkpoints_and_resume_finishes(signal: i32) {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = vec![
        "--config".to_string(),
        "configs/smoke.toml".into(),
        "--set".into(),
        "train.run=\"intr\"".into(),
    ];
    args.extend(dirs(tmp.path()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = nst_train(&a).stderr(Stdio::piped()).spawn().unwrap();
    // Wait until training is under way (the event file has data), then Ctrl-C.
    let events = tmp.path().join("runs/intr");
    let t = Instant::now();
    loop {
        let size: u64 = std::fs::read_dir(&events)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        if size > 2000 || t.elapsed() > Duration::from_secs(120) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap();
    assert!(
        line.contains("interrupted at step") && line.contains("--resume"),
        "{err}"
    );
    let run_dir = tmp.path().join("ck/intr");
    let latest = std::fs::read_to_string(run_dir.join("latest")).unwrap();
    let step: u64 = latest.trim().trim_start_matches("step_").parse().unwrap();
    assert!(step > 0 && step < 200, "stopped at {step}");
    assert!(run_dir
        .join(format!("{}.safetensors", latest.trim()))
        .exists());

    // Resume from the run folder alone (its saved config), for 3 more steps.
    let target = step + 3;
    let ro = run(&mut nst_train(&[
        "--resume",
        run_dir.to_str().unwrap(),
        "--set",
        &format!("train.steps={target}"),
        "--device",
        "cpu",
        "-q",
    ]));
    assert!(
        ro.status.success(),
        "{}",
        String::from_utf8_lossy(&ro.stderr)
    );
    let latest = std::fs::read_to_string(run_dir.join("latest")).unwrap();
    assert_eq!(latest.trim(), format!("step_{target:07}"));
}

#[test]
fn bad_configs_give_one_error_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--config".into(),
                "configs/smoke.toml".into(),
                "--set".into(),
                "optim.lrate=1".into(),
            ],
            "lrate",
        ),
        (
            vec![
                "--config".into(),
                "configs/smoke.toml".into(),
                "--set".into(),
                "model.kind=\"nope\"".into(),
            ],
            "known kinds: adain",
        ),
        (
            vec![
                "--config".into(),
                "configs/smoke.toml".into(),
                "--set".into(),
                "model.widht=2".into(),
            ],
            "widht",
        ),
        (
            vec![
                "--config".into(),
                "configs/smoke.toml".into(),
                "--set".into(),
                "data.content.root=\"/nonexistent\"".into(),
            ],
            "folder not found",
        ),
        (
            vec!["--config".into(), "configs/missing.toml".into()],
            "cannot read",
        ),
        (
            vec![
                "--resume".into(),
                tmp.path().join("nothing").display().to_string(),
            ],
            "not found",
        ),
    ];
    for (mut args, needle) in cases {
        args.extend(dirs(tmp.path()));
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&mut nst_train(&a));
        let err = String::from_utf8_lossy(&o.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(lines.len(), 1, "{args:?}: expected one line, got {err}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(needle),
            "{args:?}: {err}"
        );
    }
}

/// Issue 30: a batch that cannot fit in memory is refused before the first
/// step, in one line naming a batch size that fits (instead of the OOM
/// killer ending the run with no message).
#[test]
fn a_batch_too_large_for_memory_is_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = vec![
        "--config".to_string(),
        "configs/smoke.toml".into(),
        "--set".into(),
        "data.batch_size=4096".into(),
        "--set".into(),
        "data.crop=256".into(),
        "--set".into(),
        "data.resize_shorter=256".into(),
    ];
    args.extend(dirs(tmp.path()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let t = Instant::now();
    let o = run(&mut nst_train(&a).env_remove("NST_SKIP_MEMORY_CHECK"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("error:") && lines[0].contains("data.batch_size = 4096"),
        "{err}"
    );
    let fits: usize = lines[0]
        .split("data.batch_size = ")
        .nth(2)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no batch size that fits in: {err}"));
    assert!((1..4096).contains(&fits), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "refused only after {:?}",
        t.elapsed()
    );
}
