//! The binaries' allocator set-up (`nst_core::alloc`) must let a training-like
//! step reuse the pages freed by the step before it, without the footprint
//! growing from step to step. Under glibc's defaults the same step faults in
//! every page of its activations (over 100,000 faults here). Runs without the
//! test harness, with the binaries' global allocator.
use nst_core::alloc::{configure_allocator, purge_delay_ms, AllocatorSetting, MiMalloc};
use tch::{Kind, Tensor};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Minor page faults of this process so far (field 10 of /proc/self/stat).
fn minor_faults() -> i64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    rest.split_whitespace()
        .nth(7)
        .expect("minflt")
        .parse()
        .expect("minflt number")
}

/// Resident set size in KiB.
fn rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    line.split_whitespace()
        .nth(1)
        .expect("VmRSS value")
        .parse()
        .expect("VmRSS number")
}

/// A forward and backward pass over 50 MiB activations of several sizes, as
/// a training step allocates; returns the minor faults it took.
fn faults_of_one_step() -> i64 {
    let before = minor_faults();
    let x =
        Tensor::rand([4, 32, 320, 320], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let y = (&x * 2.0 - 0.5).relu();
    let z = y.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
    let loss = z.square().sum(Kind::Float) + y.mean(Kind::Float);
    loss.backward();
    assert_eq!(x.grad().size(), x.size());
    drop((x, y, z, loss));
    minor_faults() - before
}

fn main() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        assert_eq!(configure_allocator(), AllocatorSetting::UserChoice);
        println!("alloc_reuse: skipped (the environment sets MIMALLOC_PURGE_DELAY)");
        return;
    }
    // The option index the module uses is mimalloc's purge delay: it holds
    // mimalloc's documented default until configured.
    assert_eq!(
        purge_delay_ms(),
        nst_core::alloc::MIMALLOC_DEFAULT_PURGE_DELAY_MS
    );
    assert_eq!(configure_allocator(), AllocatorSetting::KeepFreed);
    assert_eq!(purge_delay_ms(), -1);
    tch::set_num_threads(1);
    let activation_kib = 4 * 32 * 320 * 320 * 4 / 1024;
    faults_of_one_step();
    let rss_after_step = rss_kib();
    // Pause past mimalloc's default purge delay (a checkpoint, a slow batch),
    // then allocate a little, which is when mimalloc purges: the freed
    // activations must still be resident for the next step.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for _ in 0..100 {
        let _ = Tensor::zeros([1024], (Kind::Float, tch::Device::Cpu));
    }
    let rss_after_pause = rss_kib();
    assert!(
        rss_after_pause > rss_after_step - activation_kib / 2,
        "freed memory was returned during a pause: RSS {rss_after_step} KiB → {rss_after_pause} KiB"
    );
    let steps: Vec<i64> = (0..12).map(|_| faults_of_one_step()).collect();
    let growth_kib = rss_kib() - rss_after_pause;
    let worst = *steps.iter().max().expect("steps");
    assert!(
        worst < activation_kib / 4 / 20,
        "each later step should reuse the freed memory: {steps:?} minor faults per step"
    );
    assert!(
        growth_kib < 16 * 1024,
        "RSS grew by {growth_kib} KiB over twelve identical steps"
    );
    println!("alloc_reuse: ok (RSS {rss_after_step} KiB after a step, {rss_after_pause} KiB after a pause; then {steps:?} faults per step; RSS growth {growth_kib} KiB)");
}
