//! Device selection and seeding.
use crate::{Error, Result};
use tch::Device;

/// Parses `auto` (CUDA when available, else CPU), `cpu`, `cuda` or `cuda:N`.
///
/// Asking for CUDA on a machine without it is an error rather than a silent
/// fallback, so a GPU box that lost its driver does not train for days on CPU.
pub fn parse_device(s: &str) -> Result<Device> {
    let s = s.trim().to_ascii_lowercase();
    let dev = match s.as_str() {
        "auto" => return Ok(Device::cuda_if_available()),
        "cpu" => Device::Cpu,
        "cuda" | "gpu" => Device::Cuda(0),
        other => match other.strip_prefix("cuda:") {
            Some(n) => Device::Cuda(
                n.parse()
                    .map_err(|_| Error::BadDevice { given: s.clone() })?,
            ),
            None => return Err(Error::BadDevice { given: s }),
        },
    };
    if let Device::Cuda(i) = dev {
        let count = tch::Cuda::device_count();
        if i as i64 >= count {
            return Err(Error::NoCuda { given: s });
        }
    }
    Ok(dev)
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
}
