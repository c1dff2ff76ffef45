//! The update tile by tile with only its finest levels in windows.
//!
//! [`UpdateNet::tile_halo`] is large (80 px for 4 levels) because of the
//! coarse levels: a 3×3 conv at stride 8 reaches 8 px. Their maps are small
//! (1/16 of the pixels and fewer), so they can run whole, as VGG's deep
//! layers do in Gatys's and STROTSS's staged evaluations. One update:
//!
//! 1. the windows run h^f's fine levels: their Gram sums over the cores, and
//!    the last fine level's map F assembled whole from the cores;
//! 2. h^f's coarse levels run whole from F, then their Grams, every level's
//!    cubic-term divisor, and h^b's coarse levels down to F's size: the
//!    running map R there;
//! 3. each window runs h^b's fine levels from its part of R and keeps its
//!    core.
//!
//! The fine levels see `staged_halo` px (16 for two fine levels), so the
//! result is the whole update up to rounding.
use super::{gram_per_pixel, Forward, UpdateNet};
use nst_tiling::{CoreMap, Grid};
use tch::Tensor;

/// How many of the finest levels run in windows.
const FINE: usize = 2;

impl UpdateNet {
    /// The number of levels that run in windows: [`FINE`], or fewer so that
    /// at least one level runs whole (`None` with one level).
    fn fine_levels(&self) -> Option<usize> {
        let n = self.levels.len();
        (n >= 2).then(|| FINE.min(n - 1))
    }

    /// The width of level `l`'s maps.
    fn width(&self, l: usize) -> i64 {
        self.levels[l].fwd[1].ws.size()[0]
    }

    /// The halo of [`UpdateNet::forward_staged`]'s windows: the fine
    /// levels' receptive field forward and back, as
    /// [`UpdateNet::tile_halo`] counts it for the whole net, rounded up to
    /// [`UpdateNet::tile_align`] (16 px for two fine levels). `None`: the
    /// net has one level, nothing to run whole.
    pub fn staged_halo(&self) -> Option<i64> {
        let k = self.fine_levels()? as i64;
        let r = 4 * ((1 << k) - 1) + (1 << k);
        let a = self.tile_align();
        Some((r + a - 1) / a * a)
    }

    /// Bytes the whole part of [`UpdateNet::forward_staged`] keeps for an
    /// `h × w` image: from the last fine level down, each level's map,
    /// masks and running map, counted as 16 B per channel and position.
    pub fn staged_bytes(&self, h: i64, w: i64) -> u64 {
        let Some(k) = self.fine_levels() else {
            return u64::MAX;
        };
        (k - 1..self.levels.len())
            .map(|l| 16 * self.width(l) * (h >> l) * (w >> l))
            .sum::<i64>() as u64
    }

    /// Pass 1 on `image` over `grid`: the fine levels in windows (their
    /// forward passes offered to `keep`), the coarse ones whole. Returns
    /// every level's Gram `[c, c]`, the coarse levels' forward pass and the
    /// size of the last fine level's map (`None`: no tile).
    fn staged_forward(
        &self,
        image: &Tensor,
        grid: &Grid,
        k: usize,
        mut keep: impl FnMut(usize, Forward),
    ) -> Option<(Vec<Tensor>, Forward, (i64, i64))> {
        let s = 1i64 << (k - 1);
        let mut last = CoreMap::new(grid.height, grid.width, s, image.device());
        let sums = grid.gram_sums(image, "Puy–Pérez Grams", |tile, window| {
            let fwd = self.forward_range(window, 0..k);
            let core = tile.core_in_window().scaled_down(s);
            last.put(tile, &core.crop(&fwd.maps[k - 1]));
            let maps = (fwd.maps.iter().enumerate())
                .map(|(l, f)| (f.shallow_clone(), 1i64 << l))
                .collect();
            keep(tile.index, fwd);
            Ok::<_, std::convert::Infallible>(maps)
        });
        let (Ok(sums), Some(last)) = (sums, last.into_map()) else {
            return None;
        };
        let coarse = self.forward_range(&last, k..self.levels.len());
        let mut grams = sums.grams();
        grams.extend(coarse.maps.iter().map(|f| gram_per_pixel(f).squeeze_dim(0)));
        Some((grams, coarse, (last.size()[2], last.size()[3])))
    }

    /// [`UpdateNet::grams_tiled`] with the coarse levels whole, on a grid
    /// cut with [`UpdateNet::staged_halo`].
    pub fn grams_staged(&self, image: &Tensor, grid: &Grid) -> Vec<Tensor> {
        match (self.fine_levels()).and_then(|k| self.staged_forward(image, grid, k, |_, _| ())) {
            Some((grams, _, _)) => grams.into_iter().map(|g| g.unsqueeze(0)).collect(),
            None => self.grams_tiled(image, grid),
        }
    }

    /// [`UpdateNet::forward_tiled`] with only the finest levels in the
    /// windows of `grid` (cut with [`UpdateNet::staged_halo`]) and the
    /// coarse ones whole (see the module docs). Pass 1's fine maps are kept
    /// for pass 2 within `keep` bytes (no limit when `None`).
    pub fn forward_staged(
        &self,
        x: &Tensor,
        style_grams: &[Tensor],
        grid: &Grid,
        keep: Option<u64>,
    ) -> Tensor {
        let Some(k) = self.fine_levels() else {
            return self.forward_tiled(x, style_grams, grid, keep);
        };
        let s = 1i64 << (k - 1);
        let mut kept: Vec<Option<Forward>> = (0..grid.len()).map(|_| None).collect();
        let mut used = 0u64;
        let pass1 = self.staged_forward(x, grid, k, |i, fwd| {
            let bytes = fwd.bytes();
            if keep.is_none_or(|b| used + bytes <= b) {
                used += bytes;
                kept[i] = Some(fwd);
            }
        });
        let Some((grams, coarse, size)) = pass1 else {
            return self.forward(x, style_grams);
        };
        let stats = self.stats_from_grams(grams, style_grams);
        let run = self.backward_range(&coarse, k, style_grams, &stats, None, Some(size));
        let out = x.zeros_like();
        let _ = grid.for_each(|tile| -> Result<(), std::convert::Infallible> {
            let fwd = match kept[tile.index].take() {
                Some(f) => f,
                None => self.forward_range(&tile.window.crop(x), 0..k),
            };
            let r = tile.window.scaled_down(s).crop(&run);
            let u = self.backward_range(&fwd, 0, style_grams, &stats, Some(r), None);
            let core = tile.core_in_window();
            tile.core
                .crop(&out)
                .copy_(&(core.crop(&u) * &self.step_size));
            nst_tiling::report("Puy–Pérez updates", tile.index + 1, grid.len());
            Ok(())
        });
        out
    }
}
