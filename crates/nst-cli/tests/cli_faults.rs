//! Issue 30's fault injection: `nst-train` killed with SIGKILL at random
//! moments (during start-up, steps and checkpoint writes: this run writes a
//! checkpoint at every step) and resumed until it finishes. After every kill
//! the latest checkpoint loads (its checksums verify), and the resumed run
//! ends with the same weights and optimizer state, bit for bit, as an
//! uninterrupted run.
//!
//! `NST_FAULT_KILLS` sets the number of kills (default 6, what CI runs);
//! `scripts/fault_injection.sh` runs the long mode for the README's figures.
#![allow(clippy::unwrap_used)]
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STEPS: u64 = 60;

fn nst_train(args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nst-train"));
    c.args(args)
        .current_dir(nst_testkit::repo_root())
        .env("NST_VGG_WEIGHTS", nst_testkit::vgg19_weights())
        // One thread: the two runs reduce in the same order.
        .env("OMP_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// The smoke AdaIN config, shrunk so that a step takes milliseconds and a
/// checkpoint is written at every step.
fn config_args(tmp: &Path, run: &str) -> Vec<String> {
    let (ck, log) = (tmp.join("ck"), tmp.join("runs"));
    nst_testkit::sh!(
        "--config configs/smoke.toml --set 'train.run=\"{run}\"' --set train.steps={STEPS} \
         --set train.checkpoint_every=1 --set train.keep_last=2 --set model.width=0.25 \
         --set data.resize_shorter=40 --set data.crop=32 --set data.batch_size=1 \
         --set data.threads=1 --set log.scalar_every=1 --set log.image_every=100000 \
         --set 'train.checkpoint_dir={ck:?}' --set 'log.dir={log:?}' --device cpu -q"
    )
}

/// The step of the run's latest checkpoint (0 before the first).
fn latest_step(run_dir: &Path) -> u64 {
    std::fs::read_to_string(run_dir.join("latest"))
        .ok()
        .and_then(|l| l.trim().strip_prefix("step_")?.parse().ok())
        .unwrap_or(0)
}

/// A tiny deterministic generator for the kill delays.
struct Lcg(u64);
impl Lcg {
    fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The named tensors of a safetensors file (checksum verified), sorted.
fn tensors(path: &Path) -> Vec<(String, tch::Tensor)> {
    let (mut t, _) = nst_model::checkpoint::read_safetensors(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

fn assert_same(a: &Path, b: &Path) {
    let (ta, tb) = (tensors(a), tensors(b));
    assert_eq!(ta.len(), tb.len(), "{} vs {}", a.display(), b.display());
    for ((na, xa), (nb, xb)) in ta.iter().zip(&tb) {
        assert_eq!(na, nb);
        assert!(
            xa.equal(xb),
            "{na} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

#[test]
fn kill_9_at_random_moments_then_resume_gives_the_uninterrupted_weights() {
    let kills: usize = std::env::var("NST_FAULT_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let tmp = tempfile::tempdir().unwrap();

    // The uninterrupted run, timed: start-up (to its first checkpoint), then per step.
    let t = Instant::now();
    let mut child = nst_train(&config_args(tmp.path(), "full")).spawn().unwrap();
    let first = tmp.path().join("ck/full/step_0000001.json");
    let mut startup = 0.0;
    while child.try_wait().unwrap().is_none() {
        if startup == 0.0 && first.exists() {
            startup = t.elapsed().as_secs_f64();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "{:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let full_secs = t.elapsed().as_secs_f64();
    let per_step = (full_secs - startup).max(0.0) / STEPS as f64;

    let mut rng = Lcg(30);
    let (mut done_kills, mut before_first_checkpoint, mut loaded) = (0, 0, 0);
    let mut scenarios = 0;
    // Runs killed and resumed to the end, again and again until `kills`
    // kills have landed (a run may finish before its kill comes).
    while done_kills < kills {
        scenarios += 1;
        let name = format!("killed{scenarios}");
        let run_dir = tmp.path().join("ck").join(&name);
        let mut runs = 0;
        loop {
            runs += 1;
            assert!(runs < 10 * kills + 20, "the run never finished");
            let args = if run_dir.join("latest").exists() {
                vec![
                    "--resume".to_string(),
                    run_dir.display().to_string(),
                    "--device".into(),
                    "cpu".into(),
                    "-q".into(),
                ]
            } else {
                config_args(tmp.path(), &name)
            };
            let mut child = nst_train(&args).spawn().unwrap();
            if done_kills < kills {
                // One kill in five during start-up (the first 0.8 s); the
                // others once the run has reached a random later step, then
                // 0–150 ms on (in that step's compute or checkpoint write).
                let step = latest_step(&run_dir);
                let left = STEPS.saturating_sub(step + 1);
                let u = rng.next_f64();
                let t = Instant::now();
                let (target, jitter) = if u < 0.2 || left == 0 {
                    (step, Duration::from_secs_f64(u / 0.2 * 0.8))
                } else {
                    let v = rng.next_f64();
                    (
                        step + 1 + (v * left as f64) as u64,
                        Duration::from_secs_f64(rng.next_f64() * 0.15),
                    )
                };
                let mut reached: Option<Instant> = None;
                while child.try_wait().unwrap().is_none() {
                    if reached.is_none() && latest_step(&run_dir) >= target {
                        reached = Some(Instant::now());
                    }
                    if reached.is_some_and(|r| r.elapsed() >= jitter)
                        || t.elapsed() > Duration::from_secs(120)
                    {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            if done_kills < kills && child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                let _ = child.wait();
                done_kills += 1;
                // The latest checkpoint loads: its sidecar parses, and its
                // weights and optimizer files pass their checksums.
                match nst_model::Checkpoint::resolve(&run_dir) {
                    Ok((side, meta)) => {
                        tensors(&side.with_file_name(&meta.weights_file));
                        tensors(&side.with_file_name(&meta.optimizer_file));
                        loaded += 1;
                    }
                    Err(_) => {
                        assert!(
                            !run_dir.join("latest").exists(),
                            "`latest` exists but does not resolve"
                        );
                        before_first_checkpoint += 1;
                    }
                }
                continue;
            }
            let o = child.wait_with_output().unwrap();
            assert!(
                o.status.success(),
                "{:?}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            );
            break;
        }
        let last = format!("step_{STEPS:07}");
        for f in [
            format!("{last}.safetensors"),
            format!("{last}.optim.safetensors"),
        ] {
            assert_same(&tmp.path().join("ck/full").join(&f), &run_dir.join(&f));
        }
        // What the kills left half-written was removed on resume.
        let temps: Vec<String> = std::fs::read_dir(&run_dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(temps.is_empty(), "left behind: {temps:?}");
    }
    eprintln!(
        "fault injection: {done_kills} kills in {scenarios} runs ({before_first_checkpoint} before \
         the first checkpoint), {loaded} latest checkpoints loaded, 0 unloadable; each run resumed to \
         step {STEPS} with weights and optimizer state identical to the uninterrupted run ({full_secs:.1} s uninterrupted: \
         {startup:.1} s to the first checkpoint, then {:.0} ms per step)",
        per_step * 1e3
    );
}

/// A full disk (issue 30): a run resumed with a file-size limit (RLIMIT_FSIZE
/// with SIGXFSZ ignored, so every write past the limit fails as on a full
/// disk) cannot write its next checkpoint. It stops with one error line
/// naming the checkpoint, no panic; `latest` still names the last good
/// checkpoint, which loads; no temporary file is left; and once there is
/// room again the run resumes from it and finishes.
#[test]
fn a_full_disk_stops_training_cleanly_and_keeps_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = config_args(tmp.path(), "disk");
    for s in ["train.steps=3", "train.keep_last=5"] {
        args.push("--set".into());
        args.push(s.into());
    }
    let o = nst_train(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run_dir = tmp.path().join("ck/disk");
    assert_eq!(latest_step(&run_dir), 3);
    let before: Vec<_> = std::fs::read_dir(&run_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();

    // Resume to 6 steps with at most 64 KiB per file: smaller than a checkpoint.
    let resume = [
        "--resume".to_string(),
        run_dir.display().to_string(),
        "--set".into(),
        "train.steps=6".into(),
        "--device".into(),
        "cpu".into(),
        "-q".into(),
    ];
    let mut c = nst_train(&resume);
    {
        use std::os::unix::process::CommandExt;
        #[allow(unsafe_code)]
        unsafe {
            c.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: 64 << 10,
                    rlim_max: 64 << 10,
                };
                libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
    }
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "the run should fail: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    eprintln!("{}", lines[0]);
    assert!(
        lines[0].contains("step_0000004")
            && lines[0].contains("File too large")
            && lines[0].contains("step_0000003.json, is intact")
            && lines[0].contains("--resume"),
        "{err}"
    );
    // The last good checkpoint is intact and still `latest`; nothing partial is left.
    assert_eq!(latest_step(&run_dir), 3);
    let (side, meta) = nst_model::Checkpoint::resolve(&run_dir).unwrap();
    tensors(&side.with_file_name(&meta.weights_file));
    tensors(&side.with_file_name(&meta.optimizer_file));
    let after: Vec<_> = std::fs::read_dir(&run_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "files left by the failed write");

    // With room again, the run resumes from step 3 and finishes.
    let o = nst_train(&resume).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(latest_step(&run_dir), 6);
}
