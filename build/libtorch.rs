//! Shared build script of every crate that links LibTorch
//! (`build = "../../build/libtorch.rs"`): adds an rpath to LibTorch's `lib/`
//! folder to this crate's binaries, tests, examples and benches, so they run
//! without LD_LIBRARY_PATH. (Before setup, the "run scripts/setup.sh" message
//! comes from the stub header build/setup-hint/torch/torch.h.)
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        return;
    };
    let lib = libtorch.join("lib");
    let lib = lib.canonicalize().unwrap_or(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}
