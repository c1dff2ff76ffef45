//! The image pipeline: shuffle → parallel decode → resize → crop → flip → batch.
//!
//! Determinism: the order of epoch e is a permutation drawn from
//! (seed, e); the crop and flip of the image at (e, i) come from (seed, e, i).
//! Neither depends on thread timing, so a loader restarted at a saved
//! [`Position`] yields exactly the batches the original would have.
use crate::{Dataset, Error, Result};
use rand::{seq::SliceRandom, Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use tch::Tensor;

pub use nst_core::Position;

/// Pipeline settings (`[data]` in a training config).
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Resize so the shorter side is this long (0: keep), before cropping.
    pub resize_shorter: u32,
    /// Square random crop size.
    pub crop: u32,
    /// Random horizontal flips.
    pub flip: bool,
    pub batch_size: usize,
    /// Decode threads.
    pub threads: usize,
    /// Batches decoded ahead of the consumer.
    pub prefetch: usize,
    /// Stop when more than this fraction of the images seen fail to decode.
    pub max_bad_fraction: f64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            resize_shorter: 512,
            crop: 256,
            flip: true,
            batch_size: 8,
            threads: 2,
            prefetch: 4,
            max_bad_fraction: 0.01,
        }
    }
}

/// One batch: `images: [B, 3, crop, crop]` in [0, 1] on the CPU.
#[derive(Debug)]
pub struct Batch {
    pub images: Tensor,
    pub labels: Vec<Option<u32>>,
    /// The position right after this batch: save it to resume after it.
    pub next: Position,
}

/// Counters shared with the decode threads.
#[derive(Debug, Default)]
pub struct LoaderStats {
    pub seen: AtomicUsize,
    pub bad: AtomicUsize,
    logged: Mutex<HashSet<std::path::PathBuf>>,
}

/// A prefetching, parallel, deterministic batch iterator over a dataset.
pub struct Loader {
    /// `None` only while dropping.
    rx: Option<Receiver<Result<Batch>>>,
    stats: Arc<LoaderStats>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Loader {
    /// Stops the background thread and waits for it. It builds tensors: left
    /// running while the process exits, it raced LibTorch's teardown and
    /// sometimes crashed nst-train with SIGSEGV after its last checkpoint
    /// (issue 30's kill -9 suite found it, about 1 process in 30).
    fn drop(&mut self) {
        drop(self.rx.take()); // the worker's next send fails, and it returns
        if let Some(h) = self.worker.take() {
            let _ = h.join();
        }
    }
}

fn mix(a: u64, b: u64) -> u64 {
    // SplitMix64 finaliser over a combination: decorrelates nearby seeds.
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The order of epoch `epoch`.
pub fn epoch_order(len: usize, seed: u64, epoch: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..len as u32).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(seed, epoch)));
    order
}

/// Decodes and transforms one image to CHW f32 values.
fn load_one(
    path: &std::path::Path,
    cfg: &PipelineConfig,
    rng_seed: u64,
) -> std::result::Result<Vec<f32>, String> {
    let img = nst_core::image_io::decode_rgb(path).map_err(|e| e.to_string())?;
    let (w, h) = img.dimensions();
    let short = w.min(h);
    let target_short = if cfg.resize_shorter > 0 {
        cfg.resize_shorter.max(cfg.crop)
    } else {
        short.max(cfg.crop)
    };
    let img = if target_short != short {
        let s = target_short as f64 / short as f64;
        let nw = ((w as f64 * s).round() as u32).max(cfg.crop);
        let nh = ((h as f64 * s).round() as u32).max(cfg.crop);
        // The same resampling as at inference (nst_core::load_image).
        nst_core::image_io::resize_rgb(img, nw, nh)
    } else {
        img
    };
    let (w, h) = img.dimensions();
    let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
    let x0 = rng.gen_range(0..=w - cfg.crop);
    let y0 = rng.gen_range(0..=h - cfg.crop);
    let flip = cfg.flip && rng.gen_bool(0.5);
    let c = cfg.crop as usize;
    let mut out = vec![0f32; 3 * c * c];
    for y in 0..c {
        for x in 0..c {
            let sx = if flip { c - 1 - x } else { x };
            let p = img.get_pixel(x0 + sx as u32, y0 + y as u32).0;
            for ch in 0..3 {
                out[ch * c * c + y * c + x] = p[ch].clamp(0.0, 1.0);
            }
        }
    }
    Ok(out)
}

impl Loader {
    /// Starts decoding from `start` on a background thread.
    pub fn new(dataset: Dataset, cfg: PipelineConfig, seed: u64, start: Position) -> Result<Self> {
        if cfg.batch_size == 0 || cfg.crop < 32 || cfg.threads == 0 {
            return Err(Error::Config(format!(
                "batch_size must be >= 1, crop >= 32 and threads >= 1 (got {}, {}, {})",
                cfg.batch_size, cfg.crop, cfg.threads
            )));
        }
        if !(0.0..=1.0).contains(&cfg.max_bad_fraction) {
            return Err(Error::Config("max_bad_fraction must be in [0, 1]".into()));
        }
        let len = dataset.samples.len();
        if len == 0 {
            return Err(Error::Empty {
                name: dataset.name,
                hint: String::new(),
            });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads)
            .thread_name(|i| format!("nst-decode-{i}"))
            .build()
            .map_err(|e| Error::Config(format!("cannot start decode threads: {e}")))?;
        let (tx, rx) = sync_channel(cfg.prefetch.max(1));
        let stats = Arc::new(LoaderStats::default());
        let st = stats.clone();
        let worker = std::thread::Builder::new()
            .name("nst-loader".into())
            .spawn(move || {
                let mut pos = start;
                let mut order = epoch_order(len, seed, pos.epoch);
                loop {
                    let batch =
                        Self::produce(&dataset, &cfg, seed, &mut pos, &mut order, &pool, &st);
                    let failed = batch.is_err();
                    if tx.send(batch).is_err() || failed {
                        return; // consumer gone, or an error reported
                    }
                }
            })?;
        Ok(Self {
            rx: Some(rx),
            stats,
            worker: Some(worker),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn produce(
        ds: &Dataset,
        cfg: &PipelineConfig,
        seed: u64,
        pos: &mut Position,
        order: &mut Vec<u32>,
        pool: &rayon::ThreadPool,
        stats: &LoaderStats,
    ) -> Result<Batch> {
        let b = cfg.batch_size;
        let c = cfg.crop as i64;
        let mut images: Vec<Vec<f32>> = Vec::with_capacity(b);
        let mut labels = Vec::with_capacity(b);
        while images.len() < b {
            // Claim the next indices in order; decode them in parallel.
            let need = b - images.len();
            let mut claimed = Vec::with_capacity(need);
            for _ in 0..need {
                if pos.index as usize >= order.len() {
                    pos.epoch += 1;
                    pos.index = 0;
                    *order = epoch_order(ds.samples.len(), seed, pos.epoch);
                }
                let i = order[pos.index as usize] as usize;
                claimed.push((i, mix(mix(seed, pos.epoch), pos.index)));
                pos.index += 1;
            }
            let decoded: Vec<_> = pool.install(|| {
                claimed
                    .par_iter()
                    .map(|&(i, s)| (i, load_one(&ds.samples[i].path, cfg, s)))
                    .collect()
            });
            for (i, r) in decoded {
                stats.seen.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(px) => {
                        images.push(px);
                        labels.push(ds.samples[i].label);
                    }
                    Err(e) => {
                        let bad = stats.bad.fetch_add(1, Ordering::Relaxed) + 1;
                        let path = ds.samples[i].path.clone();
                        if let Ok(mut logged) = stats.logged.lock() {
                            if logged.insert(path) {
                                eprintln!("warning: skipping unreadable image: {e}");
                            }
                        }
                        let e = e.clone();
                        let seen = stats.seen.load(Ordering::Relaxed);
                        let frac = bad as f64 / seen as f64;
                        if (seen >= 20 || bad == ds.samples.len()) && frac > cfg.max_bad_fraction {
                            return Err(Error::TooManyBad {
                                bad,
                                seen,
                                pct: frac * 100.0,
                                max: cfg.max_bad_fraction * 100.0,
                                last: e,
                            });
                        }
                    }
                }
            }
        }
        let flat: Vec<f32> = images.concat();
        let images = Tensor::from_slice(&flat).view([b as i64, 3, c, c]);
        Ok(Batch {
            images,
            labels,
            next: *pos,
        })
    }

    /// The next batch (blocks until one is decoded).
    pub fn next_batch(&mut self) -> Result<Batch> {
        match &self.rx {
            Some(rx) => rx.recv().map_err(|_| Error::Disconnected)?,
            None => Err(Error::Disconnected),
        }
    }

    pub fn stats(&self) -> &LoaderStats {
        &self.stats
    }
}
