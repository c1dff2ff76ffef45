//! Shared build script of every crate in the workspace (`build = "../../build/libtorch.rs"`).
//!
//! 1. Before `scripts/setup.sh` has run there is no LibTorch: stop with one
//!    message that names the command, instead of a page of C++ errors from torch-sys.
//! 2. Add an rpath to LibTorch's `lib/` folder to this crate's binaries, tests,
//!    examples and benches, so they run without LD_LIBRARY_PATH.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        // The user chose tch's own discovery through python; nothing to add.
        return;
    }
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        return;
    };
    let header = libtorch.join("include").join("torch").join("torch.h");
    let header_alt = libtorch
        .join("include")
        .join("torch")
        .join("csrc")
        .join("api")
        .join("include")
        .join("torch")
        .join("torch.h");
    println!("cargo:rerun-if-changed={}", libtorch.display());
    if !header.exists() && !header_alt.exists() {
        eprintln!();
        eprintln!("error: LibTorch is not set up (looked in {}).", libtorch.display());
        eprintln!("       Run `scripts/setup.sh` once from the repository root, then build again.");
        eprintln!();
        std::process::exit(1);
    }
    let lib = libtorch.join("lib");
    let lib = lib.canonicalize().unwrap_or(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}
