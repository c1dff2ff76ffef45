//! Compute precision of the heavy operations.
//!
//! Only convolutions and large matmuls change precision; every reduction,
//! statistic (Gram, covariance, moments, AdaIN mean and std), loss and
//! optimizer state stays in fp32. The convention everywhere in nst: a module
//! that runs a heavy op at [`Precision::kind`] casts its inputs down, runs the
//! op, and hands an fp32 tensor back ([`Precision::mm`], [`Precision::conv2d`]).
//!
//! * `fp32`: the default; bit-for-bit the plain computation.
//! * `bf16`: bfloat16 on CPU (oneDNN uses AMX/AVX512-BF16 where the CPU has
//!   them) and on CUDA.
//! * `fp16`: half precision, CUDA only; asking for it on the CPU is an error.
use crate::{Error, Result};
use tch::{nn::Module, Device, Kind, Tensor};

/// The precision of the heavy convolutions and matmuls.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Hash,
    serde_with::DeserializeFromStr,
    serde_with::SerializeDisplay,
)]
pub enum Precision {
    #[default]
    Fp32,
    Bf16,
    Fp16,
}

impl Precision {
    /// The tensor kind the heavy ops run in.
    pub fn kind(self) -> Kind {
        match self {
            Precision::Fp32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
            Precision::Fp16 => Kind::Half,
        }
    }

    /// The accepted spellings, for help texts and errors.
    pub const NAMES: &'static str = "fp32, bf16, fp16";

    pub fn is_reduced(self) -> bool {
        self != Precision::Fp32
    }

    /// Checks that `device` can run this precision: fp16 needs CUDA.
    pub fn check(self, device: Device) -> Result<Self> {
        if self == Precision::Fp16 && device == Device::Cpu {
            return Err(Error::BadPrecision {
                given: "fp16".into(),
                reason: "fp16 is for CUDA only; on the CPU use --precision bf16 \
                         (AMX/AVX512-BF16) or fp32"
                    .into(),
            });
        }
        Ok(self)
    }

    /// `x` in the compute kind (a shallow copy when it already is).
    pub fn cast(self, x: &Tensor) -> Tensor {
        if x.kind() == self.kind() {
            x.shallow_clone()
        } else {
            x.to_kind(self.kind())
        }
    }

    /// `a · b` computed in this precision, returned in fp32. Gradients flow
    /// through the casts.
    pub fn mm(self, a: &Tensor, b: &Tensor) -> Tensor {
        match self {
            Precision::Fp32 => a.matmul(b),
            _ => self.cast(a).matmul(&self.cast(b)).to_kind(Kind::Float),
        }
    }

    /// `conv.forward(x)` run in this precision, for a convolution with stride 1,
    /// no groups and `padding` zero-padding (the caller states it: tch keeps a
    /// conv's config private). The input, the weight and the bias are cast, and
    /// the result stays in the compute kind, so a chain of convolutions casts
    /// once. The fp32 weights stay the trained parameters: gradients reach
    /// them through the casts.
    pub fn conv2d(self, conv: &tch::nn::Conv2D, x: &Tensor, padding: i64) -> Tensor {
        if self == Precision::Fp32 {
            return conv.forward(x);
        }
        let bias = conv.bs.as_ref().map(|b| self.cast(b));
        channels_last(&self.cast(x)).conv2d(
            &self.cast(&conv.ws),
            bias.as_ref(),
            [1, 1],
            [padding, padding],
            [1, 1],
            1,
        )
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        })
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "f32" | "float32" => Ok(Precision::Fp32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "fp16" | "f16" | "half" | "float16" => Ok(Precision::Fp16),
            _ => Err(Error::BadPrecision {
                given: s.to_string(),
                reason: format!("expected one of {}", Precision::NAMES),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        assert_eq!("BF16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert_eq!("fp32".parse::<Precision>().unwrap(), Precision::Fp32);
        let e = "int8".parse::<Precision>().unwrap_err().to_string();
        assert!(e.contains("int8") && e.contains("bf16"), "{e}");
        let e = Precision::Fp16.check(Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("CUDA only"), "{e}");
        assert!(Precision::Bf16.check(Device::Cpu).is_ok());
    }

    #[test]
    fn bf16_matmul_is_close_and_returns_fp32() {
        tch::manual_seed(0);
        let a = Tensor::randn([64, 300], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([300, 50], (Kind::Float, Device::Cpu));
        let exact = a.matmul(&b);
        let y = Precision::Bf16.mm(&a, &b);
        assert_eq!(y.kind(), Kind::Float);
        // bf16 inputs carry 8 significant bits: relative error ~2^-8 per product,
        // averaging out over the 300-term sums.
        let rel = (&y - &exact).norm().double_value(&[]) / exact.norm().double_value(&[]);
        assert!(rel > 0.0 && rel < 1e-2, "relative error {rel}");
        assert!(Precision::Fp32.mm(&a, &b).equal(&exact));
    }

    #[test]
    fn bf16_conv_is_close_and_keeps_the_padding() {
        tch::manual_seed(1);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let cfg = tch::nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        let conv = tch::nn::conv2d(vs.root(), 16, 8, 3, cfg);
        let x = Tensor::randn([2, 16, 9, 7], (Kind::Float, Device::Cpu));
        let exact = conv.forward(&x);
        let y = Precision::Bf16.conv2d(&conv, &x, 1);
        assert_eq!(y.kind(), Kind::BFloat16);
        assert_eq!(y.size(), exact.size());
        let y = y.to_kind(Kind::Float);
        let rel = (&y - &exact).norm().double_value(&[]) / exact.norm().double_value(&[]);
        assert!(rel > 0.0 && rel < 1e-2, "relative error {rel}");
        assert!(Precision::Fp32.conv2d(&conv, &x, 1).equal(&exact));
    }
}

/// `x: [B, C, H, W]` in channels-last memory layout (NHWC strides under the
/// same shape; free when it already is). Reduced-precision convolutions run
/// in it: on a CPU with AMX-BF16, oneDNN's bf16 convolutions are about 3×
/// faster in channels-last than in NCHW (a 256-channel 3×3 conv at 256²:
/// 40 ms against 116 ms; VGG19 to relu4_1 at 1024²: 0.72 s against 2.21 s),
/// and ReLU, pooling, reflection padding and nearest upsampling keep the
/// layout, so a network converts once at its input. Anything that needs
/// `[B, C, H·W]` must `reshape`, not `view`, such a map.
pub fn channels_last(x: &Tensor) -> Tensor {
    if x.dim() != 4 {
        return x.shallow_clone();
    }
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}
