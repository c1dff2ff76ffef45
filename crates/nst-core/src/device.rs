//! Device selection and seeding.
use crate::{Error, Result};
use tch::Device;

/// A device as configs and `--device` write it: `auto` (CUDA when available,
/// else CPU), `cpu`, `cuda` (= `cuda:0`; `gpu` also accepted) or `cuda:N`.
/// Parsing checks the syntax only; [`DeviceSpec::resolve`] checks that the
/// device exists.
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
pub enum DeviceSpec {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        Ok(match s.as_str() {
            "auto" => DeviceSpec::Auto,
            "cpu" => DeviceSpec::Cpu,
            "cuda" | "gpu" => DeviceSpec::Cuda(0),
            other => match other.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(n)) => DeviceSpec::Cuda(n),
                _ => return Err(Error::BadDevice { given: s }),
            },
        })
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// The device to run on. Asking for CUDA on a machine without it is an
    /// error rather than a silent fallback, so a GPU box that lost its driver
    /// does not train for days on CPU.
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceSpec::Auto => Ok(Device::cuda_if_available()),
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(i) => {
                if i as i64 >= tch::Cuda::device_count() {
                    return Err(Error::NoCuda {
                        given: self.to_string(),
                    });
                }
                Ok(Device::Cuda(i))
            }
        }
    }
}

/// Parses and resolves a device name ([`DeviceSpec`]).
pub fn parse_device(s: &str) -> Result<Device> {
    s.parse::<DeviceSpec>()?.resolve()
}

/// Seeds LibTorch's CPU and CUDA generators.
pub fn seed_everything(seed: u64) {
    tch::manual_seed(seed as i64);
    if tch::Cuda::is_available() {
        tch::Cuda::manual_seed_all(seed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert_eq!(parse_device(" CPU ").unwrap(), Device::Cpu);
        assert!(matches!(parse_device("tpu"), Err(Error::BadDevice { .. })));
        assert!(matches!(
            parse_device("cuda:x"),
            Err(Error::BadDevice { .. })
        ));
        if !tch::Cuda::is_available() {
            assert!(matches!(parse_device("cuda:0"), Err(Error::NoCuda { .. })));
            assert_eq!(parse_device("auto").unwrap(), Device::Cpu);
        }
    }

    #[test]
    fn device_spec_round_trips_through_serde() {
        #[derive(serde::Deserialize, serde::Serialize)]
        struct T {
            d: DeviceSpec,
        }
        for (text, spec) in [
            ("auto", DeviceSpec::Auto),
            ("cpu", DeviceSpec::Cpu),
            ("cuda:1", DeviceSpec::Cuda(1)),
        ] {
            let t: T = toml::from_str(&format!("d = \"{text}\"")).unwrap();
            assert_eq!(t.d, spec);
            assert_eq!(
                toml::to_string(&t).unwrap().trim(),
                format!("d = \"{text}\"")
            );
        }
        assert_eq!("GPU".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        let e = toml::from_str::<T>("d = \"tpu\"")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("tpu"), "{e}");
    }
}
