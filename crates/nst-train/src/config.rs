//! `nst-train` configs: TOML with sections `[model] [data] [loss] [optim] [train] [log]`.
//!
//! The generic sections are parsed here with unknown keys rejected by name;
//! `[model]` and `[loss]` belong to the model family named by `model.kind`,
//! which parses them itself, just as strictly. `--set key=value` overrides any
//! value before parsing (`--set optim.lr=2e-4 --set data.content.root=/data/places`).
use crate::{Error, Result};
use nst_data::{PipelineConfig, SourceConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[data]`: the two independent streams and the pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// The content stream; texture models (which read only `style`) may omit it.
    #[serde(default)]
    pub content: Option<SourceConfig>,
    pub style: SourceConfig,
    #[serde(default = "d_resize")]
    pub resize_shorter: u32,
    #[serde(default = "d_crop")]
    pub crop: u32,
    #[serde(default = "d_true")]
    pub flip: bool,
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    #[serde(default = "d_threads")]
    pub threads: usize,
    #[serde(default = "d_prefetch")]
    pub prefetch: usize,
    #[serde(default = "d_bad")]
    pub max_bad_fraction: f64,
}

fn d_resize() -> u32 {
    512
}
fn d_crop() -> u32 {
    256
}
fn d_true() -> bool {
    true
}
fn d_batch() -> usize {
    8
}
fn d_threads() -> usize {
    2
}
fn d_prefetch() -> usize {
    4
}
fn d_bad() -> f64 {
    0.01
}

impl DataSection {
    pub fn pipeline(&self) -> PipelineConfig {
        PipelineConfig {
            resize_shorter: self.resize_shorter,
            crop: self.crop,
            flip: self.flip,
            batch_size: self.batch_size,
            threads: self.threads,
            prefetch: self.prefetch,
            max_bad_fraction: self.max_bad_fraction,
        }
    }
}

/// `[optim]`: Adam, with lr(step) = lr / (1 + lr_decay · step) (the AdaIN schedule).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimSection {
    #[serde(default = "d_lr")]
    pub lr: f64,
    #[serde(default)]
    pub lr_decay: f64,
    #[serde(default = "d_b1")]
    pub beta1: f64,
    #[serde(default = "d_b2")]
    pub beta2: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// Largest global L2 norm of the gradients; a larger one is scaled down
    /// to it before the Adam step (0: off). The norm before clipping is
    /// logged as `optim/grad_norm` either way.
    #[serde(default)]
    pub grad_clip: f64,
    /// Learning-rate multipliers by parameter-name prefix, e.g.
    /// `lr_scale = { relu1_1 = 4.0, relu5_1 = 0.3 }` for the decoders (the
    /// longest matching prefix wins; 0 freezes). May change on `--resume`.
    #[serde(default)]
    pub lr_scale: std::collections::BTreeMap<String, f64>,
}

fn d_lr() -> f64 {
    1e-4
}
fn d_b1() -> f64 {
    0.9
}
fn d_b2() -> f64 {
    0.999
}

/// `[train]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Run name: checkpoints go to `<checkpoint_dir>/<run>`, events to `<log.dir>/<run>`.
    pub run: String,
    pub steps: u64,
    #[serde(default)]
    pub seed: u64,
    /// `auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`.
    #[serde(default)]
    pub device: nst_core::DeviceSpec,
    /// Precision of the loss network's convolutions: "fp32" (default), "bf16"
    /// (CPU with AMX/AVX512-BF16, or CUDA) or "fp16" (CUDA only). The trained
    /// weights, statistics, losses and optimizer state stay fp32.
    #[serde(default)]
    pub precision: nst_core::Precision,
    #[serde(default = "d_ckpt_dir")]
    pub checkpoint_dir: PathBuf,
    #[serde(default = "d_ckpt_every")]
    pub checkpoint_every: u64,
    #[serde(default = "d_keep")]
    pub keep_last: usize,
}

fn d_ckpt_dir() -> PathBuf {
    "checkpoints".into()
}
fn d_ckpt_every() -> u64 {
    1000
}
fn d_keep() -> usize {
    5
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    #[serde(default = "d_log_dir")]
    pub dir: PathBuf,
    #[serde(default = "d_scalar_every")]
    pub scalar_every: u64,
    #[serde(default = "d_image_every")]
    pub image_every: u64,
    /// Write TensorBoard events (false: progress bar only).
    #[serde(default = "d_true")]
    pub tensorboard: bool,
}

fn d_log_dir() -> PathBuf {
    "runs".into()
}
fn d_scalar_every() -> u64 {
    10
}
fn d_image_every() -> u64 {
    500
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            dir: d_log_dir(),
            scalar_every: d_scalar_every(),
            image_every: d_image_every(),
            tensorboard: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    model: toml::Table,
    data: DataSection,
    #[serde(default)]
    loss: toml::Table,
    optim: OptimSection,
    train: TrainSection,
    #[serde(default)]
    log: LogSection,
}

/// A parsed, validated config. `model` and `loss` are handed to the model family.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub model_kind: String,
    pub model: toml::Table,
    pub data: DataSection,
    pub loss: toml::Table,
    pub optim: OptimSection,
    pub train: TrainSection,
    pub log: LogSection,
    /// The resolved config as TOML (saved with the run and every checkpoint).
    pub resolved: String,
}

/// Parses a `--set` value as TOML (number, bool, array, quoted string), else as a bare string.
fn parse_value(v: &str) -> toml::Value {
    let doc = format!("v = {v}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(v.to_string())),
        Err(_) => toml::Value::String(v.to_string()),
    }
}

/// Applies `a.b.c=value` to a TOML table, creating tables on the way.
pub fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<()> {
    let (key, value) = assignment
        .split_once('=')
        .ok_or_else(|| Error::Config(format!("--set {assignment:?}: expected key=value")))?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(Error::Config(format!(
            "--set {assignment:?}: bad key {key:?}"
        )));
    }
    let mut t = table;
    for p in &parts[..parts.len() - 1] {
        let entry = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry
            .as_table_mut()
            .ok_or_else(|| Error::Config(format!("--set {key}: {p} is not a table")))?;
    }
    t.insert(
        parts[parts.len() - 1].to_string(),
        parse_value(value.trim()),
    );
    Ok(())
}

impl TrainConfig {
    /// Parses TOML text, applies `--set` overrides, and validates the generic sections.
    pub fn parse(text: &str, overrides: &[String], origin: &str) -> Result<Self> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            Error::Config(format!("{origin}: {}", one_line(&e.to_string())))
        })?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let resolved = toml::to_string(&table).map_err(|e| Error::Config(e.to_string()))?;
        // Deserialised through serde_path_to_error so that a bad value names
        // its key ("train.precision: invalid precision \"int8\"…").
        let raw: Raw =
            nst_model::config::from_toml(toml::Value::Table(table)).map_err(|(path, msg)| {
                Error::Config(match path {
                    None => format!("{origin}: {msg}"),
                    Some(p) => format!("{origin}: {p}: {msg}"),
                })
            })?;
        let model_kind = raw
            .model
            .get("kind")
            .and_then(|k| k.as_str())
            .ok_or_else(|| Error::Config(format!("{origin}: [model] needs kind = \"…\"")))?
            .to_string();
        let cfg = Self {
            model_kind,
            model: raw.model,
            data: raw.data,
            loss: raw.loss,
            optim: raw.optim,
            train: raw.train,
            log: raw.log,
            resolved,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn load(path: &std::path::Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("{}: cannot read: {e}", path.display())))?;
        Self::parse(&text, overrides, &path.display().to_string())
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |k: &str, why: &str| Err(Error::Config(format!("{k}: {why}")));
        if self.train.steps == 0 {
            return bad("train.steps", "must be at least 1");
        }
        if self.train.run.is_empty() || self.train.run.contains(['/', '\\']) {
            return bad("train.run", "must be a plain, non-empty name");
        }
        if self.train.checkpoint_every == 0 {
            return bad("train.checkpoint_every", "must be at least 1");
        }
        if self.train.keep_last == 0 {
            return bad("train.keep_last", "must be at least 1");
        }
        if !(self.optim.lr > 0.0 && self.optim.lr.is_finite()) {
            return bad("optim.lr", "must be a positive number");
        }
        if !(0.0..1.0).contains(&self.optim.beta1) || !(0.0..1.0).contains(&self.optim.beta2) {
            return bad("optim.beta1/beta2", "must be in [0, 1)");
        }
        if self.optim.lr_decay < 0.0 || self.optim.weight_decay < 0.0 {
            return bad("optim.lr_decay/weight_decay", "must not be negative");
        }
        if let Some((k, v)) = self
            .optim
            .lr_scale
            .iter()
            .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
        {
            return bad(
                &format!("optim.lr_scale.{k}"),
                &format!("must be a number ≥ 0, got {v}"),
            );
        }
        if !(self.optim.grad_clip >= 0.0 && self.optim.grad_clip.is_finite()) {
            return bad("optim.grad_clip", "must be 0 (off) or a positive number");
        }
        if self.data.batch_size == 0 {
            return bad("data.batch_size", "must be at least 1");
        }
        if self.data.crop < 32 {
            return bad("data.crop", "must be at least 32");
        }
        if self.data.threads == 0 {
            return bad("data.threads", "must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.data.max_bad_fraction) {
            return bad("data.max_bad_fraction", "must be in [0, 1]");
        }
        if self.log.scalar_every == 0 || self.log.image_every == 0 {
            return bad("log.scalar_every/image_every", "must be at least 1");
        }
        self.train.device.resolve()?;
        Ok(())
    }

    /// `<checkpoint_dir>/<run>`.
    pub fn run_dir(&self) -> PathBuf {
        self.train.checkpoint_dir.join(&self.train.run)
    }
}

pub use nst_model::config::{one_line, parse_section};

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[model]
kind = "adain"
[data]
content = { kind = "folder", root = "a" }
style = { kind = "folder", root = "b" }
crop = 64
[optim]
lr = 1e-4
[train]
run = "x"
steps = 10
device = "cpu"
"#;

    #[test]
    fn parses_defaults_and_overrides() {
        let c = TrainConfig::parse(
            BASE,
            &[
                "optim.lr=2e-4".into(),
                "train.steps=5".into(),
                "data.style.root=/s".into(),
            ],
            "t",
        )
        .unwrap();
        assert_eq!(c.model_kind, "adain");
        assert_eq!(c.optim.lr, 2e-4);
        assert_eq!(c.train.steps, 5);
        assert_eq!(c.data.style.root, PathBuf::from("/s"));
        assert_eq!(c.data.batch_size, 8, "default");
        assert!(c.resolved.contains("steps = 5"));
        // The resolved config parses back to the same thing.
        let again = TrainConfig::parse(&c.resolved, &[], "resolved").unwrap();
        assert_eq!(again.resolved, c.resolved);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = TrainConfig::parse(&BASE.replace("crop = 64", "crop = 64\ncorp = 3"), &[], "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("corp"), "{e}");
        let e = TrainConfig::parse(BASE, &["optim.lrr=1".into()], "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lrr"), "{e}");
        let e = TrainConfig::parse(BASE, &["optim.lr=-1".into()], "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("optim.lr"), "{e}");
        let e = TrainConfig::parse(BASE, &["train.device=tpu".into()], "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tpu"), "{e}");
        let e = TrainConfig::parse(BASE, &["train.precision=\"int8\"".into()], "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.precision") && e.contains("int8"), "{e}");
        let ok = TrainConfig::parse(BASE, &["train.precision=\"bf16\"".into()], "t").unwrap();
        assert_eq!(ok.train.precision, nst_core::Precision::Bf16);
        let e = TrainConfig::parse(BASE, &["nokey".into()], "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("key=value"), "{e}");
        let e = TrainConfig::parse("[model]\n", &[], "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field"), "{e}");
    }
}
