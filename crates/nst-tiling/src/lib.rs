//! Tiled execution of image operators, for outputs larger than memory allows.
//!
//! A [`Tiling`] cuts an `H × W` image into a [`Grid`] of [`Tile`]s. The
//! tiles' *cores* partition the image; each tile is computed on its *window*,
//! the core grown by a *halo* on every side that is inside the image, so that
//! the operator sees (nearly) what it would see on the whole image. Only the
//! core, plus a narrow *blend* band on each inner side, is kept: across each
//! boundary the two neighbours are cross-faded by linear ramps that sum to
//! one, so [`Grid::stitch`] of an exact operator reproduces the whole-image
//! result exactly, and a small residual mismatch leaves no visible step.
//!
//! Whatever a method computes over the whole image (feature means and
//! covariances, Gram matrices) must not be computed per tile: the methods
//! accumulate it over the tiles' cores first ([`Grid::for_each`]), then
//! apply it to every tile ([`Grid::stitch`]).
pub use nst_losses::stats::Moments;
use std::sync::{Arc, Mutex};

/// What a tiled pass reports after each tile: the pass (`"statistics"` or
/// `"render"`), tiles done, tiles in the pass.
pub type ProgressFn = dyn Fn(&'static str, usize, usize) + Send + Sync;

static PROGRESS: Mutex<Option<Arc<ProgressFn>>> = Mutex::new(None);

/// Sets (or, with `None`, clears) the function every tiled pass of this
/// process reports to: how binaries show a progress bar over the tiles.
pub fn set_progress(f: Option<Arc<ProgressFn>>) {
    if let Ok(mut p) = PROGRESS.lock() {
        *p = f;
    }
}

/// Tells the function of [`set_progress`] that `done` of `total` tiles of
/// `pass` are done (for methods that run passes of their own).
pub fn report(pass: &'static str, done: usize, total: usize) {
    let f = PROGRESS.lock().ok().and_then(|p| p.clone());
    if let Some(f) = f {
        f(pass, done, total);
    }
}
use tch::{Kind, Tensor};

/// A tiling that cannot be made, with what to change.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("--tile {tile} is smaller than twice the halo ({halo} px on each side) plus {align} px: use --tile {min} or more")]
    TileTooSmall {
        tile: i64,
        halo: i64,
        align: i64,
        min: i64,
    },
    #[error("--tile {tile} is larger than the image ({width}x{height}): use a smaller --tile, or leave it out to run the image whole")]
    TileTooLarge { tile: i64, width: i64, height: i64 },
    #[error("--max-memory {budget_gb:.2}G is below what {what} needs for one tile of {tile} px ({need_gb:.2}G with the whole-image buffers): raise --max-memory or lower --tile")]
    TileOverBudget {
        what: String,
        tile: i64,
        need_gb: f64,
        budget_gb: f64,
    },
    #[error("{what} cannot fit even its smallest useful tile ({tile} px: a {halo}-px halo on each side of a core at least as wide) and the {width}x{height} image's buffers in {budget_gb:.2}G; that needs {need_gb:.2}G: lower --size or raise --max-memory (or force smaller tiles with --tile, at up to (tile/core)² times the work)")]
    NothingFits {
        what: String,
        tile: i64,
        halo: i64,
        width: i64,
        height: i64,
        budget_gb: f64,
        need_gb: f64,
    },
}

/// Memory a tiled run keeps for the whole image besides the tile's work, per
/// output pixel: the fp32 input and output on the CPU (24 B), the decoded
/// file and the 8-bit copy being encoded (6 B), with room for a resize's
/// temporaries. An estimate: the 4096² AdaIN run with `--max-memory 8G`
/// peaked at 3.8 GB against the 8.6 GB this and the tile's footprint
/// budgeted (docs/high-resolution.md).
pub const WHOLE_IMAGE_BYTES_PER_PIXEL: u64 = 40;

/// How to run one image, as [`plan`] decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plan {
    /// In one piece.
    Whole,
    /// Tile by tile; `auto` when [`plan`] chose to, not the user.
    Tiled { tiling: Tiling, auto: bool },
}

impl Plan {
    pub fn tiling(&self) -> Option<&Tiling> {
        match self {
            Plan::Whole => None,
            Plan::Tiled { tiling, .. } => Some(tiling),
        }
    }
}

/// Decides how to run a `height × width` image of work `fp` within `budget`
/// bytes (no limit when `None`): the `tile` the user asked for (checked
/// against the budget); else whole when it fits; else the largest tile that
/// fits, with `halo` and `align` the method's.
pub fn plan(
    fp: &nst_core::Footprint,
    dims: (i64, i64),
    halo: i64,
    align: i64,
    tile: Option<i64>,
    budget: Option<u64>,
) -> Result<Plan, Error> {
    plan_with_state(
        fp,
        WHOLE_IMAGE_BYTES_PER_PIXEL,
        None,
        dims,
        halo,
        align,
        tile,
        budget,
    )
}

/// [`plan`] for work that keeps `state_bytes_per_pixel` of whole-image
/// state while it tiles (an optimiser's image, gradient and history, say)
/// besides the image buffers, and that has a staged path: one that runs
/// its deep part whole and tiles only its shallow part with a small halo,
/// exact and faster, when `reserve` bytes of whole maps fit in the
/// tiling's feature room ([`Tiling::cache_bytes`]). When the image does
/// not fit whole, the automatic choice is the largest tile that leaves
/// `reserve` free, if one fits; else the largest tile that fits.
#[allow(clippy::too_many_arguments)]
pub fn plan_with_state(
    fp: &nst_core::Footprint,
    state_bytes_per_pixel: u64,
    reserve: Option<u64>,
    (height, width): (i64, i64),
    halo: i64,
    align: i64,
    tile: Option<i64>,
    budget: Option<u64>,
) -> Result<Plan, Error> {
    let whole_px = (height * width).max(0) as u64;
    let need = |t: i64| fp.bytes(t, t, 1) + whole_px * state_bytes_per_pixel;
    let gb = |b: u64| b as f64 / (1u64 << 30) as f64;
    if let Some(t) = tile {
        let tiling = Tiling::new(t, halo, align)?;
        tiling.grid(height, width)?;
        let mut tiling = tiling;
        if let Some(b) = budget {
            tiling.cache_bytes = Some(b - need(tiling.tile).min(b));
            if need(tiling.tile) > b {
                return Err(Error::TileOverBudget {
                    what: fp.what.to_string(),
                    tile: tiling.tile,
                    need_gb: gb(need(tiling.tile)),
                    budget_gb: gb(b),
                });
            }
        }
        return Ok(Plan::Tiled {
            tiling,
            auto: false,
        });
    }
    let Some(b) = budget else {
        return Ok(Plan::Whole);
    };
    if fp.bytes(width, height, 1) <= b {
        return Ok(Plan::Whole);
    }
    // The smallest tile worth running: its core at least as wide as the
    // halo, so a tile's work is at most 9× its core's. (Below that the
    // halos dominate: Optimal Textures at 1024² in 1G used to pick 288-px
    // tiles around 32-px cores, 576 tiles and 80× the work.) An image
    // smaller than that is cut at the smallest tile that works at all.
    let min = match Tiling::min_useful_tile(halo, align) {
        t if t <= height.max(width) => t,
        _ => Tiling::min_tile(halo, align),
    };
    if need(min) > b {
        return Err(Error::NothingFits {
            what: fp.what.to_string(),
            tile: min,
            halo,
            width,
            height,
            budget_gb: gb(b),
            need_gb: gb(need(min)),
        });
    }
    // The largest aligned tile within the budget (need() grows with t),
    // leaving the reserve free when a tile can.
    let largest = |room: u64| {
        let (mut lo, mut hi) = (min / align, height.max(width) / align);
        while lo < hi {
            let mid = (lo + hi + 1) / 2;
            if need(mid * align) <= room {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    };
    let lo = match reserve.and_then(|r| b.checked_sub(r)) {
        Some(room) if need(min) <= room => largest(room),
        _ => largest(b),
    };
    let mut tiling = Tiling::new(lo * align, halo, align)?;
    tiling.cache_bytes = Some(b - need(tiling.tile).min(b));
    Ok(Plan::Tiled { tiling, auto: true })
}

/// An axis-aligned rectangle in pixels: rows `y..y+h`, columns `x..x+w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub y: i64,
    pub x: i64,
    pub h: i64,
    pub w: i64,
}

impl Rect {
    /// The part of `t: [.., .., H, W]` this rectangle covers (a view).
    pub fn crop(&self, t: &Tensor) -> Tensor {
        t.narrow(-2, self.y, self.h).narrow(-1, self.x, self.w)
    }

    /// This rectangle at `1/factor` of the resolution (for feature maps of
    /// stride `factor`; exact when the grid was aligned to it).
    pub fn scaled_down(&self, factor: i64) -> Rect {
        Rect {
            y: self.y / factor,
            x: self.x / factor,
            h: self.h / factor,
            w: self.w / factor,
        }
    }

    /// This rectangle in the coordinates of `outer`, which contains it.
    pub fn within(&self, outer: &Rect) -> Rect {
        Rect {
            y: self.y - outer.y,
            x: self.x - outer.x,
            ..*self
        }
    }

    pub fn pixels(&self) -> i64 {
        self.h * self.w
    }
}

/// One tile: the `core` it owns in the output and the `window` it is
/// computed on (the core and its halo, clipped to the image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub index: usize,
    pub core: Rect,
    pub window: Rect,
}

impl Tile {
    /// The core in the window's coordinates: what to crop from a result
    /// computed on the window.
    pub fn core_in_window(&self) -> Rect {
        self.core.within(&self.window)
    }
}

/// How to cut images into tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    /// The largest window, in px (core plus halos).
    pub tile: i64,
    /// Context on each inner side of a core, in px.
    pub halo: i64,
    /// Every core and window boundary is a multiple of this (the stride of
    /// the deepest feature map the operator uses, so that features crop
    /// exactly).
    pub align: i64,
    /// Half-width of the cross-fade band across each boundary, in px
    /// (at most the halo).
    pub blend: i64,
    /// Bytes the tiled run may spend keeping encoded features between its
    /// passes ([`FeatureCache`]); `None`: no limit.
    pub cache_bytes: Option<u64>,
}

fn round_up(v: i64, m: i64) -> i64 {
    (v + m - 1) / m * m
}

impl Tiling {
    /// `tile` is rounded down and `halo` up to multiples of `align`; the
    /// blend band is a quarter of the halo (at least 1 px when there is a
    /// halo).
    pub fn new(tile: i64, halo: i64, align: i64) -> Result<Self, Error> {
        let align = align.max(1);
        let halo = round_up(halo.max(0), align);
        let tile_r = tile / align * align;
        let min = 2 * halo + align;
        if tile_r < min {
            return Err(Error::TileTooSmall {
                tile,
                halo,
                align,
                min,
            });
        }
        Ok(Self {
            tile: tile_r,
            halo,
            align,
            blend: if halo > 0 { (halo / 4).max(1) } else { 0 },
            cache_bytes: None,
        })
    }

    /// The smallest tile this halo allows.
    pub fn min_tile(halo: i64, align: i64) -> i64 {
        2 * round_up(halo, align.max(1)) + align.max(1)
    }

    /// The smallest tile an automatic plan picks: a core at least as wide as
    /// the halo (both rounded up to `align`), so that a tile's work is at
    /// most 9× its core's.
    pub fn min_useful_tile(halo: i64, align: i64) -> i64 {
        let h = round_up(halo, align.max(1)).max(align.max(1));
        3 * h
    }

    /// Cuts a `height × width` image. The tile may not exceed the image's
    /// long side (a tile as large as the image runs it whole).
    pub fn grid(&self, height: i64, width: i64) -> Result<Grid, Error> {
        if self.tile > height.max(width) {
            return Err(Error::TileTooLarge {
                tile: self.tile,
                width,
                height,
            });
        }
        Ok(self.grid_unchecked(height, width))
    }

    /// [`Tiling::grid`], or one whole-image tile when the image fits in a
    /// tile (for secondary images such as a style, whose size the user did
    /// not choose with the tile in mind).
    pub fn grid_or_whole(&self, height: i64, width: i64) -> Grid {
        if self.tile >= height.max(width) {
            Grid::whole(height, width)
        } else {
            self.grid_unchecked(height, width)
        }
    }

    /// [`Tiling::grid`] with the interior boundaries moved by `(dy, dx)` px
    /// (taken modulo the interior cores' size and rounded down to `align`),
    /// for work that re-cuts the image at every step so that no boundary
    /// stays in one place (tiled optimisation). Any shift is a valid grid:
    /// cores partition the image, windows stay within the tile.
    pub fn grid_shifted(
        &self,
        height: i64,
        width: i64,
        (dy, dx): (i64, i64),
    ) -> Result<Grid, Error> {
        self.grid(height, width)?;
        Ok(self.grid_from(
            height,
            width,
            self.split_shifted(height, dy),
            self.split_shifted(width, dx),
        ))
    }

    /// The cores along one axis with every interior boundary moved by the
    /// same amount: [`Tiling::split`]'s cores (one more when their spare
    /// capacity would let the boundaries move by less than two alignment
    /// steps), shifted within what the two edge cores can give or take;
    /// `shift` picks the amount (taken modulo the range).
    fn split_shifted(&self, len: i64, shift: i64) -> Vec<(i64, i64)> {
        let regular = self.split(len);
        if regular.len() < 2 {
            return regular;
        }
        let (edge, a) = (self.tile - self.halo, self.align);
        let range = |cores: &[(i64, i64)]| {
            let (f, l) = (
                cores[0].1 - cores[0].0,
                cores[cores.len() - 1].1 - cores[cores.len() - 1].0,
            );
            // s moves every interior boundary: the first core becomes f + s,
            // the last l − s; both stay within [align, edge].
            ((a - f).max(l - edge), (edge - f).min(l - a))
        };
        let mut cores = regular;
        let (mut lo, mut hi) = range(&cores);
        if hi - lo < 2 * a {
            cores = self.split_into(len, cores.len() + 1);
            (lo, hi) = range(&cores);
        }
        let span = (hi - lo).max(0) / a + 1;
        let s = lo.div_euclid(a) * a + shift.rem_euclid(span) * a;
        let s = s.clamp(lo, hi.max(lo));
        let s = if s % a != 0 { (s / a) * a } else { s };
        let n = cores.len();
        cores
            .iter()
            .enumerate()
            .map(|(i, &(c0, c1))| {
                let b0 = if i == 0 { 0 } else { c0 + s };
                let b1 = if i + 1 == n { len } else { c1 + s };
                (b0, b1)
            })
            .collect()
    }

    fn grid_unchecked(&self, height: i64, width: i64) -> Grid {
        self.grid_from(height, width, self.split(height), self.split(width))
    }

    fn grid_from(
        &self,
        height: i64,
        width: i64,
        rows: Vec<(i64, i64)>,
        cols: Vec<(i64, i64)>,
    ) -> Grid {
        let mut tiles = Vec::with_capacity(rows.len() * cols.len());
        for &(y0, y1) in &rows {
            for &(x0, x1) in &cols {
                let (wy0, wy1) = ((y0 - self.halo).max(0), (y1 + self.halo).min(height));
                let (wx0, wx1) = ((x0 - self.halo).max(0), (x1 + self.halo).min(width));
                tiles.push(Tile {
                    index: tiles.len(),
                    core: Rect {
                        y: y0,
                        x: x0,
                        h: y1 - y0,
                        w: x1 - x0,
                    },
                    window: Rect {
                        y: wy0,
                        x: wx0,
                        h: wy1 - wy0,
                        w: wx1 - wx0,
                    },
                });
            }
        }
        let blend = tiles
            .iter()
            .map(|t| t.core.h.min(t.core.w) / 2)
            .min()
            .unwrap_or(0)
            .min(self.blend);
        Grid {
            height,
            width,
            tiles,
            blend,
        }
    }

    /// The cores along one axis of length `len`: as few as the window size
    /// allows (edge cores have a halo on one side only), of nearly equal
    /// share of their capacity, boundaries on multiples of `align`.
    fn split(&self, len: i64) -> Vec<(i64, i64)> {
        if len <= self.tile {
            return vec![(0, len)];
        }
        let edge = self.tile - self.halo;
        let mid = self.tile - 2 * self.halo;
        let n = if len <= 2 * edge {
            2
        } else {
            2 + (len - 2 * edge + mid - 1) / mid
        };
        self.split_into(len, n as usize)
    }

    /// `len` cut into at least `n` cores of nearly equal share of their
    /// capacity (edge cores have a halo on one side only), boundaries on
    /// multiples of `align`; more when rounding leaves a core over capacity.
    fn split_into(&self, len: i64, mut n: usize) -> Vec<(i64, i64)> {
        let edge = self.tile - self.halo;
        let mid = self.tile - 2 * self.halo;
        loop {
            let caps: Vec<i64> = (0..n)
                .map(|i| if i == 0 || i == n - 1 { edge } else { mid })
                .collect();
            let total: i64 = caps.iter().sum();
            let mut bounds = vec![0i64];
            let mut cum = 0i64;
            for c in &caps[..caps.len() - 1] {
                cum += c;
                let b = (cum as f64 * len as f64 / total as f64 / self.align as f64).round() as i64
                    * self.align;
                bounds.push(b);
            }
            bounds.push(len);
            let ok = bounds
                .windows(2)
                .zip(&caps)
                .all(|(b, &c)| b[1] > b[0] && b[1] - b[0] <= c);
            if ok {
                return bounds.windows(2).map(|b| (b[0], b[1])).collect();
            }
            n += 1;
        }
    }
}

/// Statistics of one image's feature maps summed over the cores of a tile
/// grid ([`Grid::gram_sums`]): Σ F Fᵀ (f64, `[C, C]`) and the number of
/// positions, per map.
#[derive(Debug)]
pub struct GramSums {
    pub ffs: Vec<Tensor>,
    pub counts: Vec<i64>,
}

impl GramSums {
    /// The Gram matrices Σ F Fᵀ / N, `[C, C]` in fp32.
    pub fn grams(&self) -> Vec<Tensor> {
        self.ffs
            .iter()
            .zip(&self.counts)
            .map(|(ff, &n)| (ff / n.max(1) as f64).to_kind(tch::Kind::Float))
            .collect()
    }
}

/// The tiles of one image and how to put their results back together.
#[derive(Debug, Clone)]
pub struct Grid {
    pub height: i64,
    pub width: i64,
    pub tiles: Vec<Tile>,
    /// Half-width of the cross-fade band actually used.
    pub blend: i64,
}

impl Grid {
    /// One tile covering the whole image (no halo, no blending).
    pub fn whole(height: i64, width: i64) -> Grid {
        Tiling {
            tile: height.max(width),
            halo: 0,
            align: 1,
            blend: 0,
            cache_bytes: None,
        }
        .grid_unchecked(height, width)
    }

    pub fn len(&self) -> usize {
        self.tiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tiles.is_empty()
    }

    /// Calls `f` on every tile in order (to accumulate statistics over the
    /// cores, say), stopping at the first error.
    pub fn for_each<E>(&self, mut f: impl FnMut(&Tile) -> Result<(), E>) -> Result<(), E> {
        self.tiles.iter().try_for_each(&mut f)
    }

    /// Channel moments of the features `encode` computes on each window,
    /// taken over the cores only, so each pixel counts once: the
    /// whole-image statistics. `stride` is the features' (the grid must be
    /// aligned to it); `full` keeps the covariance. The windows' features
    /// are kept in `cache` while it has room, for the pass that uses them.
    pub fn feature_moments<E>(
        &self,
        image: &Tensor,
        stride: i64,
        full: bool,
        cache: &mut FeatureCache,
        mut encode: impl FnMut(&Tensor) -> Result<Tensor, E>,
    ) -> Result<Moments, E> {
        let mut m = Moments::new(full);
        self.for_each(|t| {
            let f = encode(&t.window.crop(image))?;
            m.add(&t.core_in_window().scaled_down(stride).crop(&f));
            cache.offer(t.index, f);
            report("statistics", t.index + 1, self.len());
            Ok(())
        })?;
        Ok(m)
    }

    /// Σ F Fᵀ (f64, `[C, C]`) and the number of positions of every map
    /// `maps` computes on each window, taken over the cores only: divided
    /// by its count, each is the whole image's Gram matrix. `maps(tile,
    /// window)` returns the maps `[1, C, h, w]` of the tile's window (the
    /// crop of `image`) with their strides (the grid must be aligned to
    /// them); `pass` names the progress line.
    pub fn gram_sums<E>(
        &self,
        image: &Tensor,
        pass: &'static str,
        mut maps: impl FnMut(&Tile, &Tensor) -> Result<Vec<(Tensor, i64)>, E>,
    ) -> Result<GramSums, E> {
        let mut sums = GramSums {
            ffs: Vec::new(),
            counts: Vec::new(),
        };
        self.for_each(|t| {
            for (l, (f, stride)) in maps(t, &t.window.crop(image))?.into_iter().enumerate() {
                let r = t.core_in_window().scaled_down(stride).crop(&f);
                let r = r.to_kind(tch::Kind::Double).reshape([r.size()[1], -1]);
                let ff = r.matmul(&r.transpose(0, 1));
                if l == sums.ffs.len() {
                    sums.ffs.push(ff);
                    sums.counts.push(r.size()[1]);
                } else {
                    sums.ffs[l] += ff;
                    sums.counts[l] += r.size()[1];
                }
            }
            report(pass, t.index + 1, self.len());
            Ok(())
        })?;
        Ok(sums)
    }

    /// The gradient of a sum of per-window terms, window by window: each
    /// window of `x` (moved to `device`, detached, with gradients) goes to
    /// `surrogate(tile, window)`, and the gradient of the scalar it returns
    /// (`None`: the window adds nothing) with respect to the window is
    /// added into `grad` (`x`'s size) at the window's place. `pass` names
    /// the progress line.
    pub fn window_grads<E>(
        &self,
        x: &Tensor,
        device: tch::Device,
        pass: &'static str,
        grad: &Tensor,
        mut surrogate: impl FnMut(&Tile, &Tensor) -> Result<Option<Tensor>, E>,
    ) -> Result<(), E> {
        self.for_each(|t| {
            let xw = t
                .window
                .crop(x)
                .to_device(device)
                .detach()
                .set_requires_grad(true);
            if let Some(sur) = surrogate(t, &xw)? {
                let gw = Tensor::run_backward(&[&sur], &[&xw], false, false);
                let mut dst = t.window.crop(grad);
                dst += gw[0].to_device(grad.device());
            }
            report(pass, t.index + 1, self.len());
            Ok(())
        })
    }

    /// How visible the tile boundaries are in `image: [1, C, H, W]` made
    /// with this grid: the mean absolute difference between the two pixel
    /// rows (or columns) on either side of each boundary between cores,
    /// over the same between every other pair of neighbouring rows and
    /// columns. About 1 when there are no seams.
    pub fn seam_ratio(&self, image: &Tensor) -> f64 {
        let bounds = |at: fn(&Tile) -> i64| {
            let mut b: Vec<i64> = self.tiles.iter().map(at).filter(|&v| v > 0).collect();
            b.sort_unstable();
            b.dedup();
            b
        };
        let (rows, cols) = (bounds(|t| t.core.y), bounds(|t| t.core.x));
        let x = image.to_kind(Kind::Double);
        // Differences between neighbours: dy[i] is row i+1 minus row i.
        let dy = (x.narrow(2, 1, self.height - 1) - x.narrow(2, 0, self.height - 1))
            .abs()
            .mean_dim([0i64, 1, 3].as_slice(), false, Kind::Double);
        let dx = (x.narrow(3, 1, self.width - 1) - x.narrow(3, 0, self.width - 1))
            .abs()
            .mean_dim([0i64, 1, 2].as_slice(), false, Kind::Double);
        let split = |d: &Tensor, at: &[i64]| -> (f64, usize, f64, usize) {
            let v = Vec::<f64>::try_from(d).unwrap_or_default();
            let (mut s_in, mut n_in, mut s_out, mut n_out) = (0.0, 0, 0.0, 0);
            for (i, val) in v.iter().enumerate() {
                if at.contains(&(i as i64 + 1)) {
                    s_in += val;
                    n_in += 1;
                } else {
                    s_out += val;
                    n_out += 1;
                }
            }
            (s_in, n_in, s_out, n_out)
        };
        let (a, na, b, nb) = split(&dy, &rows);
        let (c, nc, d, nd) = split(&dx, &cols);
        if na + nc == 0 {
            return 1.0;
        }
        ((a + c) / (na + nc) as f64) / ((b + d) / (nb + nd).max(1) as f64).max(1e-12)
    }

    /// The tile's weights along one axis over its window: 1 inside the
    /// core, ramps across the blend bands at inner boundaries, 0 beyond.
    fn ramp(&self, start: i64, len: i64, core0: i64, core1: i64, full: i64) -> Tensor {
        let b = self.blend as f64;
        let w: Vec<f32> = (start..start + len)
            .map(|p| {
                let c = p as f64 + 0.5;
                let up = if core0 == 0 || b == 0.0 {
                    if p >= core0 {
                        1.0
                    } else {
                        0.0
                    }
                } else {
                    ((c - (core0 as f64 - b)) / (2.0 * b)).clamp(0.0, 1.0)
                };
                let down = if core1 == full || b == 0.0 {
                    if p < core1 {
                        1.0
                    } else {
                        0.0
                    }
                } else {
                    (1.0 - (c - (core1 as f64 - b)) / (2.0 * b)).clamp(0.0, 1.0)
                };
                (up * down) as f32
            })
            .collect();
        Tensor::from_slice(&w)
    }

    /// Runs `f` on every tile and assembles its results: `f` returns the
    /// result on the tile's window, `[1, C, window.h, window.w]` (any device
    /// and float kind). Returns `[1, C, H, W]` fp32 on the CPU, each pixel
    /// the blend of the tiles whose core or blend band covers it (their
    /// weights sum to one).
    pub fn stitch<E>(
        &self,
        channels: i64,
        mut f: impl FnMut(&Tile) -> Result<Tensor, E>,
    ) -> Result<Tensor, E> {
        let out = Tensor::zeros(
            [1, channels, self.height, self.width],
            (Kind::Float, tch::Device::Cpu),
        );
        let b = self.blend;
        for tile in &self.tiles {
            let r = f(tile)?;
            let (c, win) = (&tile.core, &tile.window);
            // The kept region: the core plus the blend band on inner sides.
            let y0 = if c.y == 0 { 0 } else { c.y - b };
            let x0 = if c.x == 0 { 0 } else { c.x - b };
            let y1 = if c.y + c.h == self.height {
                self.height
            } else {
                c.y + c.h + b
            };
            let x1 = if c.x + c.w == self.width {
                self.width
            } else {
                c.x + c.w + b
            };
            let keep = Rect {
                y: y0,
                x: x0,
                h: y1 - y0,
                w: x1 - x0,
            };
            let wy = self.ramp(y0, keep.h, c.y, c.y + c.h, self.height);
            let wx = self.ramp(x0, keep.w, c.x, c.x + c.w, self.width);
            let weight = wy.unsqueeze(1) * wx.unsqueeze(0);
            let part = keep
                .within(win)
                .crop(&r)
                .to_device(tch::Device::Cpu)
                .to_kind(Kind::Float)
                * weight;
            let mut dst = keep.crop(&out);
            dst += part;
            report("render", tile.index + 1, self.len());
        }
        Ok(out)
    }
}

/// A whole-image map at one stride, assembled from the tiles' cores: the
/// map is allocated (on `device`, with the first core's channels and kind)
/// when the first core arrives.
#[derive(Debug)]
pub struct CoreMap {
    height: i64,
    width: i64,
    stride: i64,
    device: tch::Device,
    map: Option<Tensor>,
}

impl CoreMap {
    /// For an image of `height × width` px whose maps have `stride`.
    pub fn new(height: i64, width: i64, stride: i64, device: tch::Device) -> Self {
        Self {
            height,
            width,
            stride,
            device,
            map: None,
        }
    }

    /// Writes `core` (`[1, C, h, w]`, the features of `tile`'s core) into
    /// its place.
    pub fn put(&mut self, tile: &Tile, core: &Tensor) {
        let s = self.stride;
        let size = [1, core.size()[1], self.height / s, self.width / s];
        let (kind, device) = (core.kind(), self.device);
        let map = self
            .map
            .get_or_insert_with(|| Tensor::zeros(size, (kind, device)));
        tile.core.scaled_down(s).crop(map).copy_(core);
    }

    /// The map, `None` if no core arrived.
    pub fn into_map(self) -> Option<Tensor> {
        self.map
    }
}

/// The features of a grid's windows, computed once for the statistics and
/// kept for the pass that transforms and decodes them, within a byte limit
/// (held on the CPU, so a GPU's memory holds one tile's work only). Saves
/// the second encoder pass; without room, [`FeatureCache::take`] returns
/// `None` and the caller encodes again.
#[derive(Debug, Default)]
pub struct FeatureCache {
    limit: Option<u64>,
    used: u64,
    feats: Vec<Option<Tensor>>,
}

impl FeatureCache {
    /// A cache holding at most `limit` bytes (no limit when `None`).
    pub fn new(limit: Option<u64>) -> Self {
        Self {
            limit,
            used: 0,
            feats: Vec::new(),
        }
    }

    /// A cache that keeps nothing.
    pub fn none() -> Self {
        Self::new(Some(0))
    }

    /// Keeps `f` as tile `index`'s features if there is room.
    pub fn offer(&mut self, index: usize, f: Tensor) {
        let bytes = (f.numel() * f.kind().elt_size_in_bytes()) as u64;
        if self.limit.is_some_and(|l| self.used + bytes > l) {
            return;
        }
        if self.feats.len() <= index {
            self.feats.resize_with(index + 1, || None);
        }
        self.used += bytes;
        self.feats[index] = Some(f.to_device(tch::Device::Cpu));
    }

    /// Tile `index`'s features, if kept (each is handed out once).
    pub fn take(&mut self, index: usize) -> Option<Tensor> {
        let f = self.feats.get_mut(index)?.take()?;
        self.used -= (f.numel() * f.kind().elt_size_in_bytes()) as u64;
        Some(f)
    }
}

/// Parses a memory size: a number of bytes with an optional K, M, G or T
/// suffix (powers of 1024; a trailing "B" or "iB" is accepted): `3G`,
/// `512M`, `1.5GiB`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let upper = t.to_ascii_uppercase();
    let body = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let (num, mult) = match body.chars().last() {
        Some('K') => (&body[..body.len() - 1], 1u64 << 10),
        Some('M') => (&body[..body.len() - 1], 1 << 20),
        Some('G') => (&body[..body.len() - 1], 1 << 30),
        Some('T') => (&body[..body.len() - 1], 1 << 40),
        _ => (body, 1),
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok((v * mult as f64) as u64),
        _ => Err(format!(
            "{s:?} is not a memory size: use a number with K, M or G, such as 3G or 512M"
        )),
    }
}

#[cfg(test)]
mod tests;
