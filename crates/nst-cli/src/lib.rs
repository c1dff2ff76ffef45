//! The command-line front ends. Each subcommand lives in its own module and
//! only turns options into a library call; the methods themselves live in the
//! library crates (`nst-vgg`, `nst-optim`, …).

pub mod adain;
pub mod common;
pub mod gatys;
pub mod optex;
pub mod puy;
pub mod strotss;
pub mod texture;
pub mod train;
pub mod vae;
