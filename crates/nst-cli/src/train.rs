//! `nst-train`: train a model family from a TOML config.
use crate::common;
use anyhow::{bail, Context, Result};
use clap::Parser;
use nst_model::Model;
use nst_train::{
    Checkpoint, Logger, NullLogger, TensorBoard, TrainConfig, TrainModel, TrainOutcome, Trainer,
    TrainerHooks,
};
use std::path::PathBuf;
use tch::Device;

/// Model families `model.kind` can name.
pub const KINDS: &[&str] = &[
    nst_adain::KIND,
    nst_vae::KIND,
    nst_decoders::KIND,
    nst_po::KIND,
    nst_puy::KIND,
];

/// Train a style-transfer model from a TOML config.
///
/// The config has sections [model] [data] [loss] [optim] [train] [log]; see
/// configs/*.toml. Checkpoints go to <train.checkpoint_dir>/<train.run>/, with
/// `latest` naming the newest complete one; TensorBoard events go to
/// <log.dir>/<train.run>/ (watch with `tensorboard --logdir runs`).
///
/// Ctrl-C (or SIGTERM) writes a checkpoint and exits; --resume continues
/// exactly where it stopped.
///
/// Examples:
///   nst-train --config configs/smoke.toml
///   nst-train --config configs/adain.toml --set data.batch_size=16 --set optim.lr=2e-4
///   nst-train --resume checkpoints/adain
#[derive(Debug, Parser)]
#[command(name = "nst-train", version, verbatim_doc_comment)]
pub struct TrainArgs {
    /// The TOML config (optional with --resume: the run's saved config is used).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override a config value, e.g. --set optim.lr=2e-4 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Resume from a run folder (its `latest`), a step_XXXXXXX.json or a weights file.
    #[arg(long, value_name = "PATH")]
    pub resume: Option<PathBuf>,
    /// Device, overriding train.device: auto, cpu, cuda, cuda:N.
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,
    /// Precision of the loss network's convolutions, overriding train.precision:
    /// fp32, bf16 (CPU with AMX/AVX512-BF16, or CUDA) or fp16 (CUDA only).
    /// The trained weights, statistics, losses and optimizer state stay fp32.
    #[arg(long, value_name = "P")]
    pub precision: Option<String>,
    /// Hide the progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Builds the model a config names.
pub fn build_model(cfg: &TrainConfig, device: Device) -> Result<Box<dyn TrainModel>> {
    Ok(match cfg.model_kind.as_str() {
        nst_adain::KIND => Box::new(nst_adain::AdainModel::from_config(
            &cfg.model, &cfg.loss, device,
        )?),
        nst_vae::KIND => Box::new(nst_vae::VaeAdainModel::from_config(
            &cfg.model, &cfg.loss, device,
        )?),
        nst_decoders::KIND => Box::new(nst_decoders::Decoders::from_config(
            &cfg.model, &cfg.loss, device,
        )?),
        nst_po::KIND => Box::new(nst_po::PseudoOptimizer::from_config(
            &cfg.model, &cfg.loss, device,
        )?),
        nst_puy::KIND => Box::new(nst_puy::FlexibleSolver::from_config(
            &cfg.model, &cfg.loss, device,
        )?),
        other => bail!(
            "unknown model.kind {other:?}; known kinds: {}",
            KINDS.join(", ")
        ),
    })
}

pub fn run(args: TrainArgs) -> Result<()> {
    let mut overrides = args.overrides.clone();
    if let Some(d) = &args.device {
        overrides.push(format!("train.device=\"{d}\""));
    }
    if let Some(p) = &args.precision {
        overrides.push(format!("train.precision=\"{p}\""));
    }
    let cfg = match (&args.config, &args.resume) {
        (Some(path), _) => TrainConfig::load(path, &overrides)?,
        (None, Some(resume)) => {
            let (side, meta) = Checkpoint::resolve(resume)?;
            TrainConfig::parse(&meta.config, &overrides, &side.display().to_string())?
        }
        (None, None) => bail!("give --config FILE (or --resume PATH to continue a run)"),
    };
    if let Some(resume) = &args.resume {
        // Architecture comes from the checkpoint: refuse a config that disagrees.
        let (side, meta) = Checkpoint::resolve(resume)?;
        let saved = TrainConfig::parse(&meta.config, &[], &side.display().to_string())?;
        if saved.model != cfg.model {
            bail!(
                "--resume {}: the checkpoint's [model] differs from the config's; resume without --config to use the saved one",
                resume.display()
            );
        }
    }
    let device = cfg.train.device.resolve()?;
    nst_core::seed_everything(cfg.train.seed);
    let precision = cfg.train.precision;
    precision.check(device)?;
    let mut model = build_model(&cfg, device).context("building the model")?;
    model.set_precision(precision)?;
    let mut tb;
    let mut null = NullLogger;
    let logger: &mut dyn Logger = if cfg.log.tensorboard {
        let dir = cfg.log.dir.join(&cfg.train.run);
        tb = TensorBoard::new(&dir)
            .with_context(|| format!("creating the TensorBoard folder {}", dir.display()))?;
        &mut tb
    } else {
        &mut null
    };
    let stop = common::interrupt_flag();
    let hooks = TrainerHooks {
        stop,
        quiet: args.quiet,
        on_step: None,
    };
    if !args.quiet {
        eprintln!(
            "training {} ({}) on {device:?} in {precision} for {} steps; checkpoints in {}, TensorBoard in {}",
            cfg.train.run,
            cfg.model_kind,
            cfg.train.steps,
            cfg.run_dir().display(),
            cfg.log.dir.join(&cfg.train.run).display()
        );
    }
    let outcome =
        Trainer::new(&cfg, device).run(model.as_mut(), args.resume.as_deref(), logger, hooks)?;
    match outcome {
        TrainOutcome::Finished { step, checkpoint } => {
            if !args.quiet {
                eprintln!(
                    "finished at step {step}; checkpoint {}",
                    checkpoint.display()
                );
            }
            Ok(())
        }
        TrainOutcome::Interrupted { step, checkpoint } => {
            let saved = match checkpoint {
                Some(p) => format!("checkpoint {} written", p.display()),
                None => "nothing to save yet".into(),
            };
            bail!(
                "interrupted at step {step}; {saved}; continue with: nst-train --resume {}",
                cfg.run_dir().display()
            )
        }
    }
}
