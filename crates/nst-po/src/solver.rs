//! A texture solver as the commands run it: a trained pseudo-optimizer, or
//! Gatys's optimisation as the reference, on a batch of noise inputs for one
//! target.
use crate::texture::{TargetGrams, TextureLoss};
use crate::{gatys, PseudoOptimizer};
use nst_model::Result;
use tch::Tensor;

/// A trained network or Gatys (L-BFGS, at most `max_evals` loss evaluations
/// per image), each with its texture loss.
pub enum Solver {
    Learned(PseudoOptimizer),
    Gatys { loss: TextureLoss, max_evals: usize },
}

/// What [`Solver::synthesize`] made.
#[derive(Debug)]
pub struct Synthesis {
    /// The images after each stage, `[N, 3, H, W]` each in [0, 1]: five for
    /// ProPO, one for PO, AdaPO and Gatys. The last is the result.
    pub stages: Vec<Tensor>,
    /// Lines for the user, e.g. that L-BFGS stopped early on one image.
    pub notes: Vec<String>,
}

impl Synthesis {
    /// The final images, `[N, 3, H, W]`.
    pub fn result(&self) -> &Tensor {
        self.stages
            .last()
            .expect("a synthesis has at least one stage")
    }
}

impl Solver {
    /// The texture loss the solver minimises (and its VGG).
    pub fn loss(&self) -> &TextureLoss {
        match self {
            Solver::Learned(m) => &m.loss,
            Solver::Gatys { loss, .. } => loss,
        }
    }

    /// Peak memory per output pixel of one image.
    pub fn footprint(&self) -> nst_core::Footprint {
        match self {
            Solver::Learned(_) => crate::FOOTPRINT,
            Solver::Gatys { .. } => crate::GATYS_FOOTPRINT,
        }
    }

    /// Images made at once: Gatys optimises one at a time.
    pub fn batch(&self, requested: usize) -> usize {
        match self {
            Solver::Learned(_) => requested.max(1),
            Solver::Gatys { .. } => 1,
        }
    }

    /// Runs on the noise `z0: [N, 3, H, W]` (x = sigmoid(z)) for `target`,
    /// [`Solver::batch`]`(batch)` images at a time; `progress(done)` is called
    /// after each group with the number of images made so far.
    pub fn synthesize(
        &self,
        z0: &Tensor,
        target: &TargetGrams,
        batch: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<Synthesis> {
        let n = z0.size()[0];
        let k = self.batch(batch) as i64;
        let mut groups: Vec<Vec<Tensor>> = Vec::new();
        let mut notes = Vec::new();
        let mut i = 0;
        while i < n {
            let m = k.min(n - i);
            let z = z0.narrow(0, i, m);
            let stages = match self {
                // The network's input is a stage-0 image too: dropped.
                Solver::Learned(net) => net.run(&z, target)?.images().split_off(1),
                Solver::Gatys { loss, max_evals } => {
                    let (x, _, early) =
                        gatys::synthesize(loss, target, &z, *max_evals, |_, _| true)?;
                    if let Some(note) = early {
                        notes.push(format!("Gatys texture {}: {note}", i + 1));
                    }
                    vec![x]
                }
            };
            groups.push(stages);
            i += m;
            progress(i as usize);
        }
        let n_stages = groups.first().map_or(0, Vec::len);
        let stages = (0..n_stages)
            .map(|s| {
                let parts: Vec<&Tensor> = groups.iter().map(|g| &g[s]).collect();
                Tensor::cat(&parts, 0)
            })
            .collect();
        Ok(Synthesis { stages, notes })
    }
}
