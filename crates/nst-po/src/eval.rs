//! The paper's evaluation measures.
//!
//! * **Quality**: L_tex of each output against its target (the training
//!   loss: all layers, their weights, images in [0, 1]); lower is better.
//! * **Diversity**: E_{i≠j} ‖F_div(x_i) − F_div(x_j)‖₁ over the outputs of
//!   one target, with F_div = VGG19 `relu4_1` per unit of [0, 1] input and
//!   ‖·‖₁ the mean absolute difference per element; higher is more diverse.
use crate::texture::{TargetGrams, TextureLoss};
use nst_vgg::Tap;
use tch::{Kind, Tensor};

/// The diversity layer.
pub const DIVERSITY_LAYER: Tap = Tap::relu(4, 1);

/// Mean L_tex of `outputs: [B, 3, H, W]` against one target.
///
/// Both measures run VGG on one output at a time, so that scoring a set of
/// large outputs needs no more memory than making one of them did.
pub fn quality(
    loss: &TextureLoss,
    outputs: &Tensor,
    target: &TargetGrams,
) -> Result<f64, nst_vgg::Error> {
    tch::no_grad(|| {
        let b = outputs.size()[0];
        let mut sum = 0.0;
        for x in outputs.split(1, 0) {
            sum += loss
                .loss_per_sample(&x, target, loss.layers.len())?
                .sum(Kind::Float)
                .double_value(&[]);
        }
        Ok(sum / b as f64)
    })
}

/// E_{i≠j} mean|F_div(x_i) − F_div(x_j)| over `outputs: [B ≥ 2, 3, H, W]`.
pub fn diversity(loss: &TextureLoss, outputs: &Tensor) -> Result<f64, nst_vgg::Error> {
    let b = outputs.size()[0];
    if b < 2 {
        return Ok(f64::NAN);
    }
    tch::no_grad(|| {
        let gain = loss.vgg.preprocessing().input_gain();
        let mut feats = Vec::new();
        for x in outputs.split(1, 0) {
            feats.push(
                loss.vgg.encode(&x, &[DIVERSITY_LAYER])?[DIVERSITY_LAYER].flatten(1, -1) / gain,
            );
        }
        let f = Tensor::cat(&feats, 0);
        let mut sum = 0.0;
        for i in 0..b {
            for j in 0..b {
                if i != j {
                    sum += (f.get(i) - f.get(j))
                        .abs()
                        .mean(Kind::Float)
                        .double_value(&[]);
                }
            }
        }
        Ok(sum / (b * (b - 1)) as f64)
    })
}
