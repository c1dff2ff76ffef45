//! Colour operations on RGB tensors in [0, 1].
use tch::{Kind, Tensor};

/// RGB → YIQ (NTSC), rows Y, I, Q.
const RGB_TO_YIQ: [[f64; 3]; 3] = [
    [0.299, 0.587, 0.114],
    [0.595_716, -0.274_453, -0.321_263],
    [0.211_456, -0.522_591, 0.311_135],
];

fn apply(m: &Tensor, x: &Tensor) -> Tensor {
    // [3, 3] × [B, 3, H, W] over the channel axis.
    Tensor::einsum("ij,bjhw->bihw", &[m, x], None::<i64>)
}

fn yiq_matrix(like: &Tensor) -> Tensor {
    let flat: Vec<f64> = RGB_TO_YIQ.iter().flatten().copied().collect();
    Tensor::from_slice(&flat)
        .view([3, 3])
        .to_kind(Kind::Float)
        .to_device(like.device())
}

/// Colour preservation by luminance transfer (Gatys et al., "Preserving Color
/// in Neural Artistic Style Transfer", 2016): the luminance Y of `stylized`
/// with the chrominance I, Q of `content`, in YIQ space. `content` is resized
/// to `stylized`'s size if needed.
///
/// # Shapes
/// `content: [B, 3, H', W']`, `stylized: [B, 3, H, W]` → `[B, 3, H, W]`
pub fn preserve_color(content: &Tensor, stylized: &Tensor) -> Tensor {
    let (_, _, h, w) = stylized.size4().unwrap_or((1, 3, 1, 1));
    let content = crate::resize_to(&content.to_kind(Kind::Float), h, w);
    let m = yiq_matrix(stylized);
    let ys = apply(&m, &stylized.to_kind(Kind::Float));
    let yc = apply(&m, &content);
    let mixed = Tensor::cat(&[ys.narrow(1, 0, 1), yc.narrow(1, 1, 2)], 1);
    apply(&m.inverse(), &mixed).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tch::Device;

    #[test]
    fn keeps_luminance_of_stylized_and_chroma_of_content() {
        tch::manual_seed(0);
        let c = Tensor::rand([1, 3, 8, 8], (Kind::Float, Device::Cpu)) * 0.5 + 0.25;
        let s = Tensor::rand([1, 3, 8, 8], (Kind::Float, Device::Cpu)) * 0.5 + 0.25;
        let out = preserve_color(&c, &s);
        let m = yiq_matrix(&c);
        let (yo, ys, yc) = (apply(&m, &out), apply(&m, &s), apply(&m, &c));
        let err = |a: Tensor, b: Tensor| (a - b).abs().max().double_value(&[]);
        assert!(
            err(yo.narrow(1, 0, 1), ys.narrow(1, 0, 1)) < 1e-4,
            "Y from the stylised image"
        );
        assert!(
            err(yo.narrow(1, 1, 2), yc.narrow(1, 1, 2)) < 1e-4,
            "I, Q from the content"
        );
        // A grey content makes a grey output.
        let grey = Tensor::ones([1, 3, 8, 8], (Kind::Float, Device::Cpu)) * 0.5;
        let g = preserve_color(&grey, &s);
        assert!(err(g.narrow(1, 0, 1), g.narrow(1, 2, 1)) < 1e-4);
    }
}

/// Peak signal-to-noise ratio of `a` against `b` in dB, for signals whose
/// range is `peak` (1 for images in [0, 1]): 10·log10(peak² / MSE),
/// computed in f64; infinite when they are equal.
pub fn psnr(a: &tch::Tensor, b: &tch::Tensor, peak: f64) -> f64 {
    let mse = (a.to_kind(tch::Kind::Double) - b.to_kind(tch::Kind::Double))
        .square()
        .mean(tch::Kind::Double)
        .double_value(&[]);
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (peak * peak / mse).log10()
    }
}
