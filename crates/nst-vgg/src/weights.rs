//! Reading VGG weights files and their preprocessing metadata.
use crate::{Arch, Error, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// What to tell a user whose weights are missing.
pub const SETUP_HINT: &str =
    "Run `scripts/setup.sh` from the repository root to download and convert them, or pass --weights PATH.";

/// Where the binaries look for VGG19 weights when none are given:
/// `$NST_VGG_WEIGHTS`, else `checkpoints/vgg19.safetensors` under the current
/// folder, else under the repository this binary was built from.
pub fn default_weights_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("NST_VGG_WEIGHTS") {
        return Ok(PathBuf::from(p));
    }
    let local = PathBuf::from("checkpoints/vgg19.safetensors");
    if local.exists() {
        return Ok(local);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../checkpoints/vgg19.safetensors");
    if repo.exists() {
        return Ok(repo.canonicalize().unwrap_or(repo));
    }
    Err(Error::WeightsMissing { path: local })
}

/// Channel order the network expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

/// The input transform a set of weights was trained with, applied to RGB in [0, 1]:
/// reorder channels, multiply by `scale`, subtract `mean`, divide by `std`
/// (mean and std given in the network's channel order).
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessing {
    pub name: String,
    pub channel_order: ChannelOrder,
    pub scale: f64,
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

impl Preprocessing {
    /// How many feature units one unit of [0, 1] input becomes at the network's
    /// input: `scale / mean(std)` (255 for Caffe weights, about 4.4 for
    /// torchvision's). Dividing features by it makes loss weights independent
    /// of the weights' preprocessing.
    pub fn input_gain(&self) -> f64 {
        self.scale / (self.std.iter().sum::<f64>() / 3.0)
    }

    /// Keras/Caffe ImageNet: BGR, 0..255, minus [103.939, 116.779, 123.68].
    pub fn caffe() -> Self {
        Self {
            name: "caffe".into(),
            channel_order: ChannelOrder::Bgr,
            scale: 255.0,
            mean: [103.939, 116.779, 123.68],
            std: [1.0; 3],
        }
    }

    /// torchvision ImageNet: RGB, 0..1, mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225].
    pub fn torchvision() -> Self {
        Self {
            name: "torchvision".into(),
            channel_order: ChannelOrder::Rgb,
            scale: 1.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }

    /// The mean and std as `[1, 3, 1, 1]` tensors of `like`'s kind and device.
    fn mean_std(&self, like: &Tensor) -> (Tensor, Tensor) {
        let t = |v: &[f64]| {
            Tensor::from_slice(v)
                .to_kind(like.kind())
                .to_device(like.device())
        };
        (
            t(&self.mean).view([1, 3, 1, 1]),
            t(&self.std).view([1, 3, 1, 1]),
        )
    }

    /// Applies the transform to an RGB batch `[B, 3, H, W]` in [0, 1].
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let x = match self.channel_order {
            ChannelOrder::Rgb => x.shallow_clone(),
            ChannelOrder::Bgr => x.flip([1]),
        };
        let (mean, std) = self.mean_std(&x);
        (x * self.scale - mean) / std
    }

    /// Inverse of [`Preprocessing::apply`].
    pub fn unapply(&self, y: &Tensor) -> Tensor {
        let (mean, std) = self.mean_std(y);
        let x = (y * std + mean) / self.scale;
        match self.channel_order {
            ChannelOrder::Rgb => x,
            ChannelOrder::Bgr => x.flip([1]),
        }
    }

    fn from_metadata(meta: &HashMap<String, String>, path: &str) -> Result<Self> {
        let bad = |reason: String| Error::BadWeights {
            path: path.to_string(),
            reason,
        };
        let get = |k: &str| {
            meta.get(k).ok_or_else(|| {
                bad(format!(
                    "metadata has no {k:?} (preprocessing is never guessed)"
                ))
            })
        };
        let triple = |k: &str| -> Result<[f64; 3]> {
            let v: Vec<f64> =
                serde_json::from_str(get(k)?).map_err(|e| bad(format!("metadata {k:?}: {e}")))?;
            v.try_into()
                .map_err(|_| bad(format!("metadata {k:?} must hold 3 numbers")))
        };
        let channel_order = match get("channel_order")?.as_str() {
            "RGB" => ChannelOrder::Rgb,
            "BGR" => ChannelOrder::Bgr,
            o => return Err(bad(format!("unknown channel_order {o:?}"))),
        };
        let scale: f64 = get("input_scale")?
            .parse()
            .map_err(|_| bad("input_scale is not a number".into()))?;
        Ok(Self {
            name: get("preprocessing")?.clone(),
            channel_order,
            scale,
            mean: triple("mean")?,
            std: triple("std")?,
        })
    }
}

/// A parsed weights file: tensors, architecture and preprocessing.
pub struct WeightsFile {
    pub path: String,
    pub arch: Arch,
    pub preprocessing: Preprocessing,
    pub metadata: HashMap<String, String>,
    pub tensors: HashMap<String, Tensor>,
}

impl WeightsFile {
    pub fn read(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::WeightsMissing {
                path: path.to_path_buf(),
            });
        }
        let shown = path.display().to_string();
        let bad = |reason: String| Error::BadWeights {
            path: shown.clone(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let (_, header) =
            SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("not safetensors: {e}")))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        if metadata.get("format").map(String::as_str) != Some("nst-vgg") {
            return Err(bad(
                "metadata format is not \"nst-vgg\"; convert with scripts/convert_vgg.py".into(),
            ));
        }
        let arch = metadata
            .get("arch")
            .and_then(|a| Arch::parse(a))
            .ok_or_else(|| bad("metadata \"arch\" must be vgg16 or vgg19".into()))?;
        let preprocessing = Preprocessing::from_metadata(&metadata, &shown)?;
        let st =
            SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not safetensors: {e}")))?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let kind = match view.dtype() {
                Dtype::F32 => Kind::Float,
                Dtype::F16 => Kind::Half,
                Dtype::BF16 => Kind::BFloat16,
                Dtype::F64 => Kind::Double,
                d => return Err(bad(format!("tensor {name} has unsupported dtype {d:?}"))),
            };
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            tensors.insert(name, Tensor::f_from_data_size(view.data(), &shape, kind)?);
        }
        Ok(Self {
            path: shown,
            arch,
            preprocessing,
            metadata,
            tensors,
        })
    }
}
