//! The model-agnostic training loop.
use crate::checkpoint::{Checkpoint, CheckpointMeta, FORMAT};
use crate::{Adam, AdamConfig, Error, Logger, Result, TrainConfig, TrainModel};
use indicatif::{ProgressBar, ProgressStyle};
use nst_data::{Loader, Position};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tch::Device;

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainOutcome {
    Finished {
        step: u64,
        checkpoint: PathBuf,
    },
    Interrupted {
        step: u64,
        checkpoint: Option<PathBuf>,
    },
}

/// Control from the outside: a stop flag (set by SIGINT/SIGTERM), the progress
/// display and a per-step callback (tests use it to record losses).
pub struct TrainerHooks {
    pub stop: Arc<AtomicBool>,
    pub quiet: bool,
    pub on_step: Option<Box<dyn FnMut(u64, &BTreeMap<String, f64>)>>,
}

impl Default for TrainerHooks {
    fn default() -> Self {
        Self {
            stop: Arc::new(AtomicBool::new(false)),
            quiet: true,
            on_step: None,
        }
    }
}

/// Every step's logged terms, in order, as recorded by [`TrainerHooks::recording`].
pub type StepLog = Arc<std::sync::Mutex<Vec<BTreeMap<String, f64>>>>;

impl TrainerHooks {
    /// Quiet hooks that record every step's logged terms (`"total"` and the
    /// model's named terms) into the returned log.
    pub fn recording() -> (Self, StepLog) {
        let log = StepLog::default();
        let l = log.clone();
        let hooks = Self {
            on_step: Some(Box::new(move |_, t| {
                l.lock().unwrap_or_else(|e| e.into_inner()).push(t.clone())
            })),
            ..Self::default()
        };
        (hooks, log)
    }
}

/// Runs a config against a model.
pub struct Trainer<'a> {
    pub cfg: &'a TrainConfig,
    pub device: Device,
}

fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Before the first step, on the CPU: does one step at `data.batch_size` of
/// `data.crop`² fit in the memory available? If not, one error naming a
/// batch size (or, when even 1 does not fit, a crop) that does, instead of
/// the kernel's OOM killer ending the run with no message minutes later.
/// `NST_SKIP_MEMORY_CHECK=1` turns it off.
fn check_step_memory(cfg: &TrainConfig, model: &dyn TrainModel) -> Result<()> {
    let Some(bpp) = model.step_bytes_per_pixel() else {
        return Ok(());
    };
    if std::env::var(nst_core::memory::SKIP_ENV).is_ok_and(|v| v == "1") {
        return Ok(());
    }
    let fp = nst_core::Footprint::new("one training step", bpp);
    let crop = cfg.data.crop as i64;
    let batch = cfg.data.batch_size;
    let avail = nst_core::memory::available_cpu_bytes();
    let gb = |b: u64| b as f64 / 1e9;
    match fp.fit_batch(crop, crop, batch, avail, "data.crop") {
        Ok(fits) if fits >= batch => Ok(()),
        Ok(fits) => Err(Error::Config(format!(
            "data.batch_size = {batch}: one {} training step on {crop}² crops needs about {:.1} GB of memory, but {:.1} GB is available; data.batch_size = {fits} fits (or set {}=1 to try anyway)",
            model.kind(),
            gb(fp.bytes(crop, crop, batch)),
            gb(avail.unwrap_or(0)),
            nst_core::memory::SKIP_ENV
        ))),
        Err(nst_core::Error::OutOfMemory { max_long_side, need_gb, available_gb, .. }) => {
            Err(Error::Config(format!(
                "data.crop = {crop}: one {} training step needs about {need_gb:.1} GB of memory even at data.batch_size = 1, but {available_gb:.1} GB is available; a data.crop of about {} fits (or set {}=1 to try anyway)",
                model.kind(),
                max_long_side / 16 * 16,
                nst_core::memory::SKIP_ENV
            )))
        }
        Err(e) => Err(Error::Config(e.to_string())),
    }
}

impl<'a> Trainer<'a> {
    pub fn new(cfg: &'a TrainConfig, device: Device) -> Self {
        Self { cfg, device }
    }

    fn lr_at(&self, step: u64) -> f64 {
        self.cfg.optim.lr / (1.0 + self.cfg.optim.lr_decay * step as f64)
    }

    /// [`Trainer::run`] from scratch, quietly and with no logger; returns
    /// every step's logged terms (`"total"` and the model's named terms).
    pub fn run_recorded(&self, model: &mut dyn TrainModel) -> Result<Vec<BTreeMap<String, f64>>> {
        let (hooks, log) = TrainerHooks::recording();
        self.run(model, None, &mut crate::NullLogger, hooks)?;
        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
        Ok(std::mem::take(&mut *log))
    }

    /// Builds a fresh `M` from a training config's text, seeds LibTorch with
    /// `seed`, and trains it as [`Trainer::run_recorded`] does. Returns the
    /// trained model and every step's logged terms (overfit tests).
    pub fn train_recorded<M: nst_model::Model + TrainModel>(
        text: &str,
        seed: i64,
        device: Device,
    ) -> Result<(M, Vec<BTreeMap<String, f64>>)> {
        let cfg = TrainConfig::parse(text, &[], "recorded")?;
        tch::manual_seed(seed);
        let mut model = M::from_config(&cfg.model, &cfg.loss, device)?;
        let log = Trainer::new(&cfg, device).run_recorded(&mut model)?;
        Ok((model, log))
    }

    /// Trains from scratch, or from `resume` (a run folder, sidecar or weights file).
    pub fn run(
        &self,
        model: &mut dyn TrainModel,
        resume: Option<&Path>,
        logger: &mut dyn Logger,
        mut hooks: TrainerHooks,
    ) -> Result<TrainOutcome> {
        let cfg = self.cfg;
        let run_dir = cfg.run_dir();
        std::fs::create_dir_all(&run_dir).map_err(|e| nst_model::Error::Checkpoint {
            path: run_dir.display().to_string(),
            reason: e.to_string(),
        })?;
        // A run killed mid-write (kill -9, power loss) leaves temporary files.
        Checkpoint::remove_stale_temps(&run_dir);
        nst_core::fsutil::write_bytes_atomic(
            &run_dir.join("config.toml"),
            cfg.resolved.as_bytes(),
        )?;
        if model.kind() != cfg.model_kind {
            return Err(Error::Config(format!(
                "model.kind is {:?} but the model is {:?}",
                cfg.model_kind,
                model.kind()
            )));
        }
        if self.device == Device::Cpu {
            check_step_memory(cfg, model)?;
        }
        let mut adam = Adam::new(AdamConfig {
            beta1: cfg.optim.beta1,
            beta2: cfg.optim.beta2,
            weight_decay: cfg.optim.weight_decay,
            ..Default::default()
        })
        .with_lr_scale(&cfg.optim.lr_scale);
        // A prefix that names no trained variable is a typo: say so.
        for k in cfg.optim.lr_scale.keys() {
            if !model
                .var_store()
                .variables()
                .keys()
                .any(|n| n.starts_with(k.as_str()))
            {
                return Err(Error::Config(format!(
                    "optim.lr_scale.{k}: no trained parameter's name starts with {k:?}"
                )));
            }
        }
        let (mut step, mut content_pos, mut style_pos) =
            (0u64, Position::default(), Position::default());
        let mut last_ckpt: Option<PathBuf> = None;
        if let Some(path) = resume {
            let (side, meta) = Checkpoint::resolve(path)?;
            if meta.model_kind != model.kind() {
                return Err(nst_model::Error::Checkpoint {
                    path: side.display().to_string(),
                    reason: format!(
                        "is a {:?} checkpoint, but the config trains {:?}",
                        meta.model_kind,
                        model.kind()
                    ),
                }
                .into());
            }
            let dir = side.parent().unwrap_or(Path::new("."));
            Checkpoint::load_weights(
                &dir.join(&meta.weights_file),
                model.var_store(),
                model.kind(),
            )?;
            // A shipped checkpoint (scripts/ship_decoders.py) has weights
            // only: warm start, with Adam's moments from zero and the step
            // (so the learning-rate schedule) where the weights left off.
            if meta.optimizer_file.is_empty() {
                if !hooks.quiet {
                    eprintln!(
                        "note: {} has no optimizer state (a shipped checkpoint): Adam starts afresh from its weights",
                        side.display()
                    );
                }
            } else {
                let (opt, _) =
                    crate::checkpoint::read_safetensors(&dir.join(&meta.optimizer_file))?;
                adam.load_state(meta.optimizer_step, opt, self.device);
            }
            step = meta.step;
            content_pos = meta.content_position;
            style_pos = meta.style_position;
            last_ckpt = Some(side);
        }
        let pipeline = cfg.data.pipeline();
        let seed = cfg.train.seed;
        let mut content = match &cfg.data.content {
            Some(src) => Some(Loader::new(
                src.open()?,
                pipeline.clone(),
                mix(seed, 1),
                content_pos,
            )?),
            None if model.uses_content() => {
                return Err(Error::Config(format!(
                    "data.content is missing: model.kind {:?} trains on a content stream",
                    model.kind()
                )))
            }
            None => None,
        };
        let mut style = Loader::new(cfg.data.style.open()?, pipeline, mix(seed, 2), style_pos)?;

        let total = cfg.train.steps;
        let pb = if hooks.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total)
        };
        if let Ok(st) = ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar:.cyan/blue} {pos}/{len} {msg} (ETA {eta})",
        ) {
            pb.set_style(st.progress_chars("=> "));
        }
        pb.set_prefix(cfg.train.run.clone());
        pb.set_position(step);
        pb.enable_steady_tick(Duration::from_millis(500));

        let mut last_terms: BTreeMap<String, f64> = BTreeMap::new();
        let save = |step: u64,
                    adam: &Adam,
                    cpos: Position,
                    spos: Position,
                    terms: &BTreeMap<String, f64>,
                    model: &dyn TrainModel| {
            let (weights_file, optimizer_file) = Checkpoint::meta_for(step);
            let meta = CheckpointMeta {
                format: FORMAT.into(),
                model_kind: model.kind().to_string(),
                step,
                seed,
                content_position: cpos,
                style_position: spos,
                config: cfg.resolved.clone(),
                optimizer: "adam".into(),
                optimizer_step: adam.t,
                lr: self.lr_at(step),
                losses: terms.clone(),
                weights_file,
                optimizer_file,
            };
            Checkpoint::save(
                &run_dir,
                model.var_store(),
                &adam.state_tensors(),
                &meta,
                cfg.train.keep_last,
            )
        };

        while step < total {
            if hooks.stop.load(Ordering::SeqCst) {
                pb.finish_and_clear();
                let ck = if last_ckpt
                    .as_ref()
                    .is_some_and(|p| p.ends_with(format!("step_{step:07}.json")))
                    || step == 0 && last_ckpt.is_none()
                {
                    last_ckpt.clone()
                } else {
                    Some(save(
                        step,
                        &adam,
                        content_pos,
                        style_pos,
                        &last_terms,
                        &*model,
                    )?)
                };
                logger.flush();
                return Ok(TrainOutcome::Interrupted {
                    step,
                    checkpoint: ck,
                });
            }
            let t0 = Instant::now();
            let cb = content.as_mut().map(|l| l.next_batch()).transpose()?;
            let sb = style.next_batch()?;
            let wait = t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            let next = step + 1;
            tch::manual_seed(mix(seed, next) as i64);
            let s = sb.images.to_device(self.device);
            let c = match &cb {
                Some(cb) => cb.images.to_device(self.device),
                None => s.shallow_clone(),
            };
            model.set_step(next);
            let out = model.step(&c, &s)?;
            let mut terms = BTreeMap::new();
            for (name, t) in &out.terms {
                terms.insert(name.clone(), t.double_value(&[]));
            }
            let total_loss = out.loss.double_value(&[]);
            terms.insert("total".into(), total_loss);
            for (name, v) in &terms {
                if !v.is_finite() {
                    pb.finish_and_clear();
                    logger.flush();
                    return Err(Error::NonFinite {
                        step: next,
                        term: name.clone(),
                        value: *v,
                    });
                }
            }
            Adam::zero_grad(model.var_store());
            out.loss.backward();
            let grad_norm = Adam::clip_grad_norm(model.var_store(), cfg.optim.grad_clip);
            if !grad_norm.is_finite() {
                pb.finish_and_clear();
                logger.flush();
                return Err(Error::NonFiniteGradient {
                    step: next,
                    value: grad_norm,
                });
            }
            let lr = self.lr_at(step);
            adam.step(model.var_store(), lr);
            let compute = t1.elapsed().as_secs_f64();
            step = next;
            if let Some(cb) = &cb {
                content_pos = cb.next;
            }
            style_pos = sb.next;

            if step % cfg.log.scalar_every == 0 || step == 1 {
                for (name, v) in &terms {
                    logger.scalar(&format!("loss/{name}"), *v, step);
                }
                logger.scalar("optim/lr", lr, step);
                logger.scalar("optim/grad_norm", grad_norm, step);
                logger.scalar(
                    "perf/images_per_s",
                    cfg.data.batch_size as f64 / (wait + compute),
                    step,
                );
                logger.scalar("perf/data_wait_s", wait, step);
                logger.scalar("perf/compute_s", compute, step);
                let st = content
                    .as_ref()
                    .map_or_else(|| style.stats(), |c| c.stats());
                logger.scalar(
                    "data/bad_images",
                    st.bad.load(Ordering::Relaxed) as f64,
                    step,
                );
            }
            if step % cfg.log.image_every == 0 || step == total {
                let grid = tch::no_grad(|| model.sample_grid(&c, &s))?;
                logger.image("samples/content_style_output", &grid, step);
                logger.flush();
            }
            pb.set_position(step);
            pb.set_message(format!(
                "loss {total_loss:.4e} | {:.1} img/s | data {:.0}%",
                cfg.data.batch_size as f64 / (wait + compute),
                100.0 * wait / (wait + compute)
            ));
            if let Some(f) = hooks.on_step.as_mut() {
                f(step, &terms);
            }
            last_terms = terms;
            if step % cfg.train.checkpoint_every == 0 || step == total {
                let saved = save(step, &adam, content_pos, style_pos, &last_terms, &*model);
                last_ckpt = Some(saved.map_err(|e| Error::CheckpointWrite {
                    step,
                    kept: match &last_ckpt {
                        Some(p) => format!("the last checkpoint, {}, is intact", p.display()),
                        None => "no checkpoint was written yet".into(),
                    },
                    run_dir: run_dir.display().to_string(),
                    cause: Box::new(Error::from(e)),
                })?);
            }
        }
        pb.finish_and_clear();
        logger.flush();
        let checkpoint = match last_ckpt {
            Some(p) => p,
            None => save(step, &adam, content_pos, style_pos, &last_terms, &*model)?,
        };
        Ok(TrainOutcome::Finished { step, checkpoint })
    }
}
