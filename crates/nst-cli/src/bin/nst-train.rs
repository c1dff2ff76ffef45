//! nst-train: train style-transfer models from TOML configs.
use clap::Parser;
use nst_cli::{common::run_main, train};

#[global_allocator]
static GLOBAL: nst_core::alloc::MiMalloc = nst_core::alloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = train::TrainArgs::parse();
    run_main(|| train::run(args))
}
