//! Tiled stylisation, for outputs larger than memory allows
//! (docs/high-resolution.md). The result is the untiled one: what the model
//! computes over the whole image is accumulated over the tiles first.
//!
//! * The style code: E_s reads channel statistics of the whole style image
//!   (VGG's at `relu1_1…relu4_1`, or its conv trunk's), summed over the
//!   tiles' cores.
//! * The decoder: each of its four AdaIN layers normalises its input by that
//!   map's mean and deviation over the whole image. Hook by hook, every tile
//!   is decoded up to the hook and the map's moments are summed over the
//!   cores; only then does any tile go past it. Each tile's map at the last
//!   hook reached is kept between passes while the memory budget allows
//!   (else it is recomputed from the content code).
use super::{stats_taps, AdainParams, VaeAdainModel};
use crate::ops::adain_with_stats;
use crate::{ContentEncoderKind, StyleEncoderKind};
use nst_losses::stats::EPS;
use nst_model::{Error, Result};
use nst_tiling::{Moments, Tile, Tiling};
use tch::{Kind, Tensor};

/// The decoder's upsampling factor (the stride of `relu4_1`): tiled images
/// are cut on multiples of it.
pub const STRIDE: i64 = 8;

/// The context a tile needs on each side for its interior to match the
/// whole-image result (VGG to `relu4_1` and the decoder), in px: chosen by
/// `tiled_vae_adain_matches_the_whole_image` (PSNR ≥ 40 dB at 1024², tiles
/// of 256).
pub const HALO: i64 = 64;

/// The stride of the conv style encoder's trunk (four stride-2 convs).
const CONV_TRUNK_STRIDE: i64 = 16;

/// Per-tile maps kept between the decoder's passes, within a byte budget.
struct Kept {
    maps: Vec<Option<(usize, Tensor)>>,
    bytes: u64,
    limit: Option<u64>,
}

impl Kept {
    fn new(n: usize, limit: Option<u64>) -> Self {
        Self {
            maps: (0..n).map(|_| None).collect(),
            bytes: 0,
            limit,
        }
    }

    fn size(t: &Tensor) -> u64 {
        (t.numel() * t.kind().elt_size_in_bytes()) as u64
    }

    /// The map tile `i` reached (its hook), if kept.
    fn take(&mut self, i: usize) -> Option<(usize, Tensor)> {
        let m = self.maps[i].take();
        if let Some((_, t)) = &m {
            self.bytes -= Self::size(t);
        }
        m
    }

    fn offer(&mut self, i: usize, hook: usize, t: Tensor) {
        let b = Self::size(&t);
        if self.limit.is_none_or(|l| self.bytes + b <= l) {
            self.bytes += b;
            self.maps[i] = Some((hook, t));
        }
    }
}

impl VaeAdainModel {
    /// [`VaeAdainModel::stylize`], tile by tile when `tiling` is given
    /// (`content` and `style` may stay on the CPU; tiles go to the model's
    /// device). Returns `[1, 3, H, W]` fp32 on the CPU when tiled.
    pub fn stylize_tiled(
        &self,
        content: &Tensor,
        style: &Tensor,
        alpha: f64,
        tiling: Option<&Tiling>,
    ) -> Result<Tensor> {
        let Some(t) = tiling else {
            let d = self.vgg.device();
            return self.stylize(&content.to_device(d), &style.to_device(d), alpha);
        };
        let (mu, _) = self.encode_style_tiled(style, t)?;
        self.stylize_code_tiled(content, &mu, alpha, Some(t))
    }

    /// E_s(x) = (μ, log σ²) with the statistics taken tile by tile (the
    /// whole image when it fits in one tile).
    pub fn encode_style_tiled(&self, x: &Tensor, tiling: &Tiling) -> Result<(Tensor, Tensor)> {
        let d = self.vgg.device();
        let (h, w) = (x.size()[2], x.size()[3]);
        let stats = match self.style_enc.kind {
            StyleEncoderKind::VggStats => {
                let taps = stats_taps();
                let mut moments: Vec<Moments> = taps.iter().map(|_| Moments::new(false)).collect();
                let grid = tiling.grid_or_whole(h, w);
                grid.for_each(|tile| -> Result<()> {
                    let f = self.encode_vgg(&tile.window.crop(x).to_device(d), &taps)?;
                    for (m, &tap) in moments.iter_mut().zip(&taps) {
                        let core = tile
                            .core_in_window()
                            .scaled_down(self.vgg.arch().stride(tap));
                        m.add(&core.crop(&self.scaled(&f, tap)));
                    }
                    nst_tiling::report("style statistics", tile.index + 1, grid.len());
                    Ok(())
                })?;
                cat_stats(&moments)
            }
            StyleEncoderKind::Conv => {
                // The trunk's stride is 16: a grid aligned to it.
                let t = Tiling::new(tiling.tile, tiling.halo, CONV_TRUNK_STRIDE)?;
                let grid = t.grid_or_whole(h, w);
                let mut m = Moments::new(false);
                grid.for_each(|tile| -> Result<()> {
                    let f = self.style_enc.conv_trunk(&tile.window.crop(x).to_device(d));
                    m.add(
                        &tile
                            .core_in_window()
                            .scaled_down(CONV_TRUNK_STRIDE)
                            .crop(&f),
                    );
                    nst_tiling::report("style statistics", tile.index + 1, grid.len());
                    Ok(())
                })?;
                cat_stats(&[m])
            }
        };
        Ok(self.style_enc.from_stats(&stats))
    }

    /// [`VaeAdainModel::stylize_code`] tile by tile when `tiling` is given
    /// (see the module docs); `content: [1, 3, H, W]` with H and W multiples
    /// of [`STRIDE`] may stay on the CPU.
    pub fn stylize_code_tiled(
        &self,
        content: &Tensor,
        s: &Tensor,
        alpha: f64,
        tiling: Option<&Tiling>,
    ) -> Result<Tensor> {
        let d = self.vgg.device();
        let Some(tiling) = tiling else {
            return self.stylize_code(&content.to_device(d), &s.to_device(d), alpha);
        };
        if self.config.content_encoder != ContentEncoderKind::Vgg {
            return Err(Error::Config(
                "tiling needs model.content_encoder = \"vgg\": the learned content encoder's instance norms are not tiled; use a --size that fits in memory".into(),
            ));
        }
        if content.size()[0] != 1 || s.size()[0] != 1 {
            return Err(Error::Model(
                "tiled stylisation takes one content image and one style code".into(),
            ));
        }
        let (h, w) = (content.size()[2], content.size()[3]);
        let grid = tiling.grid(h, w)?;
        let ps = self.adain_params(&s.to_device(d));
        let mut params: Vec<(AdainParams, f64)> = vec![(ps, alpha.min(1.0))];
        if alpha < 1.0 {
            let (own, _) = self.encode_style_tiled(content, tiling)?;
            params.push((self.adain_params(&own), 1.0 - alpha));
        }
        let code = |tile: &Tile| self.encode_content(&tile.window.crop(content).to_device(d));
        // The global (mean, σ) of the map arriving at each hook, found pass by pass.
        let hooks = self.channels.len();
        let mut stats: Vec<(Tensor, Tensor)> = Vec::with_capacity(hooks);
        let mut kept = Kept::new(grid.len(), tiling.cache_bytes);
        let modulate = |stats: &[(Tensor, Tensor)], level: usize, h: Tensor| -> Tensor {
            let (m, sd) = &stats[level];
            let mut acc: Option<Tensor> = None;
            for (p, w) in &params {
                let (sigma, mu) = &p[level];
                let y = adain_with_stats(&h, sigma, mu, (m, sd)) * *w;
                acc = Some(match acc {
                    Some(a) => a + y,
                    None => y,
                });
            }
            acc.unwrap_or(h)
        };
        // Where a tile resumes: the map it reached in the last pass, or its code.
        let start = |kept: &mut Kept, tile: &Tile| -> Result<(usize, Tensor)> {
            match kept.take(tile.index) {
                Some(m) => Ok(m),
                None => Ok((0, code(tile)?)),
            }
        };
        for hook in 0..hooks {
            let mut m = Moments::new(false);
            let stride = STRIDE >> hook;
            grid.for_each(|tile| -> Result<()> {
                let (from, h0) = start(&mut kept, tile)?;
                let f = tch::no_grad(|| {
                    self.decoder
                        .forward_between(&h0, from, Some(hook), |l, h| modulate(&stats, l, h))
                });
                m.add(&tile.core_in_window().scaled_down(stride).crop(&f));
                // Hook 0's map is the scaled code: keep the code itself.
                let keep = if hook == 0 { (0, h0) } else { (hook, f) };
                kept.offer(tile.index, keep.0, keep.1);
                nst_tiling::report("decoder statistics", tile.index + 1, grid.len());
                Ok(())
            })?;
            stats.push(m.mean_std(EPS));
        }
        grid.stitch(3, |tile| -> Result<Tensor> {
            let (from, h0) = start(&mut kept, tile)?;
            Ok(tch::no_grad(|| {
                self.decoder
                    .forward_between(&h0, from, None, |l, h| modulate(&stats, l, h))
                    .sigmoid()
            }))
        })
    }
}

/// E_s's input from whole-image moments: each map's channel means and
/// deviations, `[1, Σ 2·C]`, as the untiled statistics are laid out.
fn cat_stats(moments: &[Moments]) -> Tensor {
    let mut cols = Vec::new();
    for m in moments {
        let (mean, sd) = m.mean_std(EPS);
        cols.push(mean.flatten(1, -1));
        cols.push(sd.flatten(1, -1));
    }
    Tensor::cat(&cols, 1).to_kind(Kind::Float)
}
