//! Random feature locations and hypercolumns.
//!
//! A hypercolumn at a pixel is the concatenation of the features of several
//! VGG layers, each bilinearly upsampled to the image's resolution. Rather
//! than upsampling whole maps, [`hypercolumns`] interpolates each layer at the
//! sampled pixels only, which gives the same values at a fraction of the memory.
use tch::{Device, Kind, Tensor};

/// `n` distinct pixel positions of an `height x width` image, uniformly at
/// random (all pixels if `n >= height*width`), as `[n, 2]` int64 (row, col).
pub fn random_coords(height: i64, width: i64, n: i64, device: Device) -> Tensor {
    let total = height * width;
    let idx = if n >= total {
        Tensor::arange(total, (Kind::Int64, device))
    } else {
        Tensor::randperm(total, (Kind::Int64, device)).narrow(0, 0, n)
    };
    Tensor::stack(
        &[idx.divide_scalar_mode(width, "floor"), idx.remainder(width)],
        1,
    )
}

/// Hypercolumns at the given pixels of an `image_hw` image.
///
/// Each layer's map is sampled bilinearly at the pixel centres, exactly as if
/// it had been upsampled to `image_hw` with `align_corners = false` (edges
/// clamped), then the layers are concatenated along channels, in fp32.
///
/// The samples are row gathers from each map seen as `[H_l·W_l, C_l]`: free
/// for a channels-last map (see `nst_vgg::EncodeOptions`), whose channels at a
/// pixel are contiguous; an NCHW map is transposed first. A map in bf16 is
/// gathered in bf16 and only the gathered rows are cast. Gradients flow to
/// the maps (an index-add into the gathered rows).
///
/// # Shapes
/// `features: [1, C_l, H_l, W_l]` each, `coords: [N, 2]` (row, col) → `[N, ΣC_l]`
pub fn hypercolumns(features: &[&Tensor], coords: &Tensor, image_hw: (i64, i64)) -> Tensor {
    let (h, w) = image_hw;
    let n = coords.size()[0];
    let rows = coords.select(1, 0);
    let cols = coords.select(1, 1);
    // Per map size: the flat source indices and the bilinear weights.
    let mut plans: Vec<((i64, i64), Tensor, Option<Tensor>)> = Vec::new();
    let mut parts = Vec::with_capacity(features.len());
    for f in features {
        let size = f.size();
        let (c, hl, wl) = (size[1], size[2], size[3]);
        let at = match plans.iter().position(|(s, _, _)| *s == (hl, wl)) {
            Some(at) => at,
            None => {
                let (idx, weights) = if (hl, wl) == (h, w) {
                    (
                        rows.to_kind(Kind::Int64) * w + cols.to_kind(Kind::Int64),
                        None,
                    )
                } else {
                    bilinear_plan(&rows, &cols, (h, w), (hl, wl))
                };
                plans.push(((hl, wl), idx, weights));
                plans.len() - 1
            }
        };
        let (_, idx, weights) = &plans[at];
        let flat = f.squeeze_dim(0).permute([1, 2, 0]).reshape([hl * wl, c]);
        let g = flat.index_select(0, idx).to_kind(Kind::Float);
        parts.push(match weights {
            None => g,
            Some(wt) => {
                (g.view([4, n, c]) * wt).sum_dim_intlist([0i64].as_slice(), false, Kind::Float)
            }
        });
    }
    Tensor::cat(&parts, 1)
}

/// The four neighbours (flat indices `[4N]`: top-left, top-right,
/// bottom-left, bottom-right) and bilinear weights `[4, N, 1]` of pixel
/// centres of an `image` grid in a `map` grid, as `align_corners = false`
/// interpolation places them, clamped at the edges.
fn bilinear_plan(
    rows: &Tensor,
    cols: &Tensor,
    image: (i64, i64),
    map: (i64, i64),
) -> (Tensor, Option<Tensor>) {
    let axis = |c: &Tensor, full: i64, part: i64| {
        let pos = ((c.to_kind(Kind::Double) + 0.5) * (part as f64 / full as f64) - 0.5)
            .clamp(0.0, (part - 1) as f64);
        let lo = pos.floor();
        let frac = (&pos - &lo).to_kind(Kind::Float);
        let lo = lo.to_kind(Kind::Int64);
        let hi = (&lo + 1).clamp_max(part - 1);
        (lo, hi, frac)
    };
    let (y0, y1, fy) = axis(rows, image.0, map.0);
    let (x0, x1, fx) = axis(cols, image.1, map.1);
    let wl = map.1;
    let idx = Tensor::cat(
        &[
            &y0 * wl + &x0,
            &y0 * wl + &x1,
            &y1 * wl + &x0,
            &y1 * wl + &x1,
        ],
        0,
    );
    let (gx, gy) = (1.0 - &fx, 1.0 - &fy);
    let weights = Tensor::stack(&[&gx * &gy, &fx * &gy, &gx * &fy, &fx * &fy], 0).unsqueeze(2);
    (idx, Some(weights))
}
