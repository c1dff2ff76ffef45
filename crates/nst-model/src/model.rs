//! The traits every trained model family implements, and the one loader.
use crate::checkpoint::{Checkpoint, CheckpointMeta};
use crate::config::{parse_section, ModelSections};
use crate::{Error, Result};
use nst_vgg::{Pooling, Vgg, VggOptions};
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Device, Tensor};

/// The sample image of [`TrainModel::sample_grid`]: `columns` (batches
/// `[n, 3, H, W]`) side by side, one row per item: `[3, n·H, k·W]`.
pub fn sample_grid(columns: &[Tensor]) -> Tensor {
    Tensor::cat(&Tensor::cat(columns, 3).unbind(0), 1)
}

/// The items of a batch a sample grid shows: the first four at most.
pub fn sample_items(x: &Tensor) -> Tensor {
    x.narrow(0, 0, x.size()[0].min(4))
}

/// What a model returns from one training step.
pub struct StepOutput {
    /// The scalar to minimise.
    pub loss: Tensor,
    /// Named, already weighted loss terms (logged, and checked for NaN/Inf).
    pub terms: Vec<(String, Tensor)>,
}

/// What the trainer asks of a model besides its steps: its kind and its
/// memory per training pixel. Every [`Model`] has it from its constants;
/// only a model outside that trait (a test's) writes it by hand.
pub trait ModelIdentity {
    /// The `model.kind` this model answers to (stored in its checkpoints).
    fn kind(&self) -> &str;
    /// Peak memory of one training step in bytes per crop pixel per batch
    /// element (its content and style images), measured at the model's
    /// default widths by `scripts/measure_train_memory.sh`. `None`: no
    /// check before training.
    fn step_bytes_per_pixel(&self) -> Option<u64> {
        None
    }
}

impl<M: Model> ModelIdentity for M {
    fn kind(&self) -> &str {
        M::KIND
    }
    fn step_bytes_per_pixel(&self) -> Option<u64> {
        M::STEP_BYTES_PER_PIXEL
    }
}

/// What every trainable model family implements.
pub trait TrainModel: ModelIdentity {
    /// The trainable parameters (names read like PyTorch state_dict keys).
    fn var_store(&self) -> &VarStore;
    /// Computes the losses of one batch.
    ///
    /// # Shapes
    /// `content: [B, 3, S, S]`, `style: [B, 3, S, S]`, RGB in [0, 1], on the model's device.
    fn step(&mut self, content: &Tensor, style: &Tensor) -> Result<StepOutput>;
    /// Whether [`TrainModel::step`] reads the content batch. Models that do not
    /// (texture synthesis) train without a `data.content` source; they are
    /// then handed the style batch in its place.
    fn uses_content(&self) -> bool {
        true
    }
    /// Told the (1-based) number of the step about to run, before [`TrainModel::step`],
    /// for schedules such as KL annealing. The default ignores it.
    fn set_step(&mut self, _step: u64) {}
    /// An image grid `[3, H, W]` in [0, 1] (e.g. content | style | output rows) for the logs.
    fn sample_grid(&self, content: &Tensor, style: &Tensor) -> Result<Tensor>;
    /// Runs the model's frozen loss network (VGG) at `precision`; the trained
    /// weights and everything statistical stay fp32. The default accepts only fp32.
    fn set_precision(&mut self, precision: nst_core::Precision) -> Result<()> {
        if precision.is_reduced() {
            return Err(Error::Config(format!(
                "train.precision: {} does not support {precision}",
                self.kind()
            )));
        }
        Ok(())
    }
}

/// A trained model family: its checkpoint kind, its typed `[model]` and
/// `[loss]` sections, and how it is built from them. The trainer builds one
/// from a config with [`Model::from_config`]; inference rebuilds one from a
/// checkpoint with [`load`].
pub trait Model: TrainModel + Sized {
    /// `model.kind` in configs and checkpoints.
    const KIND: &'static str;
    /// A config that trains one, named when a checkpoint of another kind is given.
    const TRAIN_CONFIG: &'static str;
    /// Peak memory of one training step per crop pixel per batch element
    /// ([`ModelIdentity::step_bytes_per_pixel`]), measured by
    /// `scripts/measure_train_memory.sh 64 128 2` at the default widths.
    const STEP_BYTES_PER_PIXEL: Option<u64>;
    /// `[model]` without its `kind` (unknown keys refused).
    type Config: serde::de::DeserializeOwned;
    /// `[loss]` (unknown keys refused).
    type Loss: serde::de::DeserializeOwned;

    /// The VGG19 weights file (`None`: the default, `checkpoints/vgg19.safetensors`)
    /// and the pooling this config asks for.
    fn vgg_options(config: &Self::Config) -> (Option<PathBuf>, Pooling);

    /// Builds an untrained model around a loaded VGG; checks the config.
    fn build(vgg: Vgg, config: Self::Config, loss: Self::Loss) -> Result<Self>;

    /// Builds from the `[model]` and `[loss]` tables of a training config.
    fn from_config(model: &toml::Table, loss: &toml::Table, device: Device) -> Result<Self> {
        let m: Self::Config = parse_section(model, "model", &["kind"])?;
        let l: Self::Loss = parse_section(loss, "loss", &[])?;
        let (weights, pooling) = Self::vgg_options(&m);
        let vgg = Vgg::load_or_default(weights.as_deref(), VggOptions { pooling, device })?;
        Self::build(vgg, m, l)
    }

    /// [`load`], keeping only the model.
    fn from_checkpoint(
        path: &Path,
        device: Device,
        precision: nst_core::Precision,
    ) -> Result<Self> {
        Ok(load::<Self>(path, device, precision)?.model)
    }
}

/// A model loaded from a checkpoint, with where it came from.
pub struct Loaded<M> {
    pub model: M,
    /// The checkpoint's sidecar (`step_XXXXXXX.json`).
    pub sidecar: PathBuf,
    pub meta: CheckpointMeta,
}

/// The one checkpoint loader. `path` is a run folder (its `latest`
/// checkpoint), a sidecar `.json` or a weights file. A checkpoint of another
/// kind is refused in one line naming both kinds and the config that trains
/// the wanted one; the architecture comes from the config saved with it, the
/// weights are loaded strictly (missing, unexpected and mis-shaped tensors
/// listed), and the loss network runs at `precision`.
pub fn load<M: Model>(
    path: &Path,
    device: Device,
    precision: nst_core::Precision,
) -> Result<Loaded<M>> {
    let (sidecar, meta) = Checkpoint::resolve(path)?;
    if meta.model_kind != M::KIND {
        return Err(Error::Checkpoint {
            path: sidecar.display().to_string(),
            reason: format!(
                "is a {:?} checkpoint; this needs a {:?} one (train one with nst-train --config {})",
                meta.model_kind,
                M::KIND,
                M::TRAIN_CONFIG
            ),
        });
    }
    let sections = ModelSections::parse(&meta.config, &sidecar.display().to_string())?;
    let mut model = M::from_config(&sections.model, &sections.loss, device)?;
    model.set_precision(precision)?;
    Checkpoint::load_weights(
        &sidecar.with_file_name(&meta.weights_file),
        model.var_store(),
        M::KIND,
    )?;
    Ok(Loaded {
        model,
        sidecar,
        meta,
    })
}
