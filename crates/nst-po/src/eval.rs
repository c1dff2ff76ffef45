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
pub fn quality(
    loss: &TextureLoss,
    outputs: &Tensor,
    target: &TargetGrams,
) -> Result<f64, nst_vgg::Error> {
    tch::no_grad(|| {
        let b = outputs.size()[0];
        let t = TargetGrams(
            target
                .0
                .iter()
                .map(|g| g.expand([b, g.size()[1], g.size()[2]], false))
                .collect(),
        );
        Ok(loss
            .loss_per_sample(outputs, &t, loss.layers.len())?
            .mean(Kind::Float)
            .double_value(&[]))
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
        let f = &loss.vgg.encode(outputs, &[DIVERSITY_LAYER])?[DIVERSITY_LAYER] / gain;
        let f = f.flatten(1, -1);
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
