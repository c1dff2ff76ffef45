//! The allocator of nst's binaries: mimalloc, for Rust and for LibTorch.
//!
//! LibTorch allocates CPU tensors with `posix_memalign`. Under glibc's malloc
//! every block above its mmap threshold (dynamic, at most 32 MiB) is a fresh
//! `mmap`, faulted in page by page and unmapped on free. A VGG activation at
//! 256² with batch 4 is 64 MiB, so each training step maps and faults in
//! gigabytes: a variational AdaIN step at 256², batch 4, took 8.2 million
//! minor faults and 19 s of system time over three steps on the development
//! machine. Raising glibc's thresholds stops the unmapping but fragments the
//! heap: an aligned block never fits the hole its predecessor left, and the
//! heap crept upwards step after step.
//!
//! The binaries therefore link mimalloc (the `mimalloc` crate with its
//! `override` feature, which also replaces `malloc`/`posix_memalign`/`free`
//! for LibTorch) and call [`configure_allocator`] first thing: freed memory is
//! kept for reuse instead of being returned to the OS after mimalloc's
//! default 1 s delay. Each training step then reuses the previous step's
//! pages: five such steps took 0.02 million faults, and a step 6.1–6.5 s
//! against 10–14 s (`nst-bench --child vae_train_step`; docs/benchmarks.md).
//! The price is that the process keeps its peak footprint until it exits
//! (4.7 GB peak RSS on those steps against 3.6 GB). CUDA tensors use LibTorch's own caching allocator and are
//! unaffected.
//!
//! Opting out: `MIMALLOC_PURGE_DELAY=<ms>` (mimalloc's own variable) is
//! respected as given; `MIMALLOC_PURGE_DELAY=1000` restores mimalloc's default.

/// mimalloc, for `#[global_allocator]` in the binaries:
/// `static GLOBAL: nst_core::alloc::MiMalloc = nst_core::alloc::MiMalloc;`
pub use mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (the sys crate does
/// not name it). [`purge_delay_ms`] reads it; the test checks it against
/// mimalloc's documented default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc's default purge delay, in ms.
pub const MIMALLOC_DEFAULT_PURGE_DELAY_MS: i64 = 1000;

/// What [`configure_allocator`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocatorSetting {
    /// Freed memory is kept for reuse (purge delay −1).
    KeepFreed,
    /// Left as the environment set it (`MIMALLOC_PURGE_DELAY`).
    UserChoice,
}

/// mimalloc's current purge delay in ms (−1: never purge).
pub fn purge_delay_ms() -> i64 {
    // SAFETY: reads one of mimalloc's option values; no preconditions.
    #[allow(unsafe_code)]
    let v = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
    // c_long is i32 on some targets.
    #[allow(clippy::useless_conversion)]
    i64::from(v)
}

/// Keeps freed memory for reuse (see the module docs). Call once, first thing
/// in `main` of a binary whose global allocator is [`MiMalloc`].
pub fn configure_allocator() -> AllocatorSetting {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return AllocatorSetting::UserChoice;
    }
    // SAFETY: sets one of mimalloc's option values; no preconditions.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1)
    };
    AllocatorSetting::KeepFreed
}
