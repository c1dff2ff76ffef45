//! Issue 30: fuzzed inputs. Images of the six formats we read, training
//! configs, and checkpoints (weights and sidecars), damaged at random, are fed
//! to the loaders in-process. The contract: no panic, and every refusal is
//! one line. Truncated images are always refused; a damaged checkpoint that
//! loads must load the original weights (the checksum covers them).
//!
//! The CI run tries `NST_FUZZ_CASES` cases per kind (default 150);
//! `scripts/fuzz.sh` is the long mode and prints the report figures.
#![allow(clippy::unwrap_used)]
use nst_model::{Checkpoint, Model, TrainModel};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use tch::Device;

fn cases() -> usize {
    std::env::var("NST_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150)
}

/// What one fuzzed input did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Accepted,
    Refused,
}

/// Outcomes per mutation, and the failures (panics, multi-line errors, …).
#[derive(Default)]
struct Tally {
    counts: BTreeMap<(String, Outcome), usize>,
    failures: Vec<String>,
}

impl Tally {
    /// Runs `f` under `catch_unwind`: a panic or a multi-line error is a failure.
    fn run<E: std::fmt::Display>(
        &mut self,
        what: &str,
        case: &str,
        f: impl FnOnce() -> Result<(), E>,
    ) -> Option<Outcome> {
        let outcome = match catch_unwind(AssertUnwindSafe(f)) {
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                self.failures.push(format!("{case}: panicked: {msg}"));
                return None;
            }
            Ok(Ok(())) => Outcome::Accepted,
            Ok(Err(e)) => {
                let e = e.to_string();
                if e.trim().is_empty() || e.trim_end().contains('\n') {
                    self.failures
                        .push(format!("{case}: refusal is not one line: {e:?}"));
                }
                Outcome::Refused
            }
        };
        *self.counts.entry((what.to_string(), outcome)).or_default() += 1;
        Some(outcome)
    }

    fn report(&self, kind: &str) {
        let total: usize = self.counts.values().sum();
        eprintln!(
            "fuzz {kind}: {total} cases, {} failures (panics or multi-line errors)",
            self.failures.len()
        );
        for ((what, o), n) in &self.counts {
            eprintln!("  {what:<22} {o:?}: {n}");
        }
        for f in self.failures.iter().take(20) {
            eprintln!("  FAILURE {f}");
        }
    }
}

/// With `NST_FUZZ_KEEP=<folder>`, a failing input is kept there to replay.
fn keep_failing_input(name: &str, bytes: &[u8]) {
    if let Some(dir) = std::env::var_os("NST_FUZZ_KEEP") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// One damaged copy of `bytes`, and the name of the damage.
fn mutate(bytes: &[u8], rng: &mut ChaCha8Rng) -> (&'static str, Vec<u8>) {
    let mut b = bytes.to_vec();
    let n = b.len();
    match rng.gen_range(0..5) {
        0 => {
            b.truncate(rng.gen_range(0..n));
            ("truncated", b)
        }
        1 => {
            for _ in 0..rng.gen_range(1..=8) {
                let i = rng.gen_range(0..n);
                b[i] ^= 1 << rng.gen_range(0..8);
            }
            ("bit flips", b)
        }
        2 => {
            // Random bytes over a range, mostly near the start (headers).
            let start = if rng.gen_bool(0.5) {
                rng.gen_range(0..n.min(64))
            } else {
                rng.gen_range(0..n)
            };
            let len = rng.gen_range(1..=16).min(n - start);
            rng.fill(&mut b[start..start + len]);
            ("random bytes", b)
        }
        3 => {
            let i = rng.gen_range(0..n);
            let len = rng.gen_range(1..=64).min(n - i);
            let chunk = b[i..i + len].to_vec();
            let at = rng.gen_range(0..=n);
            b.splice(at..at, chunk);
            ("chunk duplicated", b)
        }
        _ => {
            let i = rng.gen_range(0..n);
            let len = rng.gen_range(1..=64).min(n - i);
            b.drain(i..i + len);
            ("chunk removed", b)
        }
    }
}

/// Images: small valid files of each format, damaged, through
/// `nst_core::load_image` (what nst-infer, mask loading and the training
/// loader use).
#[test]
fn fuzzed_images_never_panic_and_truncations_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = image::open(nst_testkit::repo_root().join("samples/content/chelsea.png"))
        .unwrap()
        .resize_exact(64, 48, image::imageops::FilterType::Triangle);
    let formats = [
        ("png", image::ImageFormat::Png),
        ("jpg", image::ImageFormat::Jpeg),
        ("webp", image::ImageFormat::WebP),
        ("tiff", image::ImageFormat::Tiff),
        ("gif", image::ImageFormat::Gif),
        ("bmp", image::ImageFormat::Bmp),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(30);
    let mut tally = Tally::default();
    for (ext, format) in formats {
        let mut seed = std::io::Cursor::new(Vec::new());
        let img = if format == image::ImageFormat::Jpeg {
            image::DynamicImage::ImageRgb8(src.to_rgb8())
        } else {
            src.clone()
        };
        img.write_to(&mut seed, format).unwrap();
        let seed = seed.into_inner();
        let path = tmp.path().join(format!("x.{ext}"));
        std::fs::write(&path, &seed).unwrap();
        if let Err(e) = nst_core::load_image(&path, Default::default()) {
            panic!("the undamaged {ext} is refused: {e}");
        }
        for i in 0..cases() {
            let (damage, bytes) = mutate(&seed, &mut rng);
            std::fs::write(&path, &bytes).unwrap();
            let outcome = tally.run(
                &format!("{ext} {damage}"),
                &format!("{ext} case {i} ({damage}, {} bytes)", bytes.len()),
                || nst_core::load_image(&path, Default::default()).map(|_| ()),
            );
            if damage == "truncated" && outcome == Some(Outcome::Accepted) {
                tally.failures.push(format!(
                    "{ext} case {i}: cut at {} of {} bytes and accepted",
                    bytes.len(),
                    seed.len()
                ));
            }
        }
    }
    tally.report("images");
    assert!(tally.failures.is_empty(), "{}", tally.failures.join("\n"));
}

/// Damage at the level of TOML text: lines dropped, doubled or swapped,
/// values replaced by hostile ones, unknown keys, byte damage.
fn mutate_toml(text: &str, rng: &mut ChaCha8Rng) -> (&'static str, String) {
    const VALUES: &[&str] = &[
        "-1",
        "0",
        "1e400",
        "-1e400",
        "nan",
        "inf",
        "\"x\"",
        "[",
        "{}",
        "[]",
        "true",
        "99999999999999999999",
        "1e9",
        "0.0",
        "\"\"",
        "[1, \"a\"]",
        "{ kind = 3 }",
        "\"../../../../etc/passwd\"",
        "18446744073709551615",
        "-0.0",
    ];
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let n = lines.len();
    let i = rng.gen_range(0..n);
    match rng.gen_range(0..6) {
        0 => {
            // A value replaced.
            for _ in 0..rng.gen_range(1..=3) {
                let j = rng.gen_range(0..n);
                if let Some((k, _)) = lines[j].split_once('=') {
                    lines[j] = format!("{k}= {}", VALUES[rng.gen_range(0..VALUES.len())]);
                }
            }
            ("value replaced", lines.join("\n"))
        }
        1 => {
            lines.remove(i);
            ("line removed", lines.join("\n"))
        }
        2 => {
            let l = lines[i].clone();
            lines.insert(rng.gen_range(0..=n), l);
            ("line duplicated", lines.join("\n"))
        }
        3 => {
            lines.insert(
                i,
                format!(
                    "unknown_{} = {}",
                    rng.gen_range(0..9),
                    VALUES[rng.gen_range(0..VALUES.len())]
                ),
            );
            ("key added", lines.join("\n"))
        }
        4 => {
            let j = rng.gen_range(0..n);
            lines.swap(i, j);
            ("lines swapped", lines.join("\n"))
        }
        _ => {
            let (damage, bytes) = mutate(text.as_bytes(), rng);
            let _ = damage;
            (
                "bytes damaged",
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        }
    }
}

/// Configs: every config in configs/, damaged, through the trainer's parser
/// and the model's own sections (`nst-train`'s path up to building the
/// model's variables, which the memory check guards).
#[test]
fn fuzzed_configs_never_panic() {
    let root = nst_testkit::repo_root();
    let mut seeds: Vec<_> = std::fs::read_dir(root.join("configs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    seeds.sort();
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let mut tally = Tally::default();
    for seed in &seeds {
        let text = std::fs::read_to_string(seed).unwrap();
        let name = seed.file_name().unwrap().to_string_lossy().into_owned();
        nst_train::TrainConfig::parse(&text, &[], &name)
            .unwrap_or_else(|e| panic!("{name} as shipped is refused: {e}"));
        for i in 0..cases().div_ceil(seeds.len()).max(10) {
            let (damage, t) = mutate_toml(&text, &mut rng);
            tally.run(
                damage,
                &format!("{name} case {i} ({damage})"),
                || -> anyhow::Result<()> {
                    let cfg = nst_train::TrainConfig::parse(&t, &[], &name)?;
                    nst_cli::train::build_model(&cfg, Device::Cpu).map(|_| ())
                },
            );
        }
    }
    tally.report("configs");
    assert!(tally.failures.is_empty(), "{}", tally.failures.join("\n"));
}

/// Checkpoints: a real (tiny) Puy–Pérez checkpoint from `nst-train`; its
/// weights file and its sidecar damaged, through the one loader.
#[test]
fn fuzzed_checkpoints_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    nst_testkit::train_in(
        env!("CARGO_BIN_EXE_nst-train"),
        "configs/puy_perez_smoke.toml",
        tmp.path(),
        &nst_testkit::sh!(
            "train.steps=1 data.crop=32 data.resize_shorter=40 'model.channels=[4, 8, 8]'"
        ),
    );
    std::env::set_var("NST_VGG_WEIGHTS", nst_testkit::vgg19_weights());
    type M = nst_puy::FlexibleSolver;
    let run = tmp.path().join("ck/puy_perez_smoke");
    let sidecar = run.join("step_0000001.json");
    let weights = run.join("step_0000001.safetensors");
    let base = nst_model::load::<M>(&run, Device::Cpu, Default::default()).unwrap();
    let original: Vec<(String, tch::Tensor)> = base
        .model
        .var_store()
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.detach().copy()))
        .collect();
    let same_as_original = |vs: &tch::nn::VarStore| {
        let now = vs.variables();
        original.iter().all(|(k, v)| now[k].equal(v))
    };

    let mut rng = ChaCha8Rng::seed_from_u64(32);
    let mut tally = Tally::default();
    let fuzz_dir = tmp.path().join("fuzz");
    std::fs::create_dir_all(&fuzz_dir).unwrap();

    // Weights: into the loaded model's variables; what loads must be the original.
    let w_bytes = std::fs::read(&weights).unwrap();
    let w_path = fuzz_dir.join("w.safetensors");
    for i in 0..cases() {
        let (damage, bytes) = mutate(&w_bytes, &mut rng);
        std::fs::write(&w_path, &bytes).unwrap();
        let vs = base.model.var_store();
        let outcome = tally.run(
            &format!("weights {damage}"),
            &format!("weights case {i} ({damage})"),
            || Checkpoint::load_weights(&w_path, vs, M::KIND),
        );
        if outcome == Some(Outcome::Accepted) && !same_as_original(vs) {
            tally.failures.push(format!(
                "weights case {i} ({damage}): accepted with other values"
            ));
            keep_failing_input(&format!("weights_{i}.safetensors"), &bytes);
            keep_failing_input("weights_original.safetensors", &w_bytes);
        }
    }
    // Restore the variables the accepted-but-changed cases would have touched.
    Checkpoint::load_weights(&weights, base.model.var_store(), M::KIND).unwrap();

    // Sidecars: a damaged JSON beside the intact weights, through nst_model::load.
    let s_bytes = std::fs::read(&sidecar).unwrap();
    std::fs::copy(&weights, fuzz_dir.join("step_0000001.safetensors")).unwrap();
    let s_path = fuzz_dir.join("step_0000001.json");

    // Found by this fuzzer: a weights_file with a newline gave a two-line
    // error, and one with a path could point outside the run folder.
    let meta: serde_json::Value = serde_json::from_slice(&s_bytes).unwrap();
    for bad in [
        "../ck/puy_perez_smoke/step_0000001.safetensors",
        "step\n.safetensors",
        "",
    ] {
        let mut m = meta.clone();
        m["weights_file"] = serde_json::Value::String(bad.into());
        std::fs::write(&s_path, serde_json::to_vec(&m).unwrap()).unwrap();
        let e = nst_model::load::<M>(&s_path, Device::Cpu, Default::default())
            .err()
            .unwrap_or_else(|| panic!("weights_file {bad:?} accepted"))
            .to_string();
        assert!(e.contains("weights_file") && !e.contains('\n'), "{e}");
    }

    for i in 0..cases() / 3 {
        let (damage, bytes) = mutate(&s_bytes, &mut rng);
        std::fs::write(&s_path, &bytes).unwrap();
        tally.run(
            &format!("sidecar {damage}"),
            &format!("sidecar case {i} ({damage})"),
            || nst_model::load::<M>(&s_path, Device::Cpu, Default::default()).map(|_| ()),
        );
    }
    tally.report("checkpoints");
    assert!(tally.failures.is_empty(), "{}", tally.failures.join("\n"));
}
