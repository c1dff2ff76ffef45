//! Adam (Kingma & Ba) over a VarStore's trainable variables, with state that
//! can be saved and restored (tch's own optimiser does not expose it, and an
//! exact resume needs it).
use std::collections::BTreeMap;
use tch::{nn::VarStore, Tensor};

#[derive(Debug, Clone, Copy)]
pub struct AdamConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Adam with named first/second-moment buffers.
#[derive(Debug)]
pub struct Adam {
    pub cfg: AdamConfig,
    /// Steps taken.
    pub t: u64,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
    /// Learning-rate multipliers by variable-name prefix (the longest
    /// matching prefix wins; variables matching none use 1).
    lr_scale: Vec<(String, f64)>,
}

impl Adam {
    pub fn new(cfg: AdamConfig) -> Self {
        Self {
            cfg,
            t: 0,
            m: BTreeMap::new(),
            v: BTreeMap::new(),
            lr_scale: Vec::new(),
        }
    }

    /// Multiplies the learning rate of every variable whose name starts with
    /// a key by its value (`{"relu1_1": 3.0}` scales `relu1_1.conv1_1.weight`).
    /// The longest matching key wins; other variables keep the base rate.
    pub fn with_lr_scale(mut self, scale: &BTreeMap<String, f64>) -> Self {
        let mut v: Vec<(String, f64)> = scale.iter().map(|(k, s)| (k.clone(), *s)).collect();
        v.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
        self.lr_scale = v;
        self
    }

    /// The learning-rate multiplier of the variable `name`.
    pub fn lr_scale_of(&self, name: &str) -> f64 {
        self.lr_scale
            .iter()
            .find(|(k, _)| name.starts_with(k.as_str()))
            .map_or(1.0, |(_, s)| *s)
    }

    /// Clears the gradients of every trainable variable.
    pub fn zero_grad(vs: &VarStore) {
        for mut p in vs.trainable_variables() {
            p.zero_grad();
        }
    }

    /// The global L2 norm of the trainable variables' gradients, as one
    /// vector; with `max_norm > 0` and a larger norm, every gradient is
    /// scaled by `max_norm / norm` so that the norm becomes `max_norm`.
    /// Returns the norm before clipping (not finite if a gradient is not).
    pub fn clip_grad_norm(vs: &VarStore, max_norm: f64) -> f64 {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = vs
                .trainable_variables()
                .iter()
                .map(|p| p.grad())
                .filter(|g| g.defined())
                .collect();
            // One reduction on the device and one read back (not one per variable).
            let squares: Vec<Tensor> = grads
                .iter()
                .map(|g| g.square().sum(tch::Kind::Double))
                .collect();
            let norm = if squares.is_empty() {
                0.0
            } else {
                Tensor::stack(&squares, 0)
                    .sum(tch::Kind::Double)
                    .double_value(&[])
                    .sqrt()
            };
            if max_norm > 0.0 && norm.is_finite() && norm > max_norm {
                for mut g in grads {
                    g *= max_norm / norm;
                }
            }
            norm
        })
    }

    /// One update with learning rate `lr` from the gradients already computed.
    pub fn step(&mut self, vs: &VarStore, lr: f64) {
        self.t += 1;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bc1 = 1.0 - b1.powi(self.t as i32);
        let bc2 = 1.0 - b2.powi(self.t as i32);
        tch::no_grad(|| {
            for (name, mut p) in vs.variables() {
                if !p.requires_grad() {
                    continue;
                }
                let scale = self.lr_scale_of(&name);
                if scale == 0.0 {
                    continue; // frozen by its scale: state untouched
                }
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g = if self.cfg.weight_decay > 0.0 {
                    &g + &p * self.cfg.weight_decay
                } else {
                    g
                };
                let m = self.m.entry(name.clone()).or_insert_with(|| p.zeros_like());
                *m *= b1;
                *m += &g * (1.0 - b1);
                let v = self.v.entry(name).or_insert_with(|| p.zeros_like());
                *v *= b2;
                *v += g.square() * (1.0 - b2);
                let update = (&*m / bc1) / ((&*v / bc2).sqrt() + self.cfg.eps);
                p -= update * (lr * scale);
            }
        });
    }

    /// The moment buffers as named tensors (`m.<var>`, `v.<var>`).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .m
            .iter()
            .map(|(k, t)| (format!("m.{k}"), t.shallow_clone()))
            .collect();
        out.extend(
            self.v
                .iter()
                .map(|(k, t)| (format!("v.{k}"), t.shallow_clone())),
        );
        out
    }

    /// Restores the moment buffers and the step count.
    pub fn load_state(&mut self, t: u64, tensors: Vec<(String, Tensor)>, device: tch::Device) {
        self.t = t;
        self.m.clear();
        self.v.clear();
        for (k, x) in tensors {
            if let Some(n) = k.strip_prefix("m.") {
                self.m.insert(n.to_string(), x.to_device(device));
            } else if let Some(n) = k.strip_prefix("v.") {
                self.v.insert(n.to_string(), x.to_device(device));
            }
        }
    }
}
