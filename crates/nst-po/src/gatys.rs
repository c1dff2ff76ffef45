//! Gatys, Ecker and Bethge's texture synthesis: L-BFGS on the image from
//! noise, against the same texture loss and in the same parameterisation
//! (x = sigmoid(z), z⁽⁰⁾ ~ U[−1, 1]) as the pseudo-optimizers.
use crate::texture::{TargetGrams, TextureLoss};
use nst_optim::lbfgs::Lbfgs;
use tch::Tensor;

/// Why the optimisation stopped early.
#[derive(Debug)]
pub enum Stop {
    /// The observer asked to stop.
    Observer,
    Vgg(nst_vgg::Error),
}

/// Minimises L_tex(sigmoid(z), target) over z from `z0: [1, 3, H, W]` within
/// `max_evals` loss evaluations. `observe(eval, loss)` sees every evaluation
/// and may return `false` to stop. Returns the image in [0, 1] and the
/// number of evaluations.
pub fn synthesize<F>(
    loss: &TextureLoss,
    target: &TargetGrams,
    z0: &Tensor,
    max_evals: usize,
    mut observe: F,
) -> Result<(Tensor, usize), nst_vgg::Error>
where
    F: FnMut(usize, f64) -> bool,
{
    let n = loss.layers.len();
    let mut z = z0.detach().copy();
    let mut evals = 0usize;
    let res = Lbfgs::default().minimize(&mut z, max_evals, |z: &Tensor| {
        let zz = z.detach().set_requires_grad(true);
        let l = loss
            .loss_per_sample(&zz.sigmoid(), target, n)
            .map_err(Stop::Vgg)?
            .sum(tch::Kind::Float);
        l.backward();
        let v = l.double_value(&[]);
        evals += 1;
        if !observe(evals, v) {
            return Err(Stop::Observer);
        }
        Ok((v, zz.grad().detach()))
    });
    match res {
        Ok(_) | Err(Stop::Observer) => Ok((z.sigmoid(), evals)),
        Err(Stop::Vgg(e)) => Err(e),
    }
}
