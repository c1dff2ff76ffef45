use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        return; // tch finds torch through python itself
    }
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        return;
    };
    println!("cargo:rerun-if-changed={}", libtorch.display());
    let inc = libtorch.join("include");
    let ok = inc.join("torch/torch.h").exists() || inc.join("torch/csrc/api/include/torch/torch.h").exists();
    if !ok {
        eprintln!("error: LibTorch is not set up (nothing at {}).", libtorch.display());
        eprintln!("Run `scripts/setup.sh` once from the repository root, then build again.");
        std::process::exit(1);
    }
}
