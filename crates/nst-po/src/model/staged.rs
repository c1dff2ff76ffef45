//! The texture solvers tile by tile with only their fine part in windows.
//!
//! [`PseudoOptimizer::tile_halo`] is wide (272 px for the published
//! network) because of the stage networks' coarse levels (a 3×3 conv at
//! stride 16 reaches 16 px) and VGG's depth. From stride 4 on, both have
//! maps of 1/16 of the pixels or fewer, so those can run whole, as VGG's
//! deep layers do in Gatys's and STROTSS's staged evaluations. One stage:
//!
//! 1. the windows run VGG to [`HANDOVER`] (`relu3_1`, stride 4): the Gram
//!    sums of the texture layers up to it over the cores, and the maps at
//!    stride 4 (with `relu3_1` itself when deeper layers follow) assembled
//!    whole from the cores;
//! 2. VGG's deeper layers run whole from `relu3_1`, with their Grams; then
//!    the gradient maps of the layers at stride 4 and deeper, and the stage
//!    network's levels at those strides, whole: the running map M at
//!    stride 4;
//! 3. each window runs VGG's fine layers (strides 1 and 2) again, their
//!    gradient maps with the whole image's Grams, and the network's fine
//!    levels from M; its core's update is kept.
//!
//! The windows need [`PseudoOptimizer::staged_halo`] px (32 for the
//! published network), and the result is the whole run's up to rounding:
//! upsampling inside a window picks the rows the whole image's does, also
//! when a side is not a multiple of the deepest stride.
use super::PseudoOptimizer;
use crate::net::PoNet;
use crate::texture::TargetGrams;
use nst_model::{Error, Result};
use nst_tiling::{CoreMap, Grid, Rect};
use nst_vgg::{LayerKind, Tap, HANDOVER, HANDOVER_HALO};
use tch::{Kind, Tensor};

/// Where one stage's texture layers run: layers `..fine` (stride below the
/// handover's) in windows; `fine..pre` (stride 4, up to the handover)
/// assembled whole from the windows' cores; `pre..n` (deeper) whole from
/// the handover's map.
#[derive(Debug, Clone, Copy)]
struct Split {
    fine: usize,
    pre: usize,
    n: usize,
}

/// `[n_out]` indices of the rows a nearest upsampling from `n_in` to
/// `n_out` rows reads (computed by the same kernel, so they match it).
fn nearest_rows(n_in: i64, n_out: i64, device: tch::Device) -> Tensor {
    Tensor::arange(n_in, (Kind::Float, device))
        .view([1, 1, n_in])
        .upsample_nearest1d([n_out], None)
        .view([n_out])
        .to_kind(Kind::Int64)
}

/// The nearest upsampling, to level `k`, of `m`: a map at level k+1 of an
/// `h × w` image covering `window`'s rows and columns there (or, when
/// `whole`, all of them). Every row and column reads the source the whole
/// image's upsampling reads, clamped into `m` (only rows within the halo
/// of a window's edge can fall outside it).
fn window_up(m: &Tensor, k: usize, window: &Rect, (h, w): (i64, i64), whole: bool) -> Tensor {
    let pick = |m: &Tensor, dim: i64, full: i64, at: i64, len: i64| {
        let n_src = m.size()[dim as usize];
        let src_at = if whole { 0 } else { at >> (k + 1) };
        let idx = nearest_rows(full >> (k + 1), full >> k, m.device())
            .narrow(0, at >> k, len >> k)
            .g_sub_scalar(src_at)
            .clamp(0, n_src - 1);
        m.index_select(dim, &idx)
    };
    let rows = pick(m, 2, h, window.y, window.h);
    pick(&rows, 3, w, window.x, window.w)
}

impl PseudoOptimizer {
    /// log2 of the handover's stride: the network's levels from this one
    /// down run whole.
    fn whole_k(&self) -> usize {
        self.loss.vgg.arch().stride(HANDOVER).trailing_zeros() as usize
    }

    fn split(&self, n: usize) -> Split {
        let arch = self.loss.vgg.arch();
        let layers = &self.loss.layers[..n];
        let s4 = arch.stride(HANDOVER);
        let fine = layers.iter().take_while(|t| arch.stride(**t) < s4).count();
        let pre = layers
            .iter()
            .take_while(|t| arch.position(**t) <= arch.position(HANDOVER))
            .count()
            .max(fine);
        Split { fine, pre, n }
    }

    /// How far, in px, VGG's maps of the first `fine` layers see: a 3×3
    /// conv at stride s reaches s px, a 2×2 pooling into stride s, s/2.
    fn fine_vgg_reach(&self, fine: usize) -> i64 {
        let arch = self.loss.vgg.arch();
        let Some(last) = fine.checked_sub(1).map(|i| self.loss.layers[i]) else {
            return 0;
        };
        let end = arch.position(last).unwrap_or(0);
        arch.taps()
            .iter()
            .take(end + 1)
            .map(|t| match t.kind {
                LayerKind::Conv => arch.stride(*t),
                LayerKind::Relu => 0,
                LayerKind::Pool => arch.stride(*t) / 2,
            })
            .sum()
    }

    /// The halo of the staged path's windows: [`HANDOVER_HALO`] for VGG to
    /// `relu3_1`, or the fine layers' reach plus the widest stage
    /// network's fine levels' (see [`PoNet::fine_radius`]), on multiples of
    /// [`PseudoOptimizer::TILE_ALIGN`]: 32 px for the published network.
    pub fn staged_halo(&self) -> i64 {
        let k = self.whole_k();
        let counts = self.stage_layer_counts();
        let need = (self.stages.iter().zip(&counts))
            .map(|(net, &n)| self.fine_vgg_reach(self.split(n).fine) + net.fine_radius(k))
            .max()
            .unwrap_or(0)
            .max(HANDOVER_HALO);
        let a = Self::TILE_ALIGN;
        (need + a - 1) / a * a
    }

    /// Bytes the whole part of the staged path holds at its peak for an
    /// `h × w` image, counted at stride 4, fp32: the stride-4 layers' maps
    /// and `relu3_1`'s, three 256-channel maps while VGG goes on from it,
    /// and six of the network's stride-4 width while its coarse levels run.
    pub fn staged_bytes(&self, h: i64, w: i64) -> u64 {
        let arch = self.loss.vgg.arch();
        let k = self.whole_k();
        let width = self.stages.iter().map(|s| s.width(k)).max().unwrap_or(0);
        let sp = self.split(self.loss.layers.len());
        let pre: i64 = (self.loss.layers[sp.fine..sp.pre].iter())
            .map(|t| arch.channels(*t))
            .sum();
        let per_cell = pre + 4 * arch.channels(HANDOVER) + 6 * width;
        (4 * per_cell * (h >> k) * (w >> k)) as u64
    }

    /// One stage of [`PseudoOptimizer::run_tiled`] the staged way: the
    /// update Δ for the pre-activation `z: [1, 3, H, W]` over `grid`, whose
    /// halo is at least [`PseudoOptimizer::staged_halo`].
    pub(super) fn stage_update_staged(
        &self,
        net: &PoNet,
        n: usize,
        z: &Tensor,
        target: &TargetGrams,
        grid: &Grid,
    ) -> Result<Tensor> {
        let (h, w) = (grid.height, grid.width);
        let sp = self.split(n);
        let k = self.whole_k();
        let (vgg, gain) = (&self.loss.vgg, self.loss.gain);
        let arch = vgg.arch();
        let layers = &self.loss.layers[..n];
        let deep = sp.pre < sp.n;
        let x = z.sigmoid();
        let no_tile = || Error::Model("the tile grid has no tile".into());
        // 1. VGG to relu3_1 in windows: Gram sums, stride-4 maps whole.
        let mut taps: Vec<Tap> = layers[..sp.pre].to_vec();
        if deep {
            taps.push(HANDOVER);
        }
        let mut pre_maps: Vec<CoreMap> = (layers[sp.fine..sp.pre].iter())
            .map(|t| CoreMap::new(h, w, arch.stride(*t), x.device()))
            .collect();
        let mut handover = CoreMap::new(h, w, arch.stride(HANDOVER), x.device());
        let mut sums = grid.gram_sums(&x, "texture Grams", |tile, window| -> Result<_> {
            let f = vgg.encode(window, &taps).map_err(Error::Vgg)?;
            let core = tile.core_in_window();
            if deep {
                let s = arch.stride(HANDOVER);
                handover.put(tile, &core.scaled_down(s).crop(&f[HANDOVER]));
            }
            let maps: Vec<(Tensor, i64)> = (layers[..sp.pre].iter())
                .map(|t| (&f[*t] / gain, arch.stride(*t)))
                .collect();
            for (m, (f, s)) in pre_maps.iter_mut().zip(&maps[sp.fine..]) {
                m.put(tile, &core.scaled_down(*s).crop(f));
            }
            Ok(maps)
        })?;
        // 2. The deeper layers, the gradient maps at stride ≥ 4 and the
        // network's coarse levels, whole.
        let mut whole = (pre_maps.into_iter())
            .map(|m| m.into_map().ok_or_else(no_tile))
            .collect::<Result<Vec<_>>>()?;
        if deep {
            let h3 = handover.into_map().ok_or_else(no_tile)?;
            let f = (vgg.encode_from(&h3, HANDOVER, &layers[sp.pre..]))
                .map_err(Error::Vgg)?
                .into_maps();
            drop(h3);
            for m in f {
                let m = m / gain;
                let r = m.to_kind(Kind::Double).reshape([m.size()[1], -1]);
                sums.ffs.push(r.matmul(&r.transpose(0, 1)));
                sums.counts.push(r.size()[1]);
                whole.push(m);
            }
        }
        let (g, rms) = self
            .loss
            .feature_gradients_global(&whole, sp.fine, target, &sums);
        drop(whole);
        let input = |i: usize| &g[i - sp.fine] / &rms[i - sp.fine];
        let up = |m: &Tensor, l: usize| m.upsample_nearest2d([h >> l, w >> l], None, None);
        let coarse = net.run_levels(None, k..usize::MAX, &input, &up, false);
        drop((g, rms));
        // 3. Each window: the fine layers' gradient maps, the fine levels.
        let delta = z.zeros_like();
        grid.for_each(|tile| -> Result<()> {
            let win = &tile.window;
            let (g, rms) = match sp.fine {
                0 => (Vec::new(), Vec::new()),
                fine => {
                    let f = (self.loss.features_first(&win.crop(&x), fine)).map_err(Error::Vgg)?;
                    self.loss.feature_gradients_global(&f, 0, target, &sums)
                }
            };
            let input = |i: usize| &g[i] / &rms[i];
            let up = |m: &Tensor, l: usize| window_up(m, l, win, (h, w), l + 1 >= k);
            let start = coarse.as_ref().map(|m| m.shallow_clone());
            let m = (net.run_levels(start, 0..k, &input, &up, false)).ok_or_else(no_tile)?;
            let d = net.output(&m);
            tile.core
                .crop(&delta)
                .copy_(&tile.core_in_window().crop(&d));
            nst_tiling::report("texture updates", tile.index + 1, grid.len());
            Ok(())
        })?;
        Ok(delta)
    }
}
