//! Empty on purpose: this crate exists for its build script, which has no
//! dependencies and so runs before torch-sys's. If LibTorch is not set up it
//! stops the build with one message that names `scripts/setup.sh`.
