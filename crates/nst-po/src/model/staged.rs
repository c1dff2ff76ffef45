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
//! With more room, the levels from stride 2 on run whole too, with VGG's
//! layers from `pool1` on (their maps assembled in step 1), leaving only
//! the finest level in windows. The windows need the chosen
//! [`StagedPlan`]'s halo (16 or 32 px for the published network), and the
//! result is the whole run's up to rounding:
//! upsampling inside a window picks the rows the whole image's does, also
//! when a side is not a multiple of the deepest stride.
use super::PseudoOptimizer;
use crate::net::PoNet;
use crate::texture::{GramSums, TargetGrams, TextureLoss};
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

impl TextureLoss {
    /// Where the first `n` layers run when the levels from stride 2^`k` on
    /// run whole (`k` at most the handover's).
    fn split(&self, n: usize, k: usize) -> Split {
        let arch = self.vgg.arch();
        let layers = &self.layers[..n];
        let fine = layers
            .iter()
            .take_while(|t| arch.stride(**t) < 1 << k)
            .count();
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
        let arch = self.vgg.arch();
        let Some(last) = fine.checked_sub(1).map(|i| self.layers[i]) else {
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

    /// [`TextureLoss::gram_sums`] of the first `n` layers of `x: [1, 3, H,
    /// W]` over `grid`, staged: VGG to [`HANDOVER`] in the windows (a halo
    /// of [`HANDOVER_HALO`] is enough), the deeper layers whole from the
    /// handover's map assembled from the cores. Also returns the whole maps
    /// of the layers at stride 2^`k` and deeper (per unit of input);
    /// `keep(tile, maps)` is offered each window's maps of the layers below
    /// that stride.
    pub(crate) fn staged_sums(
        &self,
        x: &Tensor,
        n: usize,
        grid: &Grid,
        k: usize,
        mut keep: impl FnMut(usize, Vec<Tensor>),
    ) -> Result<(GramSums, Vec<Tensor>)> {
        let (h, w) = (grid.height, grid.width);
        let sp = self.split(n, k);
        let (vgg, gain) = (&self.vgg, self.gain);
        let arch = vgg.arch();
        let layers = &self.layers[..n];
        let deep = sp.pre < sp.n;
        let no_tile = || Error::Model("the tile grid has no tile".into());
        let mut taps: Vec<Tap> = layers[..sp.pre].to_vec();
        if deep {
            taps.push(HANDOVER);
        }
        let mut pre_maps: Vec<CoreMap> = (layers[sp.fine..sp.pre].iter())
            .map(|t| CoreMap::new(h, w, arch.stride(*t), x.device()))
            .collect();
        let mut handover = CoreMap::new(h, w, arch.stride(HANDOVER), x.device());
        let mut sums = grid.gram_sums(x, "texture Grams", |tile, window| -> Result<_> {
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
            keep(
                tile.index,
                maps[..sp.fine]
                    .iter()
                    .map(|m| m.0.shallow_clone())
                    .collect(),
            );
            Ok(maps)
        })?;
        // VGG's deeper layers whole, from relu3_1.
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
        Ok((sums, whole))
    }
}

/// One way to run the staged path: the stage networks' levels from stride
/// 2^`k` on whole, with their VGG layers; the rest in windows of `halo` px.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagedPlan {
    pub k: usize,
    pub halo: i64,
    /// Peak bytes of the whole part ([`PseudoOptimizer::staged_plans`]).
    pub bytes: u64,
}

impl PseudoOptimizer {
    /// The staged path's splits for an `h × w` image, the one with the
    /// least windowed work first: the levels from stride 2 on whole
    /// (16-px halo for the published network), then from stride 4 on (the
    /// handover's, 32 px). Each plan's halo covers VGG to `relu3_1`
    /// ([`HANDOVER_HALO`]) and the fine layers' reach plus the widest stage
    /// network's fine levels' ([`PoNet::fine_radius`]), on multiples of
    /// [`PseudoOptimizer::TILE_ALIGN`]. Its bytes count, in fp32, the whole
    /// maps of the layers from stride 2^k to `relu3_1`, four `relu3_1`-sized
    /// maps (it and three while VGG goes on from it) and six maps of the
    /// networks' width at level k.
    pub fn staged_plans(&self, h: i64, w: i64) -> Vec<StagedPlan> {
        let arch = self.loss.vgg.arch();
        let handover_k = arch.stride(HANDOVER).trailing_zeros() as usize;
        let counts = self.stage_layer_counts();
        let all = self.loss.layers.len();
        let cells = |s: i64| (h / s) * (w / s);
        (1..=handover_k)
            .map(|k| {
                let reach = (self.stages.iter().zip(&counts))
                    .map(|(net, &n)| {
                        let fine = self.loss.split(n, k).fine;
                        self.loss.fine_vgg_reach(fine) + net.fine_radius(k)
                    })
                    .max()
                    .unwrap_or(0)
                    .max(HANDOVER_HALO);
                let a = Self::TILE_ALIGN;
                let sp = self.loss.split(all, k);
                let pre: i64 = (self.loss.layers[sp.fine..sp.pre].iter())
                    .map(|t| arch.channels(*t) * cells(arch.stride(*t)))
                    .sum();
                let width = self.stages.iter().map(|s| s.width(k)).max().unwrap_or(0);
                let handover = 4 * arch.channels(HANDOVER) * cells(arch.stride(HANDOVER));
                StagedPlan {
                    k,
                    halo: (reach + a - 1) / a * a,
                    bytes: (4 * (pre + handover + 6 * width * cells(1 << k))) as u64,
                }
            })
            .collect()
    }

    /// The staged plan [`PseudoOptimizer::run_tiled`] takes on `tiling` for
    /// an `h × w` image: the first of [`PseudoOptimizer::staged_plans`]
    /// whose whole part fits in the tiling's feature room and whose halo it
    /// has.
    pub fn staged_plan(&self, tiling: &nst_tiling::Tiling, h: i64, w: i64) -> Option<StagedPlan> {
        self.staged_plans(h, w)
            .into_iter()
            .find(|p| tiling.halo >= p.halo && tiling.cache_bytes.is_none_or(|c| p.bytes <= c))
    }

    /// One stage of [`PseudoOptimizer::run_tiled`] the staged way, split as
    /// `plan` says: the update Δ for the pre-activation `z: [1, 3, H, W]`
    /// over `grid` (whose halo is the plan's), keeping the windows' fine VGG
    /// maps between the passes within `room` bytes (no limit: `None`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn stage_update_staged(
        &self,
        net: &PoNet,
        n: usize,
        z: &Tensor,
        target: &TargetGrams,
        grid: &Grid,
        k: usize,
        room: Option<u64>,
    ) -> Result<Tensor> {
        let (h, w) = (grid.height, grid.width);
        let sp = self.loss.split(n, k);
        let x = z.sigmoid();
        let no_tile = || Error::Model("the tile grid has no tile".into());
        // 1. and 2. VGG to relu3_1 in windows, on from it whole.
        // The windows' fine maps are kept for step 3 within `room` bytes.
        let mut kept: Vec<Option<Vec<Tensor>>> = (0..grid.len()).map(|_| None).collect();
        let mut left = room.unwrap_or(u64::MAX);
        let (sums, whole) = self.loss.staged_sums(&x, n, grid, k, |i, maps| {
            let bytes: u64 = (maps.iter())
                .map(|m| (m.numel() * m.kind().elt_size_in_bytes()) as u64)
                .sum();
            if bytes <= left {
                left -= bytes;
                kept[i] = Some(maps);
            }
        })?;
        let (g, rms) = self
            .loss
            .feature_gradients_global(&whole, sp.fine, target, &sums);
        drop(whole);
        // The gradient maps from stride 2^k on and the network's coarse levels.
        let input = |i: usize| &g[i - sp.fine] / &rms[i - sp.fine];
        let up = |m: &Tensor, l: usize| m.upsample_nearest2d([h >> l, w >> l], None, None);
        let coarse = net.run_levels(None, k..usize::MAX, &input, &up, false);
        drop((g, rms));
        // 3. Each window: the fine layers' gradient maps, the fine levels.
        let delta = z.zeros_like();
        grid.for_each(|tile| -> Result<()> {
            let win = &tile.window;
            let f = match (sp.fine, kept[tile.index].take()) {
                (0, _) => Vec::new(),
                (_, Some(f)) => f,
                (fine, None) => {
                    (self.loss.features_first(&win.crop(&x), fine)).map_err(Error::Vgg)?
                }
            };
            let (g, rms) = self.loss.feature_gradients_global(&f, 0, target, &sums);
            drop(f);
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
