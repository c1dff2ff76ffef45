//! Limited-memory BFGS (Nocedal & Wright, Numerical Optimization, Alg. 7.4/7.5)
//! on a tensor of any shape, with a fixed step as in PyTorch's `torch.optim.LBFGS`
//! without line search: the first step is scaled by min(1, 1/|g|₁)·lr, later
//! steps use lr, and the inverse-Hessian seed is γ = sᵀy / yᵀy.
use std::collections::VecDeque;
use tch::{Kind, Tensor};

/// L-BFGS settings. Defaults match PyTorch's LBFGS with `history_size = 100`.
#[derive(Debug, Clone)]
pub struct Lbfgs {
    /// Number of (s, y) pairs kept.
    pub history: usize,
    /// Step length.
    pub lr: f64,
    /// Stop when max|∇f| falls to this.
    pub tolerance_grad: f64,
    /// Stop when the step, or the change in loss, falls below this.
    pub tolerance_change: f64,
    /// Backtracking (Armijo) line search: a step that does not lower the loss
    /// by at least 1e-4·step·∇fᵀd (or gives a non-finite loss) is halved and
    /// re-evaluated, up to 30 times. Off by default, as in PyTorch without
    /// `line_search_fn`; each trial costs one evaluation.
    pub backtrack: bool,
}

impl Default for Lbfgs {
    fn default() -> Self {
        Self {
            history: 100,
            lr: 1.0,
            tolerance_grad: 1e-7,
            tolerance_change: 1e-9,
            backtrack: false,
        }
    }
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    (a * b).sum(Kind::Double).double_value(&[])
}

fn abs_max(a: &Tensor) -> f64 {
    a.abs().max().double_value(&[])
}

impl Lbfgs {
    /// Minimises `f` from `x` (updated in place) within `max_evals` evaluations.
    ///
    /// `f(x)` returns the loss and its gradient with respect to `x`; an error
    /// from `f` stops the run and is returned. Returns the number of evaluations.
    pub fn minimize<E, F>(&self, x: &mut Tensor, max_evals: usize, mut f: F) -> Result<usize, E>
    where
        F: FnMut(&Tensor) -> Result<(f64, Tensor), E>,
    {
        if max_evals == 0 {
            return Ok(0);
        }
        let (mut loss, mut g) = f(x)?;
        let mut evals = 1;
        if abs_max(&g) <= self.tolerance_grad {
            return Ok(evals);
        }
        let mut s_hist: VecDeque<Tensor> = VecDeque::new();
        let mut y_hist: VecDeque<Tensor> = VecDeque::new();
        let mut rho_hist: VecDeque<f64> = VecDeque::new();
        let mut d = -&g;
        let mut step = (1.0f64).min(1.0 / g.abs().sum(Kind::Double).double_value(&[])) * self.lr;
        let mut prev_g = g.copy();
        loop {
            let gtd = dot(&g, &d);
            if gtd > -self.tolerance_change {
                break; // not a descent direction any more
            }
            *x += &d * step;
            if evals >= max_evals {
                break;
            }
            let prev_loss = loss;
            (loss, g) = f(x)?;
            evals += 1;
            if self.backtrack {
                let mut halvings = 0;
                while !(loss.is_finite() && loss <= prev_loss + 1e-4 * step * gtd)
                    && halvings < 30
                    && evals < max_evals
                {
                    *x -= &d * (step * 0.5);
                    step *= 0.5;
                    (loss, g) = f(x)?;
                    evals += 1;
                    halvings += 1;
                }
                if !loss.is_finite() {
                    break;
                }
            }
            if abs_max(&g) <= self.tolerance_grad
                || abs_max(&d) * step <= self.tolerance_change
                || (loss - prev_loss).abs() < self.tolerance_change
            {
                break;
            }
            // Curvature pair from this step.
            let y = &g - &prev_g;
            let s = &d * step;
            let ys = dot(&y, &s);
            let mut h_diag = 1.0;
            if ys > 1e-10 {
                if s_hist.len() == self.history {
                    s_hist.pop_front();
                    y_hist.pop_front();
                    rho_hist.pop_front();
                }
                h_diag = ys / dot(&y, &y);
                s_hist.push_back(s);
                y_hist.push_back(y);
                rho_hist.push_back(1.0 / ys);
            } else if let (Some(s), Some(y)) = (s_hist.back(), y_hist.back()) {
                h_diag = dot(s, y) / dot(y, y);
            }
            // Two-loop recursion: d = −H∇f.
            let k = s_hist.len();
            let mut alphas = vec![0.0; k];
            let mut q = -&g;
            for i in (0..k).rev() {
                alphas[i] = rho_hist[i] * dot(&s_hist[i], &q);
                q -= &y_hist[i] * alphas[i];
            }
            let mut r = q * h_diag;
            for i in 0..k {
                let beta = rho_hist[i] * dot(&y_hist[i], &r);
                r += &s_hist[i] * (alphas[i] - beta);
            }
            d = r;
            prev_g = g.copy();
            step = self.lr;
        }
        Ok(evals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// With a step length far too long, fixed-step L-BFGS makes the loss of
    /// a quadratic rise at its second evaluation; with `backtrack` every
    /// accepted step lowers it, and 60 evaluations (most spent halving the
    /// step) take the loss 100× down (measured: 941 → 0.73).
    #[test]
    fn backtracking_keeps_an_overlong_step_from_raising_the_loss() {
        let a = Tensor::from_slice(&[1.0f64, 10.0, 100.0]);
        let c = Tensor::from_slice(&[1.0f64, -2.0, 3.0]);
        let run = |backtrack: bool| {
            let lb = Lbfgs {
                lr: 50.0,
                backtrack,
                ..Default::default()
            };
            let mut x = Tensor::zeros([3], (Kind::Double, Device::Cpu));
            let mut seen = Vec::new();
            let f0 = (&a * &c * &c).sum(Kind::Double).double_value(&[]);
            lb.minimize::<(), _>(&mut x, 60, |x| {
                let r = x - &c;
                let v = (&a * &r * &r).sum(Kind::Double).double_value(&[]);
                seen.push(v);
                Ok((v, &a * &r * 2.0))
            })
            .expect("the loss closure never fails");
            let fx = (&a * (&x - &c).square())
                .sum(Kind::Double)
                .double_value(&[]);
            (seen, f0, fx)
        };
        let (plain, f0, _) = run(false);
        assert!(
            plain.iter().skip(1).any(|&v| v > f0),
            "the fixed step should overshoot: {plain:?}"
        );
        let (bt, f0, _) = run(true);
        let best = bt.iter().cloned().fold(f64::INFINITY, f64::min);
        assert!(
            best < 1e-2 * f0,
            "backtracking run: best {best:.3e} of f0 {f0:.3e}"
        );
    }

    /// f(x) = Σ_i a_i (x_i − c_i)², an ill-conditioned quadratic.
    #[test]
    fn minimises_an_ill_conditioned_quadratic() {
        let a = Tensor::from_slice(&[1.0f64, 10.0, 100.0, 1000.0]);
        let c = Tensor::from_slice(&[1.0f64, -2.0, 3.0, 0.5]);
        let mut x = Tensor::zeros([4], (Kind::Double, Device::Cpu));
        let evals = Lbfgs::default()
            .minimize::<(), _>(&mut x, 200, |x| {
                let diff = x - &c;
                Ok((
                    (&a * diff.square()).sum(Kind::Double).double_value(&[]),
                    &a * diff * 2.0,
                ))
            })
            .unwrap_or(0);
        assert!(evals < 200, "did not converge early ({evals} evals)");
        assert!(abs_max(&(&x - &c)) < 1e-4, "x = {x:?}");
    }

    /// The Rosenbrock function needs curvature information; plain gradient
    /// descent with a fixed step makes little progress in the same budget.
    #[test]
    fn minimises_rosenbrock() {
        let mut x = Tensor::from_slice(&[-1.2f64, 1.0]);
        let rosen = |x: &Tensor| -> (f64, Tensor) {
            let v: Vec<f64> = Vec::try_from(x).unwrap_or_default();
            let (p, q) = (v[0], v[1]);
            let f = (1.0 - p).powi(2) + 100.0 * (q - p * p).powi(2);
            let g = [
                -2.0 * (1.0 - p) - 400.0 * p * (q - p * p),
                200.0 * (q - p * p),
            ];
            (f, Tensor::from_slice(&g))
        };
        let lb = Lbfgs {
            lr: 0.1,
            ..Default::default()
        };
        lb.minimize::<(), _>(&mut x, 2000, |x| Ok(rosen(x)))
            .unwrap_or(0);
        let (f, _) = rosen(&x);
        assert!(f < 1e-6, "rosenbrock value {f} at {x:?}");
    }
}
