//! One learned update g_t of the flexible solver, shaped like the gradient
//! of the Gram style loss (Puy and Pérez, arXiv 1806.05285).
//!
//! ∇L_s(X) is computed in three steps: forward VGG features F_ℓ, the cubic
//! partial derivative F_ℓ·[(1/n_ℓ)F_ℓᵀF_ℓ − (1/n'_ℓ)S_ℓᵀS_ℓ], and
//! back-propagation to the image. g_t keeps that structure with learned maps:
//!
//! 1. **forward maps h^f_ℓ**: a small VGG-like convnet. Level 1 is two 3×3
//!    convs with ReLU at full resolution; each further level average-pools by
//!    2 and applies two more. Its level outputs F_ℓ = h^f_ℓ(X) play the role
//!    of VGG_ℓ(X).
//! 2. **the cubic term** D_ℓ = F_ℓ·[(1/n_ℓ)F_ℓᵀF_ℓ − H^s_ℓ], where
//!    H^s_ℓ = (1/n'_ℓ)·h^f_ℓ(X_s)ᵀh^f_ℓ(X_s) is the Gram matrix of the
//!    **style image through the same forward maps**. This is how one trained
//!    network serves arbitrary styles: the paper learns H^s_{ℓ,t} per style;
//!    we compute it from the style image, exactly as S_ℓᵀS_ℓ is computed
//!    from VGG in the true gradient. **Our addition:** each D_ℓ is
//!    normalised per sample ([`CubicNorm`]). The cubic term scales as the
//!    cube of the activations, and without a normalisation the unrolled
//!    iteration diverged within ten training steps. `Rms` divides D_ℓ by its
//!    own root-mean-square, so only its direction is kept; `Gram` divides it
//!    by rms(F_ℓ)·(ms(F_ℓ) + ms(S_ℓ)), the scale the cubic term would have
//!    for a Gram mismatch of 100 %, so it stays scale-free but keeps how far
//!    the Grams are from the style's (D_ℓ = 0 when they match).
//! 3. **backward maps h^b_ℓ**, symmetric to h^f: from the deepest level to
//!    the image, the running map gets D_ℓ added at level ℓ, then goes
//!    through that level's convs in reverse (c_out → c_in), each preceded by
//!    the mask of the matching forward ReLU (as back-propagation multiplies by
//!    ReLU′), and is upsampled ×2 (the adjoint of average pooling) between
//!    levels. Summing the levels' contributions on the way up is exactly how
//!    back-propagation sums the layers' gradients. The result is the
//!    3-channel update g_t(X).
//!
//! Given the masks, h^b is affine in the D_ℓ (linear, as the true backward
//! pass is, in the "gram" variant, whose backward convs have no biases).
//! A learned scalar step size μ_t multiplies the result (g_t = μ_t·h^b(…),
//! as μ multiplies ∇L in gradient descent). The last backward conv starts
//! at zero, so an untrained solver returns the content image unchanged.
use tch::{nn, Kind, Tensor};

mod staged;

/// conv 3×3, zero padding 1.
fn conv(vs: &nn::Path, cin: i64, cout: i64) -> nn::Conv2D {
    conv_with(vs, cin, cout, true)
}

/// conv 3×3, zero padding 1, with or without a bias.
fn conv_with(vs: &nn::Path, cin: i64, cout: i64, bias: bool) -> nn::Conv2D {
    nn::conv2d(
        vs,
        cin,
        cout,
        3,
        nn::ConvConfig {
            padding: 1,
            bias,
            ..Default::default()
        },
    )
}

/// One level of h^f and its mirror in h^b.
#[derive(Debug)]
struct Level {
    /// Forward convs (c_in → c, c → c).
    fwd: [nn::Conv2D; 2],
    /// Backward convs, applied in reverse order: `bwd[1]` (c → c) then
    /// `bwd[0]` (c → c_in).
    bwd: [nn::Conv2D; 2],
}

/// How the cubic term D_ℓ is normalised before the backward maps
/// (`model.cubic_norm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CubicNorm {
    /// D_ℓ / rms(D_ℓ): unit size whatever the mismatch (the first design).
    #[default]
    Rms,
    /// D_ℓ / (rms(F_ℓ)·(ms(F_ℓ) + ms(S_ℓ))), with ms the mean square of the
    /// activations (tr G/c): invariant to the scale of the forward maps, zero
    /// when the Grams match, small when they nearly do. The backward convs
    /// then have no biases, so h^b is linear in the D_ℓ and the update is
    /// zero where the style Grams are matched.
    Gram,
}

/// The forward pass of h^f kept for the backward maps.
struct Forward {
    /// F_ℓ at each level `[B, c_ℓ, h_ℓ, w_ℓ]`.
    maps: Vec<Tensor>,
    /// ReLU masks (pre-activation > 0) of both convs of each level.
    masks: Vec<[Tensor; 2]>,
    /// The spatial size of each level's input (for upsampling back).
    sizes: Vec<(i64, i64)>,
}

impl Forward {
    /// The bytes its maps and masks hold.
    fn bytes(&self) -> u64 {
        let b = |t: &Tensor| (t.numel() * t.kind().elt_size_in_bytes()) as u64;
        let masks = self.masks.iter().flatten();
        self.maps.iter().chain(masks).map(b).sum()
    }
}

/// The learned update g_t (one per unrolled step).
#[derive(Debug)]
pub struct UpdateNet {
    levels: Vec<Level>,
    /// A learned step size μ_t multiplying the backward maps' output
    /// (initially [`INITIAL_STEP_SIZE`]): it makes early training a gentle
    /// warm-up, since Adam moves a scalar by about lr per step.
    step_size: Tensor,
    cubic_norm: CubicNorm,
    /// Precision of the convolutions; the Grams, the cubic term, the RMS
    /// normalisation and the output stay fp32.
    precision: nst_core::Precision,
}

/// μ_t at initialisation.
pub const INITIAL_STEP_SIZE: f64 = 0.05;

impl UpdateNet {
    /// `channels[ℓ]` is the width of level ℓ + 1 (each level halves the resolution).
    pub fn new(vs: &nn::Path, channels: &[i64], cubic_norm: CubicNorm) -> Self {
        let mut levels = Vec::with_capacity(channels.len());
        let mut cin = 3;
        // Backward biases would add a constant to the update even where the
        // cubic term is zero; the "gram" variant drops them so that g_t = 0
        // exactly where the Grams match, as for the true gradient.
        let bias = cubic_norm == CubicNorm::Rms;
        for (l, &c) in channels.iter().enumerate() {
            let p = vs / format!("level{}", l + 1);
            let fwd = [conv(&(&p / "fwd0"), cin, c), conv(&(&p / "fwd1"), c, c)];
            let bwd0 = if l == 0 {
                // The last map of the whole update: zero at initialisation.
                let b = &p / "bwd0";
                nn::conv2d(
                    &b,
                    c,
                    cin,
                    3,
                    nn::ConvConfig {
                        padding: 1,
                        ws_init: nn::Init::Const(0.0),
                        bs_init: nn::Init::Const(0.0),
                        bias,
                        ..Default::default()
                    },
                )
            } else {
                conv_with(&(&p / "bwd0"), c, cin, bias)
            };
            let bwd = [bwd0, conv_with(&(&p / "bwd1"), c, c, bias)];
            levels.push(Level { fwd, bwd });
            cin = c;
        }
        let step_size = vs.var("step_size", &[1], nn::Init::Const(INITIAL_STEP_SIZE));
        Self {
            levels,
            step_size,
            cubic_norm,
            precision: nst_core::Precision::Fp32,
        }
    }

    /// Runs the convolutions at `precision` (the weights stay fp32).
    pub fn set_precision(&mut self, precision: nst_core::Precision) {
        self.precision = precision;
    }

    /// The smallest image side the levels accept (one pixel at the deepest level).
    pub fn min_side(&self) -> i64 {
        1 << (self.levels.len() - 1)
    }

    fn forward_maps(&self, x: &Tensor) -> Forward {
        self.forward_range(x, 0..self.levels.len())
    }

    /// h^f over `levels`: from the image `input` when they start at level
    /// 0, else from F of the level before them. The result's vectors are
    /// indexed from `levels.start`.
    fn forward_range(&self, input: &Tensor, levels: std::ops::Range<usize>) -> Forward {
        let mut h = match levels.start {
            0 => input * 2.0 - 1.0,
            _ => input.shallow_clone(),
        };
        let mut maps = Vec::with_capacity(levels.len());
        let mut masks = Vec::with_capacity(levels.len());
        let mut sizes = Vec::with_capacity(levels.len());
        for l in levels {
            let level = &self.levels[l];
            if l > 0 {
                h = h.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None);
            }
            let s = h.size();
            sizes.push((s[2], s[3]));
            let a0 = self.precision.conv2d(&level.fwd[0], &h, 1);
            let m0 = a0.gt(0.0).to_kind(a0.kind());
            let r0 = a0.relu();
            let a1 = self.precision.conv2d(&level.fwd[1], &r0, 1);
            let m1 = a1.gt(0.0).to_kind(a1.kind());
            h = a1.relu();
            maps.push(h.to_kind(Kind::Float));
            masks.push([m0, m1]);
        }
        Forward { maps, masks, sizes }
    }

    /// The style Grams H^s_ℓ = (1/n')·h^f_ℓ(X_s)ᵀh^f_ℓ(X_s), one per level.
    ///
    /// # Shapes
    /// `style: [B, 3, H', W']` → per level `[B, c_ℓ, c_ℓ]`
    pub fn style_grams(&self, style: &Tensor) -> Vec<Tensor> {
        self.forward_maps(style)
            .maps
            .iter()
            .map(gram_per_pixel)
            .collect()
    }

    /// g_t(X) for the style Grams of [`UpdateNet::style_grams`] (one row per
    /// X row, or one row for all).
    ///
    /// # Shapes
    /// `x: [B, 3, H, W]` → `[B, 3, H, W]`
    pub fn forward(&self, x: &Tensor, style_grams: &[Tensor]) -> Tensor {
        let fwd = self.forward_maps(x);
        let stats: Vec<(Tensor, Tensor)> = fwd
            .maps
            .iter()
            .zip(style_grams)
            .map(|(f, hs)| {
                let g = gram_per_pixel(f);
                let b = g.size()[0];
                let hs = hs.expand([b, g.size()[1], g.size()[2]], false);
                let scale = match self.cubic_norm {
                    CubicNorm::Rms => None,
                    CubicNorm::Gram => Some(gram_scale(&g, &hs)),
                };
                let d_scale = scale.unwrap_or_else(|| {
                    let (b, c, h, w) = f.size4().expect("level maps are 4-d");
                    let d = (&g - &hs).bmm(&f.reshape([b, c, h * w]));
                    rms_per_sample(&d)
                });
                (g, d_scale)
            })
            .collect();
        self.backward_maps(&fwd, style_grams, &stats)
    }

    /// h^b from the forward pass `fwd`, with each level's Gram of X and
    /// the divisor of its cubic term given (`stats[ℓ]`: `[B, c, c]` and
    /// `[B, 1, 1, 1]`): the whole image's, or, in a tile, the whole
    /// image's held fixed.
    fn backward_maps(
        &self,
        fwd: &Forward,
        style_grams: &[Tensor],
        stats: &[(Tensor, Tensor)],
    ) -> Tensor {
        self.backward_range(fwd, 0, style_grams, stats, None, None) * &self.step_size
    }

    /// h^b over the levels of `fwd` (`first` onwards, as
    /// [`UpdateNet::forward_range`] made it), deepest first, adding its
    /// output to `run` (the map coming from deeper levels, at the deepest
    /// one's size) when given; the result is at level `first`'s input
    /// size, or upsampled to `up_to`. Without the step size.
    fn backward_range(
        &self,
        fwd: &Forward,
        first: usize,
        style_grams: &[Tensor],
        stats: &[(Tensor, Tensor)],
        mut run: Option<Tensor>,
        up_to: Option<(i64, i64)>,
    ) -> Tensor {
        for i in (0..fwd.maps.len()).rev() {
            let (l, f) = (first + i, &fwd.maps[i]);
            let (b, c, h, w) = f.size4().expect("level maps are 4-d");
            let flat = f.reshape([b, c, h * w]); // Fᵀ in the paper's [n, c] convention
            let (g, scale) = &stats[l];
            let hs = style_grams[l].expand([b, c, c], false);
            // D = F·(G − H) as [n, c]; here [c, n] = (G − H)ᵀ·Fᵀ with G, H symmetric.
            let d = (g.expand([b, c, c], false) - hs)
                .bmm(&flat)
                .reshape([b, c, h, w])
                / scale;
            let mut m = match run.take() {
                Some(r) => r + d,
                None => d,
            };
            let level = &self.levels[l];
            let p = self.precision;
            m = p.conv2d(&level.bwd[1], &(p.cast(&m) * &fwd.masks[i][1]), 1);
            m = p.conv2d(&level.bwd[0], &(m * &fwd.masks[i][0]), 1);
            let up = match i {
                0 => up_to,
                _ => Some(fwd.sizes[i - 1]),
            };
            if let Some((ph, pw)) = up {
                m = upsample_to(&m, ph, pw);
            }
            run = Some(m.to_kind(Kind::Float));
        }
        run.expect("at least one level")
    }

    /// Context a tile needs on each side for its core's update to equal the
    /// whole image's: the receptive field of h^f then h^b (two 3×3 convs
    /// per level each way, 2·2^ℓ px per conv pair at level ℓ) plus one
    /// deepest-level cell for the poolings, rounded up to [`UpdateNet::tile_align`].
    pub fn tile_halo(&self) -> i64 {
        let l = self.levels.len() as i64;
        let r = 4 * ((1 << l) - 1) + (1 << l);
        let a = self.tile_align();
        (r + a - 1) / a * a
    }

    /// Tile boundaries fall on multiples of the deepest level's stride.
    pub fn tile_align(&self) -> i64 {
        1 << (self.levels.len() - 1)
    }

    /// Σ FᵀF and the pixel count per level of `image: [1, 3, H, W]` over
    /// the cores of `grid` (each pixel once): what the levels' Grams are
    /// made of, computed tile by tile.
    fn gram_sums(
        &self,
        image: &Tensor,
        grid: &nst_tiling::Grid,
        mut keep: impl FnMut(usize, Forward),
    ) -> nst_tiling::GramSums {
        let sums = grid.gram_sums(image, "Puy–Pérez Grams", |tile, window| {
            let fwd = self.forward_maps(window);
            let maps = (fwd.maps.iter().enumerate())
                .map(|(l, f)| (f.shallow_clone(), 1i64 << l))
                .collect();
            keep(tile.index, fwd);
            Ok::<_, std::convert::Infallible>(maps)
        });
        match sums {
            Ok(s) => s,
            Err(never) => match never {},
        }
    }

    /// The levels' Grams `[1, c, c]` of `image: [1, 3, H, W]`, tile by tile
    /// (the style's, for a style too large to run whole).
    pub fn grams_tiled(&self, image: &Tensor, grid: &nst_tiling::Grid) -> Vec<Tensor> {
        self.gram_sums(image, grid, |_, _| ())
            .grams()
            .into_iter()
            .map(|g| g.unsqueeze(0))
            .collect()
    }

    /// [`UpdateNet::forward`] of `x: [1, 3, H, W]` tile by tile on `grid`
    /// (whose halo is at least [`UpdateNet::tile_halo`]), in memory bounded
    /// by the tile: pass 1 sums each level's FᵀF over the cores, which gives
    /// the whole image's Grams and the cubic terms' divisors (for `Rms`, the
    /// mean square of D = F(G − H) is tr((G − H)G(G − H))/c, from the Grams
    /// alone); pass 2 runs each window with those held fixed and keeps its
    /// core. With a large enough halo this is the whole image's update up to
    /// rounding. Pass 1's forward maps are kept for pass 2 within `keep`
    /// bytes (no limit when `None`); the windows without room run forward
    /// again.
    pub fn forward_tiled(
        &self,
        x: &Tensor,
        style_grams: &[Tensor],
        grid: &nst_tiling::Grid,
        keep: Option<u64>,
    ) -> Tensor {
        let mut kept: Vec<Option<Forward>> = (0..grid.len()).map(|_| None).collect();
        let mut used = 0u64;
        let sums = self.gram_sums(x, grid, |i, fwd| {
            let bytes = fwd.bytes();
            if keep.is_none_or(|k| used + bytes <= k) {
                used += bytes;
                kept[i] = Some(fwd);
            }
        });
        let stats = self.stats_from_grams(sums.grams(), style_grams);
        let out = x.zeros_like();
        let _ = grid.for_each(|tile| -> Result<(), std::convert::Infallible> {
            let fwd = match kept[tile.index].take() {
                Some(f) => f,
                None => self.forward_maps(&tile.window.crop(x)),
            };
            let u = self.backward_maps(&fwd, style_grams, &stats);
            let core = tile.core_in_window();
            tile.core.crop(&out).copy_(&core.crop(&u));
            nst_tiling::report("Puy–Pérez updates", tile.index + 1, grid.len());
            Ok(())
        });
        out
    }

    /// Each level's Gram `[1, c, c]` and cubic-term divisor, from the
    /// whole image's Grams `grams` (`[c, c]` each) alone.
    fn stats_from_grams(
        &self,
        grams: Vec<Tensor>,
        style_grams: &[Tensor],
    ) -> Vec<(Tensor, Tensor)> {
        grams
            .into_iter()
            .zip(style_grams)
            .map(|(g, hs)| {
                let g = g.unsqueeze(0);
                let c = g.size()[1];
                let hs = hs.to_kind(Kind::Float).expand([1, c, c], false);
                let scale = match self.cubic_norm {
                    CubicNorm::Gram => gram_scale(&g, &hs),
                    CubicNorm::Rms => {
                        let dm = (&g - &hs).to_kind(Kind::Double);
                        let ms = dm
                            .bmm(&g.to_kind(Kind::Double))
                            .bmm(&dm)
                            .diagonal(0, 1, 2)
                            .sum(Kind::Double)
                            / c as f64;
                        ((ms.to_kind(Kind::Float) + 1e-12).sqrt() + 1e-8).reshape([1, 1, 1, 1])
                    }
                };
                (g, scale)
            })
            .collect()
    }
}

/// Root-mean-square per sample `[B, …]` → `[B, 1, 1, 1]` (plus 1e-8).
fn rms_per_sample(x: &Tensor) -> Tensor {
    let b = x.size()[0];
    (x.square()
        .reshape([b, -1])
        .mean_dim([1i64].as_slice(), true, Kind::Float)
        + 1e-12)
        .sqrt()
        .reshape([b, 1, 1, 1])
        + 1e-8
}

/// rms(F)·(ms(F) + ms(S)) per sample from the Grams (ms = tr G / c, the
/// mean square of the activations): `[B, C, C]` twice → `[B, 1, 1, 1]`.
fn gram_scale(g: &Tensor, h: &Tensor) -> Tensor {
    let b = g.size()[0];
    let c = g.size()[1] as f64;
    let ms = |m: &Tensor| {
        m.diagonal(0, 1, 2)
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
            / c
    };
    let (msf, mss) = (ms(g), ms(h));
    ((msf.clamp_min(0.0).sqrt() * (msf + mss)) + 1e-8).reshape([b, 1, 1, 1])
}

/// The paper's Gram matrices, (1/n)·FᵀF per sample with n = H·W:
/// `[B, C, H, W]` → `[B, C, C]`, fp32.
pub(crate) fn gram_per_pixel(f: &Tensor) -> Tensor {
    nst_losses::gram_with(f, nst_losses::GramNorm::Pixels)
}

/// Nearest ×2 upsampling back to a level's exact input size (average pooling
/// floors odd sizes; the extra row/column gets zero, as in its adjoint).
fn upsample_to(x: &Tensor, h: i64, w: i64) -> Tensor {
    let s = x.size();
    let up = x.upsample_nearest2d([s[2] * 2, s[3] * 2], None, None);
    let (uh, uw) = (s[2] * 2, s[3] * 2);
    if uh == h && uw == w {
        up
    } else {
        up.constant_pad_nd([0, w - uw, 0, h - uh])
    }
}
