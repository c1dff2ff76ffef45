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

/// One row of the comparison: a method's scores on one target.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRow {
    pub target: String,
    /// `noise` for the solvers' common input, else the method's name.
    pub method: String,
    pub quality: f64,
    pub diversity: f64,
    pub seconds_per_image: f64,
}

/// The paper's protocol on one target: the noise inputs `z0: [N ≥ 2, 3, H, W]`
/// scored as they are (the "noise" row, for scale), then each solver run on
/// them and its outputs scored with `reference` (the published loss in fp32,
/// so that scores compare across solvers and precisions). Each solver's
/// target statistics come from its own loss. `outputs(method, images)` sees
/// every solver's result (to save it); notes from the solvers go to `notes`.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_target(
    reference: &TextureLoss,
    target_name: &str,
    target: &Tensor,
    solvers: &[(&str, &crate::Solver)],
    z0: &Tensor,
    batch: usize,
    mut outputs: impl FnMut(&str, &Tensor) -> nst_model::Result<()>,
    notes: &mut Vec<String>,
) -> nst_model::Result<Vec<EvalRow>> {
    let n = z0.size()[0];
    let reference_target = reference.target(target)?;
    let noise = z0.sigmoid();
    let mut rows = vec![EvalRow {
        target: target_name.into(),
        method: "noise".into(),
        quality: quality(reference, &noise, &reference_target)?,
        diversity: diversity(reference, &noise)?,
        seconds_per_image: 0.0,
    }];
    for (name, solver) in solvers {
        let t0 = std::time::Instant::now();
        let own_target = solver.loss().target(target)?;
        let s = solver.synthesize(z0, &own_target, batch, |_| {})?;
        let secs = t0.elapsed().as_secs_f64() / n as f64;
        notes.extend(s.notes.iter().map(|m| format!("{target_name}: {m}")));
        let out = s.result();
        outputs(name, out)?;
        rows.push(EvalRow {
            target: target_name.into(),
            method: (*name).into(),
            quality: quality(reference, out, &reference_target)?,
            diversity: diversity(reference, out)?,
            seconds_per_image: secs,
        });
    }
    Ok(rows)
}

/// The rows as CSV, with a header line.
pub fn to_csv(rows: &[EvalRow]) -> String {
    let mut csv = String::from("target,method,quality,diversity,seconds_per_image\n");
    for r in rows {
        csv.push_str(&format!(
            "{},{},{:.6e},{:.6e},{:.6}\n",
            r.target, r.method, r.quality, r.diversity, r.seconds_per_image
        ));
    }
    csv
}

/// Per method (in `methods` order), the means over targets of quality,
/// diversity and seconds per image; a method without rows gets NaN.
pub fn means(rows: &[EvalRow], methods: &[&str]) -> Vec<(String, f64, f64, f64)> {
    methods
        .iter()
        .map(|&m| {
            let sel: Vec<&EvalRow> = rows.iter().filter(|r| r.method == m).collect();
            let k = sel.len() as f64;
            let mean = |f: fn(&EvalRow) -> f64| sel.iter().map(|r| f(r)).sum::<f64>() / k;
            (
                m.to_string(),
                mean(|r| r.quality),
                mean(|r| r.diversity),
                mean(|r| r.seconds_per_image),
            )
        })
        .collect()
}
