//! Named taps into VGG: `conv4_2`, `relu4_2`, `pool4`.
use crate::{Arch, Error};
use std::fmt;

/// What a tap reads: a convolution's output, the ReLU after it, or a pooling layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LayerKind {
    Conv,
    Relu,
    Pool,
}

/// A named point in the network, e.g. `relu4_1` (block 4, layer 1, after the ReLU).
///
/// Pooling layers are `pool1 … pool5` and have `index == 0`. In configs a
/// tap is its name (`"relu4_1"`); parsing accepts VGG19's names, and a model
/// built on VGG16 checks its taps against that network.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde_with::DeserializeFromStr,
    serde_with::SerializeDisplay,
)]
pub struct Tap {
    pub kind: LayerKind,
    pub block: u8,
    pub index: u8,
}

impl Tap {
    pub const fn conv(block: u8, index: u8) -> Self {
        Self {
            kind: LayerKind::Conv,
            block,
            index,
        }
    }
    pub const fn relu(block: u8, index: u8) -> Self {
        Self {
            kind: LayerKind::Relu,
            block,
            index,
        }
    }
    pub const fn pool(block: u8) -> Self {
        Self {
            kind: LayerKind::Pool,
            block,
            index: 0,
        }
    }

    /// Parses a list such as `relu1_1,relu2_1, relu3_1` and checks every name against `arch`.
    pub fn parse_list(s: &str, arch: Arch) -> Result<Vec<Tap>, Error> {
        s.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| Tap::parse_for(t, arch))
            .collect()
    }

    /// Parses one name and checks it exists in `arch`.
    pub fn parse_for(s: &str, arch: Arch) -> Result<Tap, Error> {
        s.parse::<Tap>()?.check_for(arch)
    }

    /// This tap, if it exists in `arch` (VGG16 lacks `relu3_4`, …).
    pub fn check_for(self, arch: Arch) -> Result<Tap, Error> {
        if arch.position(self).is_none() {
            return Err(Error::UnknownTap {
                name: self.to_string(),
                arch,
                valid: arch.tap_names().join(", "),
            });
        }
        Ok(self)
    }
}

impl fmt::Display for Tap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            LayerKind::Conv => write!(f, "conv{}_{}", self.block, self.index),
            LayerKind::Relu => write!(f, "relu{}_{}", self.block, self.index),
            LayerKind::Pool => write!(f, "pool{}", self.block),
        }
    }
}

impl std::str::FromStr for Tap {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let unknown = || Error::UnknownTap {
            name: s.to_string(),
            arch: Arch::Vgg19,
            valid: Arch::Vgg19.tap_names().join(", "),
        };
        let t = s.trim().to_ascii_lowercase();
        let num = |v: &str| v.parse::<u8>().ok().filter(|n| (1..=5).contains(n));
        let tap = if let Some(rest) = t.strip_prefix("pool") {
            Tap::pool(num(rest).ok_or_else(unknown)?)
        } else {
            let (kind, rest) = if let Some(r) = t.strip_prefix("conv") {
                (LayerKind::Conv, r)
            } else if let Some(r) = t.strip_prefix("relu") {
                (LayerKind::Relu, r)
            } else {
                return Err(unknown());
            };
            let (b, i) = rest.split_once('_').ok_or_else(unknown)?;
            Tap {
                kind,
                block: num(b).ok_or_else(unknown)?,
                index: num(i).ok_or_else(unknown)?,
            }
        };
        if Arch::Vgg19.position(tap).is_none() {
            return Err(unknown());
        }
        Ok(tap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for name in ["conv1_1", "relu4_2", "pool3", "relu5_4"] {
            assert_eq!(name.parse::<Tap>().unwrap().to_string(), name);
        }
        assert_eq!("RELU4_1".parse::<Tap>().unwrap(), Tap::relu(4, 1));
        for bad in ["relu6_1", "relu4", "conv1_3", "pool0", "fc7", "relu4_x", ""] {
            assert!(bad.parse::<Tap>().is_err(), "{bad} should not parse");
        }
        assert!(Tap::parse_for("relu5_4", Arch::Vgg16).is_err());
        assert!(Tap::parse_for("relu5_3", Arch::Vgg16).is_ok());
        let e = Tap::parse_list("relu1_1, relu9_9", Arch::Vgg19)
            .unwrap_err()
            .to_string();
        assert!(e.contains("relu9_9") && e.contains("relu5_4"), "{e}");
    }
}
