// Found only when LibTorch's own headers are missing: .cargo/config.toml puts
// this folder on CPLUS_INCLUDE_PATH, which the compiler searches after the
// real LibTorch include folders.
#error "nst: LibTorch is not set up. Run `scripts/setup.sh` from the repository root, then build again."
// A missing include is fatal: it stops the compiler after the message above.
#include "nst-libtorch-not-set-up--run-scripts-setup.sh"
