//! Exact tiling of the deep levels (relu4_1, relu5_1): only the shallow,
//! large maps are computed tile by tile, the small deep ones whole.
//!
//! A deep level's encoder and decoder have a receptive radius of a few
//! hundred px, so a window of the whole network needs a wide halo (the
//! [`crate::halo`] of 64–128 px, measured, not exact) and costs up to 1.7×
//! the whole image's work at 1024². Split at relu3_1 (stride 4), each half
//! has a small, exact radius:
//! - the encoder to relu3_1 (conv1_1 … conv3_1, two pools): a feature
//!   depends on a 24-px square, so the zero padding at a window's edge
//!   reaches 12 px into it; [`ENCODER_HALO`] = 16;
//! - the decoder from its stride-4 hook (four convs at stride 4, two at 2,
//!   two at 1): radius 4·4 + 2·2 + 2·1 = 22 px; [`DECODER_HALO`] = 32.
//!
//! Between them the network runs whole on maps of 1/16 the pixels: VGG from
//! relu3_1 on to the level ([`nst_vgg::Vgg::encode_from`]), the transfer,
//! and the decoder down to stride 4. The cores are then the whole run's
//! features and pixels up to float rounding, and the halos add 6 % and 13 %
//! to the tiled stages' work on 512-px cores.
//!
//! The same two functions serve the shallow levels (relu1_1…relu3_1) when
//! Optimal Textures can hold a level's whole feature map and its matching
//! ([`matching_fits`]): encoded in windows with [`ENCODER_HALO`], decoded
//! in windows with the level's [`crate::halo`], the matching whole.
use crate::model::Decoders;
use nst_model::{Error, Result};
use nst_tiling::{CoreMap, Tiling};
use nst_vgg::Tap;
use tch::Tensor;

/// The level whose `relu{·}_1` map the encoder hands over at
/// ([`nst_vgg::HANDOVER`]), and whose stride the decoder hands back at.
pub const HANDOVER: u8 = nst_vgg::HANDOVER.block;
/// Halo of the encoder's tiled stage, px (its radius is 12 px).
pub const ENCODER_HALO: i64 = nst_vgg::HANDOVER_HALO;
/// Halo of the decoder's tiled stage, px (its radius is 22 px).
pub const DECODER_HALO: i64 = 32;
const HANDOVER_STRIDE: i64 = 1 << (HANDOVER - 1);

/// Bytes the whole middle of a staged level holds at once for an `h × w`
/// image: counted as four fp32 maps of relu3_1's size (the encoder's map
/// and the convolution beside it, then the decoder's stride-4 map and the
/// convolution beside it).
pub fn middle_bytes(model: &Decoders, h: i64, w: i64) -> u64 {
    let c = model.vgg.arch().channels(Tap::relu(HANDOVER, 1));
    (4 * c * (h / HANDOVER_STRIDE) * (w / HANDOVER_STRIDE) * 4) as u64
}

/// Bytes of Optimal Textures' whole-image matching at `level` of an `h × w`
/// image with `maps` whole feature maps (the image's, and the content's
/// when it is mixed in): counted as 11 fp32 copies of the map for the
/// matching (per pass: the rotated, sorted and matched copies and the
/// int64 sort order; the projected, lifted and mixed ones) plus the maps,
/// and a deep level's middle.
pub fn matching_bytes(model: &Decoders, level: u8, (h, w): (i64, i64), maps: u64) -> u64 {
    let s = 1i64 << (level - 1);
    let c = model.vgg.arch().channels(Tap::relu(level, 1));
    let map = (c * (h / s) * (w / s) * 4) as u64;
    let middle = if level > HANDOVER {
        middle_bytes(model, h, w)
    } else {
        0
    };
    (11 + maps) * map + middle
}

/// Whether Optimal Textures' whole-image matching at `level` fits in
/// `tiling`'s cache budget ([`matching_bytes`]).
pub fn matching_fits(
    model: &Decoders,
    tiling: &Tiling,
    level: u8,
    hw: (i64, i64),
    maps: u64,
) -> bool {
    (tiling.cache_bytes).is_none_or(|c| matching_bytes(model, level, hw, maps) <= c)
}

/// Whether the whole middle of an `h × w` image's staged level fits in
/// `tiling`'s cache budget.
pub fn middle_fits(model: &Decoders, tiling: &Tiling, (h, w): (i64, i64)) -> bool {
    (tiling.cache_bytes).is_none_or(|c| middle_bytes(model, h, w) <= c)
}

/// [`middle_bytes`] when some of `levels` would run staged (deeper than the
/// handover), for a memory plan to leave room for it; else `None`.
pub fn reserve(model: &Decoders, levels: &[u8], (h, w): (i64, i64)) -> Option<u64> {
    (levels.iter().any(|&l| l > HANDOVER)).then(|| middle_bytes(model, h, w))
}

/// Whether `level` of an `h × w` image runs staged under `tiling`: it is
/// deeper than the handover, and its middle fits.
pub fn runs_staged(model: &Decoders, tiling: &Tiling, level: u8, hw: (i64, i64)) -> bool {
    level > HANDOVER && middle_fits(model, tiling, hw)
}

impl Decoders {
    /// The `relu{l}_1` features of `x` (`[1, 3, H, W]`, sides multiples of
    /// [`crate::STRIDE`]) for each of `levels`, from one VGG pass in two
    /// stages: windows of at most `tile` px to relu3_1, then the whole
    /// relu3_1 map on to the deeper levels. Levels up to relu3_1 are handed
    /// core by core to `on_shallow(index in levels, tile, core)` and come
    /// back `None`; deeper ones come back whole.
    pub fn encode_staged(
        &self,
        x: &Tensor,
        levels: &[u8],
        tile: i64,
        mut on_shallow: impl FnMut(usize, &nst_tiling::Tile, &Tensor),
    ) -> Result<Vec<Option<Tensor>>> {
        let device = self.vgg.device();
        let (h, w) = (x.size()[2], x.size()[3]);
        let deep: Vec<Tap> = levels
            .iter()
            .filter(|&&l| l > HANDOVER)
            .map(|&l| Tap::relu(l, 1))
            .collect();
        let handover = nst_vgg::HANDOVER;
        // The shallow levels' taps (with their index in `levels`), then the
        // handover's when a deep level follows.
        let shallow: Vec<(usize, Tap)> = (levels.iter().enumerate())
            .filter(|(_, &l)| l <= HANDOVER)
            .map(|(i, &l)| (i, Tap::relu(l, 1)))
            .collect();
        let mut taps: Vec<Tap> = shallow.iter().map(|s| s.1).collect();
        if !deep.is_empty() {
            taps.push(handover);
        }
        let grid = Tiling::new(tile, ENCODER_HALO, crate::STRIDE)?.grid_or_whole(h, w);
        let mut map = CoreMap::new(h, w, HANDOVER_STRIDE, device);
        grid.for_each(|t| -> Result<()> {
            let f = self
                .vgg
                .encode(&t.window.crop(x).to_device(device), &taps)?;
            for (i, (tap, m)) in f.iter().enumerate() {
                let core = t.core_in_window().scaled_down(1 << (tap.block - 1)).crop(m);
                match shallow.get(i) {
                    Some(&(li, _)) => on_shallow(li, t, &(core * self.feature_scale)),
                    None => map.put(t, &core),
                }
            }
            nst_tiling::report("encode", t.index + 1, grid.len());
            Ok(())
        })?;
        let deep_maps = match map.into_map() {
            Some(m) => Some(self.vgg.encode_from(&m, handover, &deep)?),
            None => None,
        };
        let deep_map = |l: u8| deep_maps.as_ref()?.get(Tap::relu(l, 1));
        Ok(levels
            .iter()
            .map(|&l| deep_map(l).map(|m| m * self.feature_scale))
            .collect())
    }

    /// The whole `relu{level}_1` map of `x`, encoded as
    /// [`Decoders::encode_staged`] does (exact).
    pub fn encode_whole(&self, x: &Tensor, level: u8, tile: i64) -> Result<Tensor> {
        let (h, w) = (x.size()[2], x.size()[3]);
        let mut map = CoreMap::new(h, w, 1 << (level - 1), self.vgg.device());
        let deep = self.encode_staged(x, &[level], tile, |_, t, core| map.put(t, core))?;
        deep.into_iter()
            .flatten()
            .next()
            .or(map.into_map())
            .ok_or_else(|| Error::Model(format!("no features for relu{level}_1")))
    }

    /// Decodes the whole `relu{level}_1` map `features` to the `h × w`
    /// image: a level deeper than the handover whole down to stride 4, then
    /// in windows of at most `tile` px with [`DECODER_HALO`]; a shallower one
    /// in windows with its [`crate::halo`] (which covers its decoder's
    /// radius: 1, 4 and 22 px at relu1_1…relu3_1). Returns `[1, 3, h, w]`
    /// fp32 on the CPU, clamped to [0, 1].
    pub fn decode_staged(
        &self,
        features: &Tensor,
        level: u8,
        tile: i64,
        (h, w): (i64, i64),
    ) -> Result<Tensor> {
        let d = self.decoder(level)?;
        let (hook, halo, stride) = if level > HANDOVER {
            (usize::from(level - HANDOVER), DECODER_HALO, HANDOVER_STRIDE)
        } else {
            (0, crate::halo(level), 1 << (level - 1))
        };
        let mid = match hook {
            0 => features.shallow_clone(),
            _ => d.forward_between(features, 0, Some(hook), |_, m| m),
        };
        let grid = Tiling::new(tile, halo, crate::STRIDE)?.grid_or_whole(h, w);
        grid.stitch(3, |t| -> Result<Tensor> {
            let window = t.window.scaled_down(stride).crop(&mid);
            Ok(d.forward_between(&window, hook, None, |_, m| m)
                .clamp(0.0, 1.0))
        })
    }
}
