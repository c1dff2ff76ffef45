//! The VGG loss network.
//!
//! VGG19 and VGG16 with named taps ([`Tap`]: `conv1_1`, `relu4_2`, `pool3`, …),
//! frozen weights loaded strictly from safetensors, and the input preprocessing
//! read from the weights file's metadata (Caffe BGR×255 − mean for Keras's
//! ImageNet weights, RGB mean/std for torchvision's).
//!
//! ```no_run
//! use nst_vgg::{Tap, Vgg, VggOptions};
//! let vgg = Vgg::load(nst_vgg::default_weights_path()?, VggOptions::default())?;
//! let x = tch::Tensor::rand([1, 3, 256, 256], (tch::Kind::Float, vgg.device()));
//! let feats = vgg.encode(&x, &[Tap::relu(1, 1), Tap::relu(4, 2)])?;
//! # Ok::<(), nst_vgg::Error>(())
//! ```

pub mod mirror;
mod tap;
mod weights;

pub use mirror::{MirrorDecoder, MirrorOptions};
pub use nst_core::Precision;
pub use tap::{LayerKind, Tap};
pub use weights::{default_weights_path, ChannelOrder, Preprocessing, WeightsFile, SETUP_HINT};

use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// Errors of the loss network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("VGG weights not found at {path}. {hint}", hint = SETUP_HINT)]
    WeightsMissing { path: std::path::PathBuf },
    #[error("{path}: not a VGG weights file: {reason}")]
    BadWeights { path: String, reason: String },
    #[error("{path}: weights do not match {arch}:{detail}")]
    Strict {
        path: String,
        arch: Arch,
        detail: String,
    },
    #[error("unknown layer {name:?} for {arch}; valid names: {valid}")]
    UnknownTap {
        name: String,
        arch: Arch,
        valid: String,
    },
    #[error("input must be an RGB batch [B, 3, H, W]; got {shape:?}")]
    BadInput { shape: Vec<i64> },
    #[error("input {shape:?} is too small to reach {tap}: both sides must be at least {need} px")]
    TooSmall {
        shape: Vec<i64>,
        tap: Tap,
        need: i64,
    },
    #[error("{tap} is not deeper than {from}, where the encoding goes on from")]
    NotDeeper { tap: Tap, from: Tap },
    #[error("{0}")]
    Precision(String),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where tiled work hands over from windows to whole maps: `relu3_1`, at
/// stride 4. VGG up to it (conv1_1 … conv3_1 and two 2×2 poolings) sees a
/// 24-px square of the input, so the padding at a window's edge changes
/// features up to 12 px inside it; with [`HANDOVER_HALO`] of context a
/// window's core features are the whole image's, and the maps from here on
/// have 1/16 of the pixels ([`Vgg::encode_from`] continues from them).
pub const HANDOVER: Tap = Tap::relu(3, 1);

/// The context a window needs for exact features up to [`HANDOVER`], in px
/// (its 12-px radius, rounded up to a multiple of 16).
pub const HANDOVER_HALO: i64 = 16;

/// Which VGG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Vgg16,
    Vgg19,
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Arch::Vgg16 => "vgg16",
            Arch::Vgg19 => "vgg19",
        })
    }
}

impl Arch {
    /// Convolutions per block.
    pub fn blocks(self) -> [u8; 5] {
        match self {
            Arch::Vgg16 => [2, 2, 3, 3, 3],
            Arch::Vgg19 => [2, 2, 4, 4, 4],
        }
    }

    /// Every tap in forward order: conv, relu for each layer, then the block's pool.
    pub fn taps(self) -> Vec<Tap> {
        let mut v = Vec::new();
        for (b, &n) in self.blocks().iter().enumerate() {
            let b = b as u8 + 1;
            for i in 1..=n {
                v.push(Tap::conv(b, i));
                v.push(Tap::relu(b, i));
            }
            v.push(Tap::pool(b));
        }
        v
    }

    pub fn tap_names(self) -> Vec<String> {
        self.taps().iter().map(Tap::to_string).collect()
    }

    /// The position of a tap in forward order, if `self` has it.
    pub fn position(self, tap: Tap) -> Option<usize> {
        self.taps().iter().position(|t| *t == tap)
    }

    /// Names of the convolution layers (`conv1_1`, …), the keys of the weights file.
    pub fn conv_names(self) -> Vec<String> {
        self.taps()
            .iter()
            .filter(|t| t.kind == LayerKind::Conv)
            .map(Tap::to_string)
            .collect()
    }

    pub fn parse(s: &str) -> Option<Arch> {
        match s.to_ascii_lowercase().as_str() {
            "vgg16" => Some(Arch::Vgg16),
            "vgg19" => Some(Arch::Vgg19),
            _ => None,
        }
    }

    /// Channel count of a tap's output.
    pub fn channels(self, tap: Tap) -> i64 {
        [64, 128, 256, 512, 512][(tap.block - 1) as usize]
    }

    /// Spatial downsampling factor of a tap's output relative to the input.
    pub fn stride(self, tap: Tap) -> i64 {
        let pools_before = if tap.kind == LayerKind::Pool {
            tap.block
        } else {
            tap.block - 1
        };
        1 << pools_before
    }
}

/// Pooling between blocks. Gatys et al. recommend average pooling for synthesis.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde_with::DeserializeFromStr,
    serde_with::SerializeDisplay,
)]
pub enum Pooling {
    #[default]
    Max,
    Avg,
}

impl std::fmt::Display for Pooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pooling::Max => "max",
            Pooling::Avg => "avg",
        })
    }
}

impl std::str::FromStr for Pooling {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "max" => Ok(Pooling::Max),
            "avg" | "average" => Ok(Pooling::Avg),
            _ => Err(format!("unknown pooling {s:?}: expected max or avg")),
        }
    }
}

/// How to build the network from a weights file.
#[derive(Debug, Clone, Copy)]
pub struct VggOptions {
    pub pooling: Pooling,
    pub device: Device,
}

impl VggOptions {
    /// `pooling` on the CPU (what tests and CPU tools ask for).
    pub fn cpu(pooling: Pooling) -> Self {
        Self {
            pooling,
            device: Device::Cpu,
        }
    }
}

impl Default for VggOptions {
    fn default() -> Self {
        Self {
            pooling: Pooling::Max,
            device: Device::cuda_if_available(),
        }
    }
}

struct Conv {
    weight: Tensor,
    bias: Tensor,
}

/// How [`Vgg::encode_with`] runs the network and hands out its maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncodeOptions {
    /// Run the network in channels-last memory layout (NHWC strides; the
    /// maps keep their `[B, C, H, W]` shape). A map's channels at one pixel
    /// are then contiguous, so gathering features at sampled pixels (STROTSS's
    /// hypercolumns) reads a few cache lines per pixel instead of one per
    /// channel, and oneDNN's CPU convolutions, ReLUs and poolings are faster
    /// in it. The maps are not `view`-able as `[B, C, H·W]`: reshape them.
    pub channels_last: bool,
    /// Hand out the maps in the compute precision (see
    /// [`Vgg::with_precision`]) instead of casting each to fp32, for callers
    /// that read a small part of each map and cast only that.
    pub keep_precision: bool,
}

/// A frozen VGG feature extractor with named taps.
pub struct Vgg {
    arch: Arch,
    pooling: Pooling,
    preprocessing: Preprocessing,
    convs: Vec<Conv>,
    device: Device,
    precision: nst_core::Precision,
    circular: bool,
}

impl std::fmt::Debug for Vgg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vgg")
            .field("arch", &self.arch)
            .field("pooling", &self.pooling)
            .field("preprocessing", &self.preprocessing)
            .field("device", &self.device)
            .field("precision", &self.precision)
            .finish()
    }
}

/// The feature maps [`Vgg::encode`] returns, one per requested tap.
#[derive(Debug)]
pub struct Features {
    maps: Vec<(Tap, Tensor)>,
}

impl Features {
    pub fn get(&self, tap: Tap) -> Option<&Tensor> {
        self.maps.iter().find(|(t, _)| *t == tap).map(|(_, x)| x)
    }
    pub fn iter(&self) -> impl Iterator<Item = (Tap, &Tensor)> {
        self.maps.iter().map(|(t, x)| (*t, x))
    }
    /// The maps in the order of the taps requested.
    pub fn into_maps(self) -> Vec<Tensor> {
        self.maps.into_iter().map(|(_, x)| x).collect()
    }
    pub fn len(&self) -> usize {
        self.maps.len()
    }
    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }
}

impl std::ops::Index<Tap> for Features {
    type Output = Tensor;
    /// Panics if `tap` was not requested from [`Vgg::encode`].
    fn index(&self, tap: Tap) -> &Tensor {
        match self.get(tap) {
            Some(x) => x,
            None => panic!("tap {tap} was not requested from Vgg::encode"),
        }
    }
}

impl Vgg {
    /// Loads weights from a safetensors file written by `scripts/convert_vgg.py`.
    ///
    /// The architecture and the preprocessing come from the file's metadata.
    /// Loading is strict: missing tensors, unexpected tensors and shape
    /// mismatches are one error that lists them.
    pub fn load(path: impl AsRef<std::path::Path>, opts: VggOptions) -> Result<Self> {
        let file = WeightsFile::read(path.as_ref())?;
        Self::from_tensors(
            file.arch,
            file.tensors,
            file.preprocessing,
            opts,
            &file.path,
        )
    }

    /// [`Vgg::load`] from `path`, or from [`default_weights_path`] when it is `None`
    /// (a model config's optional `vgg_weights`).
    pub fn load_or_default(path: Option<&std::path::Path>, opts: VggOptions) -> Result<Self> {
        match path {
            Some(p) => Self::load(p, opts),
            None => Self::load(default_weights_path()?, opts),
        }
    }

    /// Builds the network from named tensors (`conv1_1.weight`, `conv1_1.bias`, …).
    pub fn from_tensors(
        arch: Arch,
        mut tensors: HashMap<String, Tensor>,
        preprocessing: Preprocessing,
        opts: VggOptions,
        origin: &str,
    ) -> Result<Self> {
        let mut missing = Vec::new();
        let mut mismatched = Vec::new();
        let mut convs = Vec::new();
        let mut in_ch = 3;
        for name in arch.conv_names() {
            let tap: Tap = name.parse()?;
            let out_ch = arch.channels(tap);
            let w_name = format!("{name}.weight");
            let b_name = format!("{name}.bias");
            let w = tensors.remove(&w_name);
            let b = tensors.remove(&b_name);
            let want_w = vec![out_ch, in_ch, 3, 3];
            let want_b = vec![out_ch];
            for (n, t, want) in [(&w_name, &w, &want_w), (&b_name, &b, &want_b)] {
                match t {
                    None => missing.push(n.clone()),
                    Some(t) if t.size() != *want => {
                        mismatched.push(format!("{n}: file {:?}, expected {:?}", t.size(), want))
                    }
                    Some(_) => {}
                }
            }
            if let (Some(w), Some(b)) = (w, b) {
                convs.push(Conv {
                    weight: w.to_kind(Kind::Float).to_device(opts.device).detach(),
                    bias: b.to_kind(Kind::Float).to_device(opts.device).detach(),
                });
            }
            in_ch = out_ch;
        }
        let unexpected: Vec<String> = tensors.into_keys().collect();
        if let Some(detail) = nst_core::strict_report(missing, unexpected, mismatched) {
            return Err(Error::Strict {
                path: origin.to_string(),
                arch,
                detail,
            });
        }
        Ok(Self {
            arch,
            pooling: opts.pooling,
            preprocessing,
            convs,
            device: opts.device,
            precision: nst_core::Precision::Fp32,
            circular: false,
        })
    }

    /// The network running its convolutions in `precision` (see
    /// [`nst_core::Precision`]): the weights are cast once, each input is cast
    /// down on entry, and every returned feature map is fp32, so Grams,
    /// moments and losses built on it stay in fp32. Errors for fp16 on the CPU.
    pub fn with_precision(mut self, precision: nst_core::Precision) -> Result<Self> {
        self.set_precision(precision)?;
        Ok(self)
    }

    /// In-place form of [`Vgg::with_precision`], for models that own their VGG.
    pub fn set_precision(&mut self, precision: nst_core::Precision) -> Result<()> {
        precision
            .check(self.device)
            .map_err(|e| Error::Precision(e.to_string()))?;
        let kind = precision.kind();
        for c in &mut self.convs {
            c.weight = c.weight.to_kind(kind);
            c.bias = c.bias.to_kind(kind);
        }
        self.precision = precision;
        Ok(())
    }

    pub fn precision(&self) -> nst_core::Precision {
        self.precision
    }

    /// Pads every 3×3 convolution circularly instead of with zeros (the
    /// ImageNet training's padding), so the image is read as a torus: no
    /// border, and features that move with a circular shift of the input
    /// (exactly so for shifts by a multiple of the deepest tap's stride).
    /// Texture generators trained through it cannot tell where the image
    /// ends, and their outputs tile. Off by default.
    pub fn set_circular_padding(&mut self, on: bool) {
        self.circular = on;
    }

    pub fn arch(&self) -> Arch {
        self.arch
    }
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }
    pub fn device(&self) -> Device {
        self.device
    }
    pub fn preprocessing(&self) -> &Preprocessing {
        &self.preprocessing
    }

    /// Parses a comma-separated list of tap names valid for this network.
    pub fn taps(&self, names: &str) -> Result<Vec<Tap>> {
        Tap::parse_list(names, self.arch)
    }

    /// Runs the network on an RGB batch in [0, 1] and returns the requested taps.
    ///
    /// Only runs as deep as the deepest requested tap. Gradients flow to `x`
    /// (the weights are frozen).
    ///
    /// # Shapes
    /// `x: [B, 3, H, W]` → for a tap in block b: `[B, C_b, H/2^(b-1), W/2^(b-1)]`
    /// (`pool_b`: `H/2^b`).
    pub fn encode(&self, x: &Tensor, taps: &[Tap]) -> Result<Features> {
        self.encode_with(x, taps, EncodeOptions::default())
    }

    /// [`Vgg::encode`] with the layout and kind of the maps chosen by `opts`.
    pub fn encode_with(&self, x: &Tensor, taps: &[Tap], opts: EncodeOptions) -> Result<Features> {
        self.run(&self.preprocessing.apply(&self.check_input(x)?), taps, opts)
    }

    /// Goes on from `h`, the fp32 map [`Vgg::encode`] returned at tap `from`
    /// (of any image), to the requested `taps`, all deeper than `from`: the
    /// same result as encoding the image to `taps` in one pass. Tiled runs
    /// encode the shallow layers tile by tile, then the small deep maps whole.
    pub fn encode_from(&self, h: &Tensor, from: Tap, taps: &[Tap]) -> Result<Features> {
        self.encode_from_with(h, from, taps, EncodeOptions::default())
    }

    /// [`Vgg::encode_from`] with the layout and kind of the maps chosen by `opts`.
    pub fn encode_from_with(
        &self,
        h: &Tensor,
        from: Tap,
        taps: &[Tap],
        opts: EncodeOptions,
    ) -> Result<Features> {
        let pos = self.arch.position(from).ok_or_else(|| Error::UnknownTap {
            name: from.to_string(),
            arch: self.arch,
            valid: self.arch.tap_names().join(", "),
        })?;
        if let Some(t) = taps.iter().find(|&&t| self.arch.position(t) <= Some(pos)) {
            return Err(Error::NotDeeper { tap: *t, from });
        }
        self.run_from(h, pos + 1, taps, opts)
    }

    fn run(&self, x: &Tensor, taps: &[Tap], opts: EncodeOptions) -> Result<Features> {
        self.run_from(x, 0, taps, opts)
    }

    /// Runs the layers from position `start` of the architecture's order
    /// (0: the preprocessed image) to the deepest of `taps`.
    fn run_from(
        &self,
        x: &Tensor,
        start: usize,
        taps: &[Tap],
        opts: EncodeOptions,
    ) -> Result<Features> {
        let order = self.arch.taps();
        let mut deepest = 0;
        for &t in taps {
            let pos = self.arch.position(t).ok_or_else(|| Error::UnknownTap {
                name: t.to_string(),
                arch: self.arch,
                valid: self.arch.tap_names().join(", "),
            })?;
            deepest = deepest.max(pos);
        }
        let mut maps: Vec<(Tap, Tensor)> = Vec::with_capacity(taps.len());
        if taps.is_empty() {
            return Ok(Features { maps });
        }
        let need = match start {
            0 => self.arch.stride(order[deepest]),
            _ => self.arch.stride(order[deepest]) / self.arch.stride(order[start - 1]),
        };
        let size = x.size();
        if size.len() != 4 || size[2].min(size[3]) < need {
            return Err(Error::TooSmall {
                shape: size,
                tap: order[deepest],
                need,
            });
        }
        let mut h = self.precision.cast(x);
        // Reduced precision always runs channels-last: see
        // nst_core::precision::channels_last for why.
        if opts.channels_last || self.precision.is_reduced() {
            h = nst_core::precision::channels_last(&h);
        }
        let mut conv_i = order[..start]
            .iter()
            .filter(|t| t.kind == LayerKind::Conv)
            .count();
        for tap in order.iter().take(deepest + 1).skip(start) {
            h = match tap.kind {
                LayerKind::Conv => {
                    let c = &self.convs[conv_i];
                    conv_i += 1;
                    if self.circular {
                        h.pad([1, 1, 1, 1], "circular", None).conv2d(
                            &c.weight,
                            Some(&c.bias),
                            [1, 1],
                            [0, 0],
                            [1, 1],
                            1,
                        )
                    } else {
                        h.conv2d(&c.weight, Some(&c.bias), [1, 1], [1, 1], [1, 1], 1)
                    }
                }
                LayerKind::Relu => h.relu(),
                LayerKind::Pool => match self.pooling {
                    Pooling::Max => h.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false),
                    Pooling::Avg => h.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None),
                },
            };
            if taps.contains(tap) {
                let map = if opts.keep_precision {
                    h.shallow_clone()
                } else {
                    h.to_kind(Kind::Float)
                };
                maps.push((*tap, map));
            }
        }
        // Return in the caller's order (duplicates allowed).
        let maps = taps
            .iter()
            .filter_map(|t| {
                maps.iter()
                    .find(|(m, _)| m == t)
                    .map(|(m, x)| (*m, x.shallow_clone()))
            })
            .collect();
        Ok(Features { maps })
    }

    fn check_input(&self, x: &Tensor) -> Result<Tensor> {
        let size = x.size();
        if size.len() != 4 || size[1] != 3 {
            return Err(Error::BadInput { shape: size });
        }
        Ok(x.shallow_clone())
    }
}

#[cfg(test)]
mod tests;
