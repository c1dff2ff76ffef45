//! Numerical solvers shared by the methods (Gatys, STROTSS, the Luan
//! baseline, the PO papers' Gatys baseline), below every method crate.
//!
//! * [`lbfgs`]: limited-memory BFGS on tensors (tch ships none), with a
//!   PyTorch-parity mode and a scale-free mode with a strong-Wolfe line search.
//!   Its parity test against `torch.optim.LBFGS` lives in `nst-optim`, next to
//!   the Gatys runs it guards; the scale and line-search tests live here.

pub mod lbfgs;

pub use lbfgs::{Lbfgs, LbfgsReport, StopReason};
