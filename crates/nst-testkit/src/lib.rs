//! Test helpers shared by the crates' test suites.
//!
//! Parity tests hand their inputs to an independent PyTorch implementation in
//! `tests/torch_ref/*.py` (run with the project venv's python), read back its
//! outputs and compare them at a stated tolerance.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::Tensor;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The project venv's python (`$NST_PYTHON`, set by .cargo/config.toml).
pub fn python() -> PathBuf {
    let p = std::env::var_os("NST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "no python at {} - run scripts/setup.sh first",
        p.display()
    );
    p
}

/// Path of the real VGG19 weights made by scripts/setup.sh.
pub fn vgg19_weights() -> PathBuf {
    let p = repo_root().join("checkpoints/vgg19.safetensors");
    assert!(
        p.exists(),
        "{} missing - run scripts/setup.sh first",
        p.display()
    );
    p
}

/// Runs `tests/torch_ref/<script> <inputs.safetensors> <outputs.safetensors> [args…]`
/// and returns the tensors it wrote.
pub fn torch_reference<S: AsRef<std::ffi::OsStr>>(
    script: &str,
    inputs: &[(&str, &Tensor)],
    args: &[S],
) -> HashMap<String, Tensor> {
    let dir = tempfile::tempdir().unwrap();
    let inp = dir.path().join("in.safetensors");
    let out = dir.path().join("out.safetensors");
    let owned: Vec<(&str, Tensor)> = inputs
        .iter()
        .map(|(n, t)| (*n, t.detach().to_device(tch::Device::Cpu).contiguous()))
        .collect();
    Tensor::write_safetensors(&owned, &inp).unwrap();
    let script_path = repo_root().join("tests/torch_ref").join(script);
    let output = Command::new(python())
        .arg(&script_path)
        .arg(&inp)
        .arg(&out)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "reference {script} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Tensor::read_safetensors(&out)
        .unwrap()
        .into_iter()
        .collect()
}

/// max|a − b| / max(max|b|, 1e-12): the error relative to the reference's scale.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let a = a
        .detach()
        .to_device(tch::Device::Cpu)
        .to_kind(tch::Kind::Double);
    let b = b
        .detach()
        .to_device(tch::Device::Cpu)
        .to_kind(tch::Kind::Double);
    assert_eq!(a.size(), b.size(), "shape mismatch");
    let diff = (&a - &b).abs().max().double_value(&[]);
    let scale = b.abs().max().double_value(&[]).max(1e-12);
    diff / scale
}

/// Asserts `rel_err(got, want) <= rtol`, naming `what` on failure.
#[track_caller]
pub fn assert_close(got: &Tensor, want: &Tensor, rtol: f64, what: &str) {
    let e = rel_err(got, want);
    assert!(e <= rtol, "{what}: relative error {e:.3e} > {rtol:.0e}");
}

/// Writes two 64×64 PNGs (`0.png`, `1.png`) into `dir` for overfit tests:
/// smooth content (a disc on a gradient), or, with `style`, bold coloured
/// stripes with a different palette per image.
pub fn write_tiny_images(dir: &Path, style: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..2u32 {
        let img = if style {
            image::RgbImage::from_fn(64, 64, move |x, y| {
                let band = ((x + 2 * y + 7 * i) / 6) % 3;
                let pal = [
                    [[220, 40, 30], [250, 200, 20], [20, 30, 160]],
                    [[20, 160, 60], [240, 240, 240], [120, 20, 140]],
                ];
                image::Rgb(pal[i as usize][band as usize])
            })
        } else {
            image::RgbImage::from_fn(64, 64, move |x, y| {
                let d =
                    ((x as f32 - 32.0).powi(2) + (y as f32 - 30.0 - i as f32 * 4.0).powi(2)).sqrt();
                let v = if d < 18.0 { 200 } else { (x * 2) as u8 };
                image::Rgb([v, (y * 3) as u8, 128 - v / 2])
            })
        };
        img.save(dir.join(format!("{i}.png"))).unwrap();
    }
}

/// An overfit test's training config: `[model]` of `kind` with the test VGG
/// weights and the lines `model`, `[loss]` with the lines `loss`, and the
/// tiny images ([`write_tiny_images`], written here into `dir/c` and
/// `dir/s`) as 64-px crops in batches of 2, `steps` steps at lr 1e-3 on the
/// CPU with seed 0, checkpoints in `dir/ck` (only the last).
pub fn overfit_config(dir: &Path, kind: &str, model: &str, loss: &str, steps: u32) -> String {
    write_tiny_images(&dir.join("c"), false);
    write_tiny_images(&dir.join("s"), true);
    format!(
        r#"
[model]
kind = "{kind}"
vgg_weights = "{w}"
{model}
[loss]
{loss}
[data]
content = {{ kind = "folder", root = "{c}" }}
style = {{ kind = "folder", root = "{s}" }}
resize_shorter = 64
crop = 64
flip = false
batch_size = 2
threads = 1
[optim]
lr = 1e-3
[train]
run = "overfit"
steps = {steps}
seed = 0
device = "cpu"
checkpoint_dir = "{ck}"
checkpoint_every = 1000
"#,
        w = vgg19_weights().display(),
        c = dir.join("c").display(),
        s = dir.join("s").display(),
        ck = dir.join("ck").display(),
    )
}

/// Gatys's style distance, written from its definition: Σ over layers of the
/// mean squared difference of the Gram matrices G = F·Fᵀ / (C·H·W), with
/// `x[l]`, `target[l]` the maps `[B, C, H, W]` of layer `l`.
pub fn gram_style_distance(x: &[Tensor], target: &[Tensor]) -> f64 {
    let gram = |f: &Tensor| {
        let (b, c, h, w) = f.size4().unwrap();
        let f = f.to_kind(tch::Kind::Float).reshape([b, c, h * w]);
        f.bmm(&f.transpose(1, 2)) / (c * h * w) as f64
    };
    x.iter()
        .zip(target)
        .map(|(a, t)| {
            (gram(a) - gram(t))
                .square()
                .mean(tch::Kind::Float)
                .double_value(&[])
        })
        .sum()
}

/// A trained stylisation's check on the tiny images of `dir/c` and `dir/s`:
/// `stylize(contents, styles)` is closer in style ([`gram_style_distance`]
/// on the maps `encode` returns) to the styles than the unstylised contents
/// are. Prints both.
pub fn assert_closer_in_style(
    dir: &Path,
    stylize: impl Fn(&Tensor, &Tensor) -> Tensor,
    encode: impl Fn(&Tensor) -> Vec<Tensor>,
) {
    let (contents, styles) = (tiny_batch(&dir.join("c")), tiny_batch(&dir.join("s")));
    let (lo, lc) = tch::no_grad(|| {
        let fs = encode(&styles);
        (
            gram_style_distance(&encode(&stylize(&contents, &styles)), &fs),
            gram_style_distance(&encode(&contents), &fs),
        )
    });
    eprintln!("Gram style loss: outputs {lo:.4e}, unstylised contents {lc:.4e}");
    assert!(
        lo < lc,
        "stylised outputs ({lo}) must be closer in style than the contents ({lc})"
    );
}

/// The two images [`write_tiny_images`] wrote into `dir`, as one batch
/// `[2, 3, 64, 64]` fp32 in [0, 1].
pub fn tiny_batch(dir: &Path) -> Tensor {
    let load = |i: u32| {
        let path = dir.join(format!("{i}.png"));
        let img = image::open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .to_rgb8();
        let (w, h) = img.dimensions();
        Tensor::from_slice(img.as_raw())
            .reshape([1, h as i64, w as i64, 3])
            .permute([0, 3, 1, 2])
            .to_kind(tch::Kind::Float)
            / 255.0
    };
    Tensor::cat(&[load(0), load(1)], 0)
}

/// An overfit test's check: the mean of the last 10 `totals` (one per
/// training step) is more than `factor` times below the first. Prints both.
pub fn assert_loss_fell(totals: &[f64], factor: f64) {
    assert!(totals.len() >= 10, "only {} steps logged", totals.len());
    let first = totals[0];
    let last10 = totals[totals.len() - 10..].iter().sum::<f64>() / 10.0;
    eprintln!(
        "overfit: total loss {first:.4e} -> {last10:.4e} (mean of last 10), ratio {:.1}",
        first / last10
    );
    assert!(
        last10 * factor < first,
        "total loss fell only from {first} to {last10}"
    );
}

/// Runs one of the workspace's binaries (`env!("CARGO_BIN_EXE_…")`) from the
/// repository root, with the test VGG weights, and returns its output.
pub fn run_bin<S: AsRef<std::ffi::OsStr>>(exe: &str, args: &[S]) -> std::process::Output {
    bin_command(exe).args(args).output().unwrap()
}

/// A command line written as in a shell, split into its arguments (quotes
/// respected): `sh!("gatys --content {c:?} --steps 2")` (the arguments of
/// `format!`; `{p:?}` quotes a path). Panics on unbalanced quotes.
#[macro_export]
macro_rules! sh {
    ($($t:tt)+) => {
        $crate::split_line(&format!($($t)+))
    };
}

/// [`sh!`]'s splitting.
pub fn split_line(line: &str) -> Vec<String> {
    shlex::split(line).unwrap_or_else(|| panic!("unbalanced quotes in {line:?}"))
}

/// The command [`run_bin`] runs, before its arguments: one of the
/// workspace's binaries, from the repository root, with the test VGG weights.
pub fn bin_command(exe: &str) -> Command {
    let mut c = Command::new(exe);
    c.current_dir(repo_root())
        .env("NST_VGG_WEIGHTS", vgg19_weights());
    c
}

/// Runs `nst-train` (its `env!("CARGO_BIN_EXE_nst-train")`) on `config` with
/// `--set` overrides, its checkpoints under `dir/ck` and its logs under
/// `dir/runs`, on the CPU, quietly; asserts it succeeded.
pub fn train_in<S: AsRef<str>>(nst_train: &str, config: &str, dir: &Path, sets: &[S]) {
    let ck = format!("train.checkpoint_dir=\"{}\"", dir.join("ck").display());
    let log = format!("log.dir=\"{}\"", dir.join("runs").display());
    let mut args = vec!["--config", config, "--set", &ck, "--set", &log];
    for s in sets {
        args.extend(["--set", s.as_ref()]);
    }
    args.extend(["--device", "cpu", "-q"]);
    assert_ok(&run_bin(nst_train, &args));
}

/// What a TensorBoard run folder holds, read by `tests/tools/read_tensorboard.py`
/// (the `tensorboard` package's own reader): `{"scalars": {tag: [[step,
/// value], …]}, "images": {tag: [[step, width, height], …]}}`.
pub fn read_tensorboard(run_dir: &Path) -> serde_json::Value {
    let out = Command::new(python())
        .arg(repo_root().join("tests/tools/read_tensorboard.py"))
        .arg(run_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Asserts a command succeeded, showing its stderr otherwise.
#[track_caller]
pub fn assert_ok(o: &std::process::Output) {
    // The status too: a process killed by a signal leaves stderr empty.
    assert!(
        o.status.success(),
        "{} (stderr: {:?}; stdout: {:?})",
        o.status,
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
}

/// Asserts a failed run: exit code 1, exactly one non-empty stderr line starting
/// with "error:" and containing `needle`, and no file at `out`.
#[track_caller]
pub fn assert_one_error(o: &std::process::Output, needle: &str, out: &Path) {
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "{err}"
    );
    assert!(!out.exists(), "partial output left at {}", out.display());
    let Ok(entries) = std::fs::read_dir(out.parent().unwrap()) else {
        return;
    };
    let leftovers: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// Asserts a command failed cleanly (no panic) and returns its stderr.
#[track_caller]
pub fn clean_error(o: &std::process::Output) -> String {
    assert!(!o.status.success(), "the command should have failed");
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!e.contains("panicked"), "{e}");
    e
}

/// LibTorch's random number generator is process-wide and the test harness
/// runs a crate's tests on several threads. A test that seeds the generator
/// and draws from it holds this lock for its whole body, so a given seed
/// always gives the same stream whatever else is running. Take it once, in
/// the `#[test]` function itself (the lock is not re-entrant).
pub fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a stylised output still shows something (issue 31): the standard
/// deviation of its pixels (0–255, all channels), and the Pearson correlation
/// between the magnitudes of its luminance gradients and the content's (the
/// content resized to the output's size with a triangle filter). An all-black
/// or flat output has std 0; noise with no trace of the content has a
/// correlation near 0.
pub fn degeneracy_stats(output: &Path, content: &Path) -> (f64, f64) {
    let out = image::open(output).unwrap().to_rgb8();
    let (w, h) = out.dimensions();
    let content = image::imageops::resize(
        &image::open(content).unwrap().to_rgb8(),
        w,
        h,
        image::imageops::FilterType::Triangle,
    );
    let px: Vec<f64> = out.as_raw().iter().map(|&v| v as f64).collect();
    let mean = px.iter().sum::<f64>() / px.len() as f64;
    let std = (px.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / px.len() as f64).sqrt();
    let luma = |img: &image::RgbImage| -> Vec<f64> {
        img.pixels()
            .map(|p| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64)
            .collect()
    };
    let grad = |l: &[f64]| -> Vec<f64> {
        let (w, h) = (w as usize, h as usize);
        let mut g = Vec::with_capacity((w - 1) * (h - 1));
        for y in 0..h - 1 {
            for x in 0..w - 1 {
                let dx = l[y * w + x + 1] - l[y * w + x];
                let dy = l[(y + 1) * w + x] - l[y * w + x];
                g.push((dx * dx + dy * dy).sqrt());
            }
        }
        g
    };
    let (a, b) = (grad(&luma(&out)), grad(&luma(&content)));
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    let corr = if va > 0.0 && vb > 0.0 {
        cov / (va * vb).sqrt()
    } else {
        0.0
    };
    (std, corr)
}

/// A sample image of the repository (`samples/...`), resized to exactly
/// `width × height`, as `[1, 3, H, W]` fp32 in [0, 1] on the CPU.
pub fn sample_image(rel: &str, width: u32, height: u32) -> Tensor {
    let path = repo_root().join(rel);
    let img = image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .resize_exact(width, height, image::imageops::FilterType::Triangle)
        .to_rgb8();
    Tensor::from_slice(img.as_raw())
        .reshape([height as i64, width as i64, 3])
        .permute([2, 0, 1])
        .unsqueeze(0)
        .to_kind(tch::Kind::Float)
        / 255.0
}
