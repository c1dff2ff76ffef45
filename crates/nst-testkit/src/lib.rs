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
pub fn torch_reference(
    script: &str,
    inputs: &[(&str, &Tensor)],
    args: &[&str],
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
