//! The PO paper's baseline: Gatys, Ecker and Bethge's texture synthesis as
//! the paper runs it for comparison, L-BFGS on the image from noise, against
//! the same texture loss and in the same parameterisation (x = sigmoid(z),
//! z⁽⁰⁾ ~ U[−1, 1]) as the pseudo-optimizers. Gatys's method itself, for
//! users, is `nst_optim::Gatys`; both use the shared L-BFGS and Gram (see
//! docs/architecture.md).
use crate::texture::{TargetGrams, TextureLoss};
use nst_solvers::lbfgs::Lbfgs;
use tch::Tensor;

/// Why a L-BFGS run stopped early.
#[derive(Debug)]
enum Stop {
    /// The observer asked to stop.
    Observer,
    /// The loss was not finite: restart from the best point.
    Diverged,
    Vgg(nst_vgg::Error),
}

/// Minimises L_tex(sigmoid(z), target) over z from `z0: [1, 3, H, W]` within
/// `max_evals` loss evaluations. `observe(eval, loss)` sees every evaluation
/// and may return `false` to stop. Returns the best image found (in [0, 1]),
/// the number of evaluations, and, when L-BFGS stopped by its own test before
/// `max_evals` (not by `observe`), one line saying why (for the user).
///
/// L-BFGS runs with a backtracking (Armijo) line search: in the sigmoid
/// parameterisation the first quasi-Newton steps from noise can overshoot
/// far, and a step that does not lower the loss is halved until it does.
/// (The former guard, restarting with half the step length for the rest of
/// the run whenever the loss doubled, left some runs crawling: la_muse at
/// 128 px ended at 2e5 instead of 5e2.) A non-finite loss restarts from the
/// best point with a fresh history and half the step length.
pub fn synthesize<F>(
    loss: &TextureLoss,
    target: &TargetGrams,
    z0: &Tensor,
    max_evals: usize,
    mut observe: F,
) -> Result<(Tensor, usize, Option<String>), nst_vgg::Error>
where
    F: FnMut(usize, f64) -> bool,
{
    let n = loss.layers.len();
    let mut best = (f64::INFINITY, z0.detach().copy());
    let mut evals = 0usize;
    let mut restarts = 0;
    let mut early = None;
    // Backtracking: without it, the first quasi-Newton steps from noise can
    // overshoot far (the loss rose more than 2× on la_muse at 128 px), and
    // halving lr for the whole run then left L-BFGS crawling at 4e5 instead
    // of reaching 6e2.
    let mut lbfgs = Lbfgs {
        backtrack: true,
        ..Lbfgs::default()
    };
    while evals < max_evals && restarts < 30 {
        let mut z = best.1.copy();
        let res = lbfgs.minimize(&mut z, max_evals - evals, |z: &Tensor| {
            let zz = z.detach().set_requires_grad(true);
            let l = loss
                .loss_per_sample(&zz.sigmoid(), target, n)
                .map_err(Stop::Vgg)?
                .sum(tch::Kind::Float);
            l.backward();
            let v = l.double_value(&[]);
            evals += 1;
            if v < best.0 {
                best = (v, zz.detach().copy());
            }
            if !observe(evals, v) {
                return Err(Stop::Observer);
            }
            if !v.is_finite() {
                return Err(Stop::Diverged);
            }
            Ok((v, zz.grad().detach()))
        });
        match res {
            Ok(r) if r.stopped_early() && evals < max_evals => {
                early = Some(format!(
                    "L-BFGS stopped after {evals} of {max_evals} evaluations at loss {:.4e}: {}",
                    best.0, r.reason
                ));
                break;
            }
            Ok(_) | Err(Stop::Observer) => break,
            Err(Stop::Diverged) => {
                restarts += 1;
                lbfgs.lr = (lbfgs.lr * 0.5).max(1e-3);
            }
            Err(Stop::Vgg(e)) => return Err(e),
        }
    }
    Ok((best.1.sigmoid(), evals, early))
}
