//! Limited-memory BFGS (Nocedal & Wright, Numerical Optimization, Alg. 7.4/7.5)
//! on a tensor of any shape.
//!
//! Two modes:
//!
//! * [`Lbfgs::default`] is PyTorch's `torch.optim.LBFGS` without a line search
//!   (kept for parity): the first step is min(1, 1/|g|₁)·lr, later steps are
//!   lr, and the stop tests are absolute (max|g| ≤ 1e-7, max|step| ≤ 1e-9,
//!   |Δf| < 1e-9). Their outcome depends on the scale of the loss: a Gram loss
//!   of 1e7 gives a first step too short for float32 to see, curvature pairs
//!   of rounding noise, and a stop after a handful of evaluations with the
//!   image unchanged (issue 32).
//! * [`Lbfgs::scale_free`] (what Gatys uses) has a strong-Wolfe line search
//!   (N&W Alg. 3.5/3.6, cubic interpolation) and tests that do not change when
//!   the loss is multiplied by a constant: the first trial step moves x by lr in
//!   L2 norm, the gradient test is relative to the first gradient, the loss test
//!   relative to the loss, the step test in units of x.
//!
//! [`Lbfgs::minimize`] returns a [`LbfgsReport`]: evaluations used, why it
//! stopped, and the final loss, so that callers can say when a run ended
//! before its budget.
use std::collections::VecDeque;
use tch::{Kind, Tensor};

/// L-BFGS settings. Defaults match PyTorch's LBFGS with `history_size = 100`.
#[derive(Debug, Clone)]
pub struct Lbfgs {
    /// Number of (s, y) pairs kept.
    pub history: usize,
    /// Step length (scale-free mode: the first trial step's L2 length in x).
    pub lr: f64,
    /// Stop when max|∇f| falls to this (scale-free mode: this fraction of the
    /// first max|∇f|).
    pub tolerance_grad: f64,
    /// Stop when max|Δx| of a step falls below this, or the change in loss
    /// does (scale-free mode: |Δf| ≤ this·|f|).
    pub tolerance_change: f64,
    /// Backtracking (Armijo) line search: a step that does not lower the loss
    /// by at least 1e-4·step·∇fᵀd (or gives a non-finite loss) is halved and
    /// re-evaluated, up to 30 times. Off by default, as in PyTorch without
    /// `line_search_fn`; each trial costs one evaluation. Ignored when
    /// `strong_wolfe` is on.
    pub backtrack: bool,
    /// Strong-Wolfe line search (c₁ = 1e-4, c₂ = 0.9) with scale-free tests.
    pub strong_wolfe: bool,
}

impl Default for Lbfgs {
    fn default() -> Self {
        Self {
            history: 100,
            lr: 1.0,
            tolerance_grad: 1e-7,
            tolerance_change: 1e-9,
            backtrack: false,
            strong_wolfe: false,
        }
    }
}

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The evaluation budget was used.
    Budget,
    /// The gradient fell below the tolerance (a stationary point).
    Gradient,
    /// A step moved x by less than the tolerance.
    Step,
    /// The loss changed by less than the tolerance.
    LossChange,
    /// The search direction was not a descent direction.
    NoDescent,
    /// The line search found no step that lowers the loss.
    LineSearch,
    /// The loss became NaN or infinite.
    NonFinite,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::Budget => "its evaluation budget was used",
            StopReason::Gradient => "the gradient vanished (a stationary point)",
            StopReason::Step => "the steps became too small to change the image",
            StopReason::LossChange => "the loss stopped changing",
            StopReason::NoDescent => "no descent direction was left",
            StopReason::LineSearch => "the line search found no lower loss",
            StopReason::NonFinite => "the loss became NaN or infinite",
        })
    }
}

/// The outcome of [`Lbfgs::minimize`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LbfgsReport {
    /// Loss evaluations used.
    pub evals: usize,
    pub reason: StopReason,
    /// The loss at the returned x.
    pub loss: f64,
}

impl LbfgsReport {
    /// Whether the run stopped before its budget.
    pub fn stopped_early(&self) -> bool {
        self.reason != StopReason::Budget
    }

    /// One line for the user when the run stopped early, e.g.
    /// "L-BFGS stopped after 37 of 100 evaluations at loss 1.234e5: the loss stopped changing".
    pub fn early_stop_note(&self, budget: usize) -> Option<String> {
        self.stopped_early().then(|| {
            format!(
                "L-BFGS stopped after {} of {budget} evaluations at loss {:.4e}: {}",
                self.evals, self.loss, self.reason
            )
        })
    }
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    (a * b).sum(Kind::Double).double_value(&[])
}

fn abs_max(a: &Tensor) -> f64 {
    a.abs().max().double_value(&[])
}

/// The minimiser of the cubic through (t1, f1, g1) and (t2, f2, g2) (values
/// and slopes along the line), kept within [lo, hi]; the midpoint of the
/// bounds when the cubic has no minimiser there (N&W eq. 3.59).
fn cubic_min(t1: f64, f1: f64, g1: f64, t2: f64, f2: f64, g2: f64, lo: f64, hi: f64) -> f64 {
    let d1 = g1 + g2 - 3.0 * (f1 - f2) / (t1 - t2);
    let disc = d1 * d1 - g1 * g2;
    if disc.is_finite() && disc >= 0.0 {
        let d2 = (t2 - t1).signum() * disc.sqrt();
        let t = t2 - (t2 - t1) * (g2 + d2 - d1) / (g2 - g1 + 2.0 * d2);
        if t.is_finite() {
            return t.clamp(lo, hi);
        }
    }
    0.5 * (lo + hi)
}

/// One evaluation along the line: x + t·d → (loss, gradient, slope).
struct Point {
    t: f64,
    f: f64,
    g: Tensor,
    gtd: f64,
}

impl Lbfgs {
    /// The scale-free mode with a strong-Wolfe line search (what Gatys uses).
    pub fn scale_free() -> Self {
        Self {
            strong_wolfe: true,
            tolerance_grad: 1e-9,
            tolerance_change: 1e-9,
            ..Self::default()
        }
    }

    /// Minimises `f` from `x` (updated in place) within `max_evals` evaluations.
    ///
    /// `f(x)` returns the loss and its gradient with respect to `x`; an error
    /// from `f` stops the run and is returned.
    pub fn minimize<E, F>(&self, x: &mut Tensor, max_evals: usize, f: F) -> Result<LbfgsReport, E>
    where
        F: FnMut(&Tensor) -> Result<(f64, Tensor), E>,
    {
        if max_evals == 0 {
            return report(0, StopReason::Budget, f64::NAN);
        }
        if self.strong_wolfe {
            self.minimize_wolfe(x, max_evals, f)
        } else {
            self.minimize_fixed(x, max_evals, f)
        }
    }

    /// Two-loop recursion: −H∇f from the stored pairs (γ = sᵀy / yᵀy).
    fn minimize_fixed<E, F>(
        &self,
        x: &mut Tensor,
        max_evals: usize,
        mut f: F,
    ) -> Result<LbfgsReport, E>
    where
        F: FnMut(&Tensor) -> Result<(f64, Tensor), E>,
    {
        let (mut loss, mut g) = f(x)?;
        let mut evals = 1;
        if abs_max(&g) <= self.tolerance_grad {
            return report(evals, StopReason::Gradient, loss);
        }
        let mut hist = History::new(self.history);
        let mut d = -&g;
        let mut step = (1.0f64).min(1.0 / g.abs().sum(Kind::Double).double_value(&[])) * self.lr;
        let mut prev_g = g.copy();
        loop {
            let gtd = dot(&g, &d);
            if gtd > -self.tolerance_change {
                return report(evals, StopReason::NoDescent, loss);
            }
            *x += &d * step;
            if evals >= max_evals {
                // PyTorch's last step is taken without evaluating it.
                return report(evals, StopReason::Budget, loss);
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
                    return report(evals, StopReason::NonFinite, loss);
                }
            }
            if abs_max(&g) <= self.tolerance_grad {
                return report(evals, StopReason::Gradient, loss);
            }
            if abs_max(&d) * step <= self.tolerance_change {
                return report(evals, StopReason::Step, loss);
            }
            if (loss - prev_loss).abs() < self.tolerance_change {
                return report(evals, StopReason::LossChange, loss);
            }
            // Curvature pair from this step.
            let y = &g - &prev_g;
            let s = &d * step;
            let ys = dot(&y, &s);
            let mut h_diag = 1.0;
            if ys > 1e-10 {
                h_diag = ys / dot(&y, &y);
                hist.push(s, y, ys);
            } else if let Some(h) = hist.scale() {
                h_diag = h;
            }
            d = hist.direction(&g, h_diag);
            prev_g = g.copy();
            step = self.lr;
        }
    }

    fn minimize_wolfe<E, F>(
        &self,
        x: &mut Tensor,
        max_evals: usize,
        mut f: F,
    ) -> Result<LbfgsReport, E>
    where
        F: FnMut(&Tensor) -> Result<(f64, Tensor), E>,
    {
        let (mut loss, mut g) = f(x)?;
        let mut evals = 1;
        if !loss.is_finite() {
            return report(evals, StopReason::NonFinite, loss);
        }
        let g0_max = abs_max(&g);
        if g0_max == 0.0 {
            return report(evals, StopReason::Gradient, loss);
        }
        let mut hist = History::new(self.history);
        let mut d = -&g;
        // First trial: a step of L2 length lr along −∇f, whatever the loss's scale.
        let mut t = self.lr / dot(&g, &g).sqrt();
        loop {
            if evals >= max_evals {
                return report(evals, StopReason::Budget, loss);
            }
            let mut gtd = dot(&g, &d);
            if !(gtd < 0.0) {
                // Not a descent direction (a stale curvature model): restart
                // from steepest descent, which always is one.
                hist.clear();
                d = -&g;
                gtd = dot(&g, &d);
                if !(gtd < 0.0) {
                    return report(evals, StopReason::NoDescent, loss);
                }
                t = self.lr / gtd.abs().sqrt();
            }
            let d_max = abs_max(&d);
            let here = Point {
                t: 0.0,
                f: loss,
                g: g.shallow_clone(),
                gtd,
            };
            let (best, used) =
                self.line_search(x, &d, here, t, d_max, max_evals - evals, &mut f)?;
            evals += used;
            let Some(p) = best else {
                return report(
                    evals,
                    if used == 0 {
                        StopReason::Budget
                    } else {
                        StopReason::LineSearch
                    },
                    loss,
                );
            };
            // Accept the step.
            let s = &d * p.t;
            *x += &s;
            let prev_loss = loss;
            let y = &p.g - &g;
            loss = p.f;
            g = p.g;
            if abs_max(&g) <= self.tolerance_grad * g0_max {
                return report(evals, StopReason::Gradient, loss);
            }
            if d_max * p.t <= self.tolerance_change {
                return report(evals, StopReason::Step, loss);
            }
            if (prev_loss - loss).abs() <= self.tolerance_change * prev_loss.abs().max(loss.abs()) {
                return report(evals, StopReason::LossChange, loss);
            }
            let ys = dot(&y, &s);
            let yy = dot(&y, &y);
            // The strong-Wolfe curvature condition makes yᵀs > 0 whenever the
            // line search met it; a pair that does not is skipped.
            if ys > 1e-12 * yy.sqrt() * dot(&s, &s).sqrt() && ys > 0.0 {
                hist.push(s, y, ys);
            }
            let h_diag = hist.scale().unwrap_or_else(|| self.lr / dot(&g, &g).sqrt());
            d = hist.direction(&g, h_diag);
            t = 1.0;
        }
    }

    /// Strong-Wolfe line search along `d` from `x` (N&W Alg. 3.5 with the
    /// zoom of Alg. 3.6): returns the accepted point (or the best point with
    /// a sufficient decrease when the budget or the bracket ran out, or None
    /// when no trial lowered the loss) and the evaluations used.
    #[allow(clippy::too_many_arguments)]
    fn line_search<E, F>(
        &self,
        x: &Tensor,
        d: &Tensor,
        here: Point,
        t_init: f64,
        d_max: f64,
        budget: usize,
        f: &mut F,
    ) -> Result<(Option<Point>, usize), E>
    where
        F: FnMut(&Tensor) -> Result<(f64, Tensor), E>,
    {
        const C1: f64 = 1e-4;
        const C2: f64 = 0.9;
        const MAX_TRIALS: usize = 25;
        let (f0, gtd0) = (here.f, here.gtd);
        let mut used = 0usize;
        let mut eval = |t: f64, used: &mut usize| -> Result<Point, E> {
            let (fv, gv) = f(&(x + d * t))?;
            *used += 1;
            let gtd = dot(&gv, d);
            Ok(Point {
                t,
                f: if fv.is_finite() { fv } else { f64::INFINITY },
                g: gv,
                gtd: if fv.is_finite() { gtd } else { f64::NAN },
            })
        };
        let armijo = |p: &Point| p.f <= f0 + C1 * p.t * gtd0;
        let mut best: Option<Point> = None;
        let keep_best = |p: &Point, best: &mut Option<Point>| {
            if p.f < f0 && armijo(p) && best.as_ref().is_none_or(|b| p.f < b.f) {
                *best = Some(Point {
                    t: p.t,
                    f: p.f,
                    g: p.g.shallow_clone(),
                    gtd: p.gtd,
                });
            }
        };
        // Bracketing phase.
        let mut prev = here;
        let mut t = t_init;
        let (mut lo, mut hi);
        loop {
            if used >= budget || used >= MAX_TRIALS {
                return Ok((best, used));
            }
            let p = eval(t, &mut used)?;
            keep_best(&p, &mut best);
            if !armijo(&p) || (prev.t > 0.0 && p.f >= prev.f) {
                lo = prev;
                hi = p;
                break;
            }
            if p.gtd.abs() <= -C2 * gtd0 {
                return Ok((Some(p), used));
            }
            if p.gtd >= 0.0 {
                lo = p;
                hi = prev;
                break;
            }
            // Extrapolate: cubic step, at least 1.1× and at most 10× the current.
            let next = cubic_min(
                prev.t,
                prev.f,
                prev.gtd,
                p.t,
                p.f,
                p.gtd,
                p.t * 1.1,
                p.t * 10.0,
            );
            prev = p;
            t = next;
        }
        // Zoom between lo (sufficient decrease, lower loss) and hi.
        loop {
            if used >= budget || used >= MAX_TRIALS {
                return Ok((best, used));
            }
            if (hi.t - lo.t).abs() * d_max <= self.tolerance_change * 1e-3 {
                return Ok((best, used));
            }
            let (a, b) = (lo.t.min(hi.t), lo.t.max(hi.t));
            let margin = 0.1 * (b - a);
            let t = if hi.f.is_finite() && hi.gtd.is_finite() {
                cubic_min(
                    lo.t,
                    lo.f,
                    lo.gtd,
                    hi.t,
                    hi.f,
                    hi.gtd,
                    a + margin,
                    b - margin,
                )
            } else {
                0.5 * (a + b)
            };
            let p = eval(t, &mut used)?;
            keep_best(&p, &mut best);
            if !armijo(&p) || p.f >= lo.f {
                hi = p;
            } else {
                if p.gtd.abs() <= -C2 * gtd0 {
                    return Ok((Some(p), used));
                }
                if p.gtd * (hi.t - lo.t) >= 0.0 {
                    hi = lo;
                }
                lo = p;
            }
        }
    }
}

/// The last `cap` curvature pairs (s, y) with ρ = 1/(yᵀs), oldest first.
struct History {
    cap: usize,
    s: VecDeque<Tensor>,
    y: VecDeque<Tensor>,
    rho: VecDeque<f64>,
}

impl History {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            s: VecDeque::new(),
            y: VecDeque::new(),
            rho: VecDeque::new(),
        }
    }

    /// Adds a pair (`ys` = yᵀs > 0), dropping the oldest when full.
    fn push(&mut self, s: Tensor, y: Tensor, ys: f64) {
        if self.s.len() == self.cap {
            self.s.pop_front();
            self.y.pop_front();
            self.rho.pop_front();
        }
        self.s.push_back(s);
        self.y.push_back(y);
        self.rho.push_back(1.0 / ys);
    }

    fn clear(&mut self) {
        self.s.clear();
        self.y.clear();
        self.rho.clear();
    }

    /// sᵀy / yᵀy of the newest pair: the initial inverse-Hessian scale.
    fn scale(&self) -> Option<f64> {
        let (s, y) = (self.s.back()?, self.y.back()?);
        Some(dot(s, y) / dot(y, y))
    }

    /// The quasi-Newton direction −H·g by the two-loop recursion, with
    /// H₀ = `h_diag`·I.
    fn direction(&self, g: &Tensor, h_diag: f64) -> Tensor {
        let k = self.s.len();
        let mut alphas = vec![0.0; k];
        let mut q = -g;
        for i in (0..k).rev() {
            alphas[i] = self.rho[i] * dot(&self.s[i], &q);
            q -= &self.y[i] * alphas[i];
        }
        let mut r = q * h_diag;
        for i in 0..k {
            let beta = self.rho[i] * dot(&self.y[i], &r);
            r += &self.s[i] * (alphas[i] - beta);
        }
        r
    }
}

/// How a run ended, as the minimisers return it.
fn report<E>(evals: usize, reason: StopReason, loss: f64) -> Result<LbfgsReport, E> {
    Ok(LbfgsReport {
        evals,
        reason,
        loss,
    })
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
            .map_or(0, |r| r.evals);
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
            .expect("no error");
        let (f, _) = rosen(&x);
        assert!(f < 1e-6, "rosenbrock value {f} at {x:?}");
    }
}

#[cfg(test)]
mod scale_free_tests {
    use super::*;
    use tch::Device;

    fn rosen(x: &Tensor, scale: f64) -> (f64, Tensor) {
        let v: Vec<f64> = Vec::try_from(x).unwrap_or_default();
        let (p, q) = (v[0], v[1]);
        let f = (1.0 - p).powi(2) + 100.0 * (q - p * p).powi(2);
        let g = [
            -2.0 * (1.0 - p) - 400.0 * p * (q - p * p),
            200.0 * (q - p * p),
        ];
        (f * scale, Tensor::from_slice(&g) * scale)
    }

    /// The scale-free mode reaches Rosenbrock's minimum and stops by its own
    /// test, with the same number of evaluations (±1) whether the loss is
    /// multiplied by 1e-6, 1, 1e6 or 1e12; the PyTorch mode's count changes
    /// with the scale.
    #[test]
    fn stops_after_the_same_evaluations_at_any_loss_scale() {
        let run = |lb: &Lbfgs, scale: f64| {
            let mut x = Tensor::from_slice(&[-1.2f64, 1.0]);
            let r = lb
                .minimize::<(), _>(&mut x, 500, |x| Ok(rosen(x, scale)))
                .expect("no error");
            (r, rosen(&x, 1.0).0)
        };
        let lb = Lbfgs::scale_free();
        let (base, fx) = run(&lb, 1.0);
        assert!(fx < 1e-10, "rosenbrock value {fx} ({base:?})");
        assert!(base.stopped_early() && base.evals < 200, "{base:?}");
        for scale in [1e-6, 1e6, 1e12] {
            let (r, fx) = run(&lb, scale);
            assert!(
                (r.evals as i64 - base.evals as i64).abs() <= 1,
                "scale {scale}: {} evaluations against {} at scale 1 ({r:?})",
                r.evals,
                base.evals
            );
            assert!(fx < 1e-10, "scale {scale}: value {fx}");
        }
        let parity = Lbfgs {
            lr: 0.1,
            ..Default::default()
        };
        let counts: Vec<usize> = [1.0, 1e6]
            .iter()
            .map(|&s| run(&parity, s).0.evals)
            .collect();
        assert_ne!(
            counts[0], counts[1],
            "the PyTorch mode depends on the scale"
        );
    }

    /// A large loss (a quartic, like a Gram loss, at 1e7) in float32: the
    /// scale-free mode lowers it by orders of magnitude within its budget.
    #[test]
    fn a_large_quartic_loss_is_minimised() {
        tch::manual_seed(3);
        let n = 3000;
        let target = Tensor::rand([n], (Kind::Float, Device::Cpu));
        let x0 = Tensor::rand([n], (Kind::Float, Device::Cpu));
        let f = |x: &Tensor| -> Result<(f64, Tensor), ()> {
            let xv = x.detach().set_requires_grad(true);
            let l = (xv.square() - target.square()).square().mean(Kind::Float) * 1e7;
            l.backward();
            Ok((l.double_value(&[]), xv.grad().detach()))
        };
        let f0 = f(&x0).unwrap().0;
        let mut x = x0.copy();
        let sf = Lbfgs::scale_free().minimize(&mut x, 100, f).unwrap();
        assert!(sf.loss < 1e-4 * f0, "scale-free: {sf:?} from {f0:.3e}");
        let note = LbfgsReport {
            evals: 7,
            reason: StopReason::Step,
            loss: 2.5e7,
        }
        .early_stop_note(100);
        assert_eq!(
            note.as_deref(),
            Some("L-BFGS stopped after 7 of 100 evaluations at loss 2.5000e7: the steps became too small to change the image")
        );
        assert_eq!(sf.early_stop_note(100), None);
    }
}
