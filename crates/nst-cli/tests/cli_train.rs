//! `nst-train` as a user runs it: Ctrl-C and SIGTERM write a checkpoint and
//! --resume finishes the run; bad configs end in one error line. (The smoke
//! configs' loss and held-out results: tests/smoke_runs.rs.)
#![allow(clippy::unwrap_used)]
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `nst-train` on a command line written as in a shell ([`nst_testkit::sh!`]).
fn nst_train(line: &str) -> Command {
    let mut c = nst_testkit::bin_command(env!("CARGO_BIN_EXE_nst-train"));
    c.args(nst_testkit::split_line(line));
    c
}

/// The options that put a run's checkpoints and logs in `tmp`, on the CPU.
fn dirs(tmp: &Path) -> String {
    let (ck, log) = (tmp.join("ck"), tmp.join("runs"));
    format!("--set 'train.checkpoint_dir={ck:?}' --set 'log.dir={log:?}' --device cpu -q")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
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
    let line = format!(
        "--config configs/smoke.toml --set 'train.run=\"intr\"' {}",
        dirs(tmp.path())
    );
    let child = nst_train(&line).stderr(Stdio::piped()).spawn().unwrap();
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
    let ro = run(&mut nst_train(&format!(
        "--resume {run_dir:?} --set train.steps={target} --device cpu -q"
    )));
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
    let smoke = "--config configs/smoke.toml --set";
    let nothing = tmp.path().join("nothing");
    let cases = [
        (format!("{smoke} optim.lrate=1"), "lrate"),
        (
            format!("{smoke} 'model.kind=\"nope\"'"),
            "known kinds: adain",
        ),
        (format!("{smoke} model.widht=2"), "widht"),
        (
            format!("{smoke} 'data.content.root=\"/nonexistent\"'"),
            "folder not found",
        ),
        ("--config configs/missing.toml".to_string(), "cannot read"),
        (format!("--resume {nothing:?}"), "not found"),
    ];
    for (args, needle) in cases {
        eprintln!("{args}");
        let o = run(&mut nst_train(&format!("{args} {}", dirs(tmp.path()))));
        // No file is written; nothing half-written is left in the run's folder.
        nst_testkit::assert_one_error(&o, needle, &tmp.path().join("none"));
    }
}

/// Issue 30: a batch that cannot fit in memory is refused before the first
/// step, in one line naming a batch size that fits (instead of the OOM
/// killer ending the run with no message).
#[test]
fn a_batch_too_large_for_memory_is_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let line = format!(
        "--config configs/smoke.toml --set data.batch_size=4096 --set data.crop=256 --set data.resize_shorter=256 {}",
        dirs(tmp.path())
    );
    let t = Instant::now();
    let o = run(&mut nst_train(&line).env_remove("NST_SKIP_MEMORY_CHECK"));
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
