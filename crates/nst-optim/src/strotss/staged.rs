//! STROTSS tile by tile with VGG's deep layers whole: the staged step, as
//! Gatys's staged evaluation ([`crate::gatys::Gatys::evaluate_staged`]).
//!
//! A hypercolumn reads every configured layer at the sampled pixels. The
//! layers up to [`HANDOVER`] (relu3_1) see 24 px of the image, so windows
//! with [`HANDOVER_HALO`] give their core features exactly; the deeper
//! layers' maps are small (1/16 of the pixels and fewer), and VGG continues
//! whole from the handover map. One step:
//!
//! 1. the windows, without gradients, give the shallow layers' rows at the
//!    samples in their cores and the whole handover map;
//! 2. VGG goes on whole from that map, with gradients, to the deep layers'
//!    rows; the loss is computed whole from the rows, and its backward pass
//!    gives the gradients of the shallow rows and of the handover map;
//! 3. each window runs forward and backward on ⟨∂L/∂rows, rows⟩ at its
//!    samples plus ⟨∂L/∂F, F⟩ at its handover core.
//!
//! The gradient is the whole image's up to float rounding, and the deep
//! layers run once per step instead of twice in windows with a 96-px halo.
//! The content's maps, fixed for a scale, are kept whole, encoded the same
//! way once.
use super::{in_core, Strotss, ALIGN, MAPS};
use crate::{Error, Result};
use nst_losses::hypercolumns;
use nst_tiling::{CoreMap, Grid, Tiling};
use nst_vgg::{Tap, HANDOVER, HANDOVER_HALO};
use tch::{Kind, Tensor};

/// The output's hypercolumns of one staged step ([`Strotss::sample_staged`]).
pub(crate) struct StagedRows {
    /// `[N, ΣC]`: the shallow layers' rows, then the deep layers'.
    pub rows: Tensor,
    /// The shallow layers' rows, a leaf (`None` without shallow layers).
    shallow: Option<Tensor>,
    /// The whole handover map, a leaf.
    map: Tensor,
}

impl Strotss<'_> {
    /// Whether `tap` lies deeper than the handover.
    fn is_deep(&self, tap: Tap) -> bool {
        let arch = self.vgg.arch();
        arch.position(tap) > arch.position(HANDOVER)
    }

    /// The configured layers up to the handover, in their order.
    fn shallow_taps(&self) -> Vec<Tap> {
        let l = self.cfg.layers.iter().copied();
        l.filter(|&t| !self.is_deep(t)).collect()
    }

    /// The configured layers deeper than the handover, in their order.
    fn deep_taps(&self) -> Vec<Tap> {
        let l = self.cfg.layers.iter().copied();
        l.filter(|&t| self.is_deep(t)).collect()
    }

    /// What a window computes: the shallow layers, and the handover.
    fn window_taps(&self) -> Vec<Tap> {
        let mut t = self.shallow_taps();
        if !t.contains(&HANDOVER) {
            t.push(HANDOVER);
        }
        t
    }

    /// The calibrated rows of the first `n` maps of a window's `f` (the
    /// shallow layers) at `coords`, pixels of the whole `hw` image in the
    /// tile's core.
    fn shallow_rows(
        &self,
        f: &nst_vgg::Features,
        n: usize,
        coords: &Tensor,
        hw: (i64, i64),
        tile: &nst_tiling::Tile,
    ) -> Tensor {
        let maps: Vec<Tensor> = f.iter().take(n).map(|(_, m)| m.shallow_clone()).collect();
        self.window_rows(&maps, coords, hw, &tile.window)
    }

    /// Bytes a staged scale of `h × w` keeps whole: the content's maps at
    /// every configured layer, in the VGG's precision, and the middle of a
    /// step, counted as Gatys's ([`crate::gatys::tiled::staged_bytes`]: VGG
    /// from the handover on with its gradients).
    pub fn staged_bytes(&self, h: i64, w: i64) -> u64 {
        let arch = self.vgg.arch();
        let elem = self.vgg.precision().kind().elt_size_in_bytes() as i64;
        let maps: i64 = (self.cfg.layers.iter())
            .map(|&t| {
                let s = arch.stride(t);
                arch.channels(t) * (h / s) * (w / s) * elem
            })
            .sum();
        maps as u64 + crate::gatys::tiled::staged_bytes(self.vgg, h, w)
    }

    /// The tiling of a staged scale: `tiling`'s tiles with
    /// [`HANDOVER_HALO`], when some configured layer lies deeper than the
    /// handover, the shallow layers all come before the deep ones (a
    /// hypercolumn is then the shallow rows followed by the deep), and
    /// [`Strotss::staged_bytes`] fits in the tiling's cache budget. `None`:
    /// the window path.
    pub fn staged_tiling(&self, tiling: &Tiling, h: i64, w: i64) -> Option<Tiling> {
        let need = self.staged_reserve(h, w)?;
        let fits = tiling.cache_bytes.is_none_or(|c| need <= c);
        let t = Tiling::new(tiling.tile, HANDOVER_HALO, ALIGN).ok()?;
        fits.then_some(t)
    }

    /// [`Strotss::staged_bytes`] when a scale of `h × w` can run staged
    /// (some layer deeper than the handover, the shallow ones first), for
    /// a memory plan to leave room for it; else `None`.
    pub fn staged_reserve(&self, h: i64, w: i64) -> Option<u64> {
        let layers = &self.cfg.layers;
        let deep = layers.iter().any(|&t| self.is_deep(t));
        let ordered = layers
            .windows(2)
            .all(|p| !self.is_deep(p[0]) || self.is_deep(p[1]));
        (deep && ordered).then(|| self.staged_bytes(h, w))
    }

    /// Runs the windows of `grid` (cut with [`HANDOVER_HALO`]) on `image`
    /// without gradients: `each(tile, maps)` gets the window's maps at
    /// [`Strotss::window_taps`], and the handover's cores are assembled
    /// into the whole map, which is returned.
    fn shallow_pass(
        &self,
        image: &Tensor,
        grid: &Grid,
        pass: &'static str,
        mut each: impl FnMut(&nst_tiling::Tile, &nst_vgg::Features),
    ) -> Result<Tensor> {
        let d = self.vgg.device();
        let taps = self.window_taps();
        let s = self.vgg.arch().stride(HANDOVER);
        let mut map = CoreMap::new(grid.height, grid.width, s, d);
        tch::no_grad(|| {
            grid.for_each(|tile| -> Result<()> {
                let win = tile.window.crop(image).to_device(d);
                let f = self.vgg.encode_with(&win, &taps, MAPS)?;
                map.put(
                    tile,
                    &tile.core_in_window().scaled_down(s).crop(&f[HANDOVER]),
                );
                each(tile, &f);
                nst_tiling::report(pass, tile.index + 1, grid.len());
                Ok(())
            })
        })?;
        let map = map
            .into_map()
            .ok_or_else(|| Error::Config("no tiles".into()))?;
        Ok(nst_core::precision::channels_last(&map))
    }

    /// The configured maps of `image`, as [`Strotss::features`] gives them
    /// up to float rounding, encoded on `grid` (cut with
    /// [`HANDOVER_HALO`]): the shallow layers window by window, their cores
    /// assembled whole, and the deep layers whole from the handover map.
    /// Without gradients.
    pub(crate) fn features_staged(&self, image: &Tensor, grid: &Grid) -> Result<Vec<Tensor>> {
        let arch = self.vgg.arch();
        let (h, w, d) = (grid.height, grid.width, self.vgg.device());
        let shallow = self.shallow_taps();
        let mut maps: Vec<CoreMap> = (shallow.iter())
            .map(|&t| CoreMap::new(h, w, arch.stride(t), d))
            .collect();
        let hand = self.shallow_pass(image, grid, "STROTSS features", |tile, f| {
            for (m, &t) in maps.iter_mut().zip(&shallow) {
                m.put(
                    tile,
                    &tile
                        .core_in_window()
                        .scaled_down(arch.stride(t))
                        .crop(&f[t]),
                );
            }
        })?;
        let mut out = Vec::with_capacity(self.cfg.layers.len());
        for m in maps {
            let m = m
                .into_map()
                .ok_or_else(|| Error::Config("no tiles".into()))?;
            out.push(nst_core::precision::channels_last(&m));
        }
        let deep = self.deep_taps();
        let f = tch::no_grad(|| self.vgg.encode_from_with(&hand, HANDOVER, &deep, MAPS))?;
        out.extend(deep.iter().map(|&t| f[t].shallow_clone()));
        Ok(out)
    }

    /// Steps 1 and 2 (up to the loss) of a staged step: the calibrated
    /// hypercolumns of `x` at `coords`, the shallow layers' from the
    /// windows of `grid`, the deep layers' from VGG continued whole, with
    /// gradients, from the handover map.
    pub(crate) fn sample_staged(
        &self,
        x: &Tensor,
        coords: &Tensor,
        grid: &Grid,
    ) -> Result<StagedRows> {
        let hw = (grid.height, grid.width);
        let n_shallow = self.shallow_taps().len();
        let mut shallow: Option<Tensor> = None;
        let map = self.shallow_pass(x, grid, "STROTSS samples", |tile, f| {
            let Some(idx) = in_core(coords, &tile.core) else {
                return;
            };
            if n_shallow == 0 {
                return;
            }
            let rows = self.shallow_rows(f, n_shallow, &coords.index_select(0, &idx), hw, tile);
            let n = coords.size()[0];
            let all = shallow.get_or_insert_with(|| {
                Tensor::zeros([n, rows.size()[1]], (Kind::Float, rows.device()))
            });
            let _ = all.index_copy_(0, &idx, &rows);
        })?;
        let map = map.set_requires_grad(true);
        let deep = self.deep_taps();
        let f = self.vgg.encode_from_with(&map, HANDOVER, &deep, MAPS)?;
        let maps: Vec<&Tensor> = deep.iter().map(|&t| &f[t]).collect();
        let deep_rows = hypercolumns(&maps, coords, hw) * self.feature_gain();
        let shallow = shallow.map(|s| s.set_requires_grad(true));
        let rows = match &shallow {
            Some(s) => Tensor::cat(&[s, &deep_rows], 1),
            None => deep_rows,
        };
        Ok(StagedRows { rows, shallow, map })
    }

    /// Step 3: the gradient with respect to `x` of the loss whose backward
    /// pass has reached `rows` (from [`Strotss::sample_staged`] on the same
    /// `x`, `coords` and `grid`), window by window.
    pub(crate) fn backprop_staged(
        &self,
        x: &Tensor,
        coords: &Tensor,
        rows: &StagedRows,
        grid: &Grid,
    ) -> Result<Tensor> {
        let hw = (grid.height, grid.width);
        let taps = self.window_taps();
        let n_shallow = self.shallow_taps().len();
        let s = self.vgg.arch().stride(HANDOVER);
        let g_rows = rows.shallow.as_ref().map(|r| r.grad());
        let g_map = rows.map.grad();
        let g_map = match g_map.defined() {
            true => g_map.to_kind(Kind::Float),
            false => rows.map.zeros_like().to_kind(Kind::Float),
        };
        let gx = x.zeros_like();
        let d = self.vgg.device();
        grid.window_grads(x, d, "STROTSS gradients", &gx, |tile, xw| -> Result<_> {
            let f = self.vgg.encode_with(xw, &taps, MAPS)?;
            let core = tile.core_in_window().scaled_down(s).crop(&f[HANDOVER]);
            let g = tile.core.scaled_down(s).crop(&g_map);
            let mut sur = (core.to_kind(Kind::Float) * g).sum(Kind::Float);
            if let (Some(gr), Some(idx)) = (&g_rows, in_core(coords, &tile.core)) {
                let r = self.shallow_rows(&f, n_shallow, &coords.index_select(0, &idx), hw, tile);
                sur += (r * gr.index_select(0, &idx)).sum(Kind::Float);
            }
            Ok(Some(sur))
        })?;
        Ok(gx)
    }
}
