//! A texture solver as the commands run it: a trained pseudo-optimizer, or
//! Gatys's optimisation as the reference, on a batch of noise inputs for one
//! target.
use crate::texture::{TargetGrams, TextureLoss};
use crate::{baseline, PseudoOptimizer};
use nst_model::{Error, Result};
use tch::Tensor;

/// A trained network or Gatys (L-BFGS, at most `max_evals` loss evaluations
/// per image), each with its texture loss.
pub enum Solver {
    Learned(PseudoOptimizer),
    Gatys { loss: TextureLoss, max_evals: usize },
}

/// How a tiled synthesis plans its tiles ([`Solver::tile_plan`]): the
/// arguments of [`nst_tiling::plan_with_state`] besides the image, the
/// tile and the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TilePlan {
    /// Context a tile needs on each side, px.
    pub halo: i64,
    /// Tile boundaries fall on multiples of this.
    pub align: i64,
    /// Bytes of whole maps the staged path keeps beside its tiles; `None`:
    /// every stage runs in windows.
    pub reserve: Option<u64>,
    /// Whole-image bytes per output pixel besides the tiles
    /// ([`Solver::tiled_state_bytes`]).
    pub state: u64,
}

/// What [`Solver::synthesize`] made: at least one stage of at least one image.
#[derive(Debug)]
pub struct Synthesis {
    /// The final images, `[N, 3, H, W]` in [0, 1].
    result: Tensor,
    /// The images after each stage before the last (four for ProPO, none
    /// for PO, AdaPO and Gatys).
    earlier: Vec<Tensor>,
    /// Lines for the user, e.g. that L-BFGS stopped early on one image.
    pub notes: Vec<String>,
}

impl Synthesis {
    /// The final images, `[N, 3, H, W]`.
    pub fn result(&self) -> &Tensor {
        &self.result
    }

    /// The images after each stage, the result last.
    pub fn stages(&self) -> impl Iterator<Item = &Tensor> {
        self.earlier.iter().chain(std::iter::once(&self.result))
    }

    /// How many stages the solver ran (five for ProPO, one otherwise).
    pub fn n_stages(&self) -> usize {
        self.earlier.len() + 1
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

    /// Context and alignment of [`Solver::synthesize_tiled`]'s tiles, or
    /// why this solver does not tile.
    pub fn tiling_needs(&self) -> std::result::Result<(i64, i64), String> {
        match self {
            Solver::Learned(m) => match m.untileable() {
                Some(why) => Err(format!("this network does not tile: {why}")),
                None => Ok((m.tile_halo(), PseudoOptimizer::TILE_ALIGN)),
            },
            Solver::Gatys { .. } => Err(
                "--method gatys does not tile (nst-infer gatys without --content tiles a texture)"
                    .into(),
            ),
        }
    }

    /// The ways of running the staged tiled path on an `h × w` output, the
    /// fastest first, when this solver tiles
    /// ([`PseudoOptimizer::staged_plans`]).
    pub fn staged_plans(&self, (h, w): (i64, i64)) -> Vec<crate::StagedPlan> {
        match self {
            Solver::Learned(m) if m.untileable().is_none() => m.staged_plans(h, w),
            _ => Vec::new(),
        }
    }

    /// How a tiled run of `count` images at `h × w` plans its tiles, for the
    /// user's `tile` and the memory `budget` (as [`nst_tiling::plan_with_state`]
    /// takes them): the staged path (a small halo, the coarse levels whole)
    /// with the first split whose whole maps fit beside its tiles, else
    /// every stage in windows. When no tiling fits, the staged path's own
    /// error if it refused the tile, else the window path's with the room
    /// the staged path would need; why, when this solver does not tile.
    pub fn tile_plan(
        &self,
        (h, w): (i64, i64),
        (count, keep_stages): (u64, bool),
        tile: Option<i64>,
        budget: Option<u64>,
    ) -> Result<TilePlan> {
        let (halo, align) = self.tiling_needs().map_err(Error::Model)?;
        let state = self.tiled_state_bytes(count, keep_stages);
        let fp = self.footprint();
        let plan = |halo, reserve| {
            nst_tiling::plan_with_state(&fp, state, reserve, (h, w), halo, align, tile, budget)
        };
        let at = |halo, reserve| TilePlan {
            halo,
            align,
            reserve,
            state,
        };
        let splits = self.staged_plans((h, w));
        let mut refused = None;
        for s in &splits {
            match plan(s.halo, Some(s.bytes)) {
                // Whole, or tiles that leave the split its room.
                Ok(p)
                    if p.tiling()
                        .is_none_or(|t| t.cache_bytes.is_none_or(|c| c >= s.bytes)) =>
                {
                    return Ok(at(s.halo, Some(s.bytes)))
                }
                Ok(_) => {}
                Err(e) => refused = refused.or(Some(e)),
            }
        }
        match (plan(halo, None), refused, splits.last()) {
            (Ok(_), _, _) => Ok(at(halo, None)),
            (Err(_), Some(staged), _) => Err(staged.into()),
            (Err(e), None, Some(s)) => Err(Error::Model(format!(
                "{e}; the staged path (a {}-px halo) needs {:.2}G for its whole maps beside its tiles",
                s.halo,
                s.bytes as f64 / (1u64 << 30) as f64
            ))),
            (Err(e), None, None) => Err(e.into()),
        }
    }

    /// Whole-image bytes per pixel (of one output) of a tiled run of
    /// `count` images besides the tiles: the image being made (the
    /// pre-activation and image of the stage being made and of each stage
    /// kept, fp32 RGB, 12 B each, and the update being assembled), every
    /// image's noise, and the images made so far (their last stage, or all
    /// stages with `keep_stages`).
    pub fn tiled_state_bytes(&self, count: u64, keep_stages: bool) -> u64 {
        let stages = match self {
            Solver::Learned(m) => m.stage_layer_counts().len() as u64,
            Solver::Gatys { .. } => 1,
        };
        let kept = if keep_stages { stages } else { 1 };
        24 * (kept + 1) + 12 + count * 12 * (1 + kept)
    }

    /// [`Solver::synthesize`] one image at a time, tile by tile
    /// ([`PseudoOptimizer::run_tiled`]), keeping each image's earlier stages
    /// only with `keep_stages`; also returns each image's texture loss
    /// measured over the tiles.
    pub fn synthesize_tiled(
        &self,
        z0: &Tensor,
        target: &TargetGrams,
        tiling: &nst_tiling::Tiling,
        keep_stages: bool,
        mut progress: impl FnMut(usize),
    ) -> Result<(Synthesis, Vec<f64>)> {
        let Solver::Learned(net) = self else {
            return Err(Error::Config(self.tiling_needs().err().unwrap_or_default()));
        };
        let n = z0.size()[0];
        if n < 1 {
            return Err(Error::Config(
                "texture synthesis needs at least one noise input (N = 0)".into(),
            ));
        }
        let mut groups: Vec<Vec<Tensor>> = Vec::new();
        let mut losses = Vec::new();
        for i in 0..n {
            let mut stages = net
                .run_tiled(&z0.narrow(0, i, 1), target, tiling, keep_stages)?
                .images()
                .split_off(1);
            if !keep_stages {
                // Only the result is kept: at 4096² each stage's image is 200 MB.
                stages = stages.split_off(stages.len().saturating_sub(1));
            }
            let out = stages
                .last()
                .ok_or_else(|| Error::Model("no stage ran".into()))?;
            let sums = net.loss.sums_tiled(out, tiling)?;
            let t = TargetGrams(target.0.iter().map(|g| g.narrow(0, 0, 1)).collect());
            losses.push(net.loss.loss_from_sums(&sums, &t));
            groups.push(stages);
            progress(i as usize + 1);
        }
        let (result, earlier) = merge(&groups)?;
        Ok((
            Synthesis {
                result,
                earlier,
                notes: Vec::new(),
            },
            losses,
        ))
    }

    /// Runs on the noise `z0: [N, 3, H, W]` (x = sigmoid(z)) for `target`,
    /// [`Solver::batch`]`(batch)` images at a time; `progress(done)` is called
    /// after each group with the number of images made so far. An empty
    /// batch (`N = 0`) is an error.
    pub fn synthesize(
        &self,
        z0: &Tensor,
        target: &TargetGrams,
        batch: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<Synthesis> {
        let n = z0.size()[0];
        if n < 1 {
            return Err(Error::Config(
                "texture synthesis needs at least one noise input (N = 0)".into(),
            ));
        }
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
                        baseline::synthesize(loss, target, &z, *max_evals, |_, _| true)?;
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
        let (result, earlier) = merge(&groups)?;
        Ok(Synthesis {
            result,
            earlier,
            notes,
        })
    }
}

/// Each group's stage images (`[m, 3, H, W]` each, stage order) joined along
/// the batch: the last stage's, and the earlier ones'.
fn merge(groups: &[Vec<Tensor>]) -> Result<(Tensor, Vec<Tensor>)> {
    let n_stages = groups.first().map_or(0, Vec::len);
    let mut earlier: Vec<Tensor> = (0..n_stages)
        .map(|s| {
            let parts: Vec<&Tensor> = groups.iter().map(|g| &g[s]).collect();
            Tensor::cat(&parts, 0)
        })
        .collect();
    let result = earlier
        .pop()
        .ok_or_else(|| Error::Model("the texture solver made no image".into()))?;
    Ok((result, earlier))
}
