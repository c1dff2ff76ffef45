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
    let maps: Vec<MapAt> = features
        .iter()
        .map(|f| {
            let s = f.size();
            MapAt {
                map: f,
                whole: (s[2], s[3]),
                origin: (0, 0),
            }
        })
        .collect();
    gather(&maps, coords, image_hw)
}

/// [`hypercolumns`] of a window cut from a larger image (tiled work).
///
/// `features` are the window's maps, each with its stride (a power of two);
/// `origin` is the window's top-left pixel in the whole `image_hw` image, a
/// multiple of every stride; `coords` are pixels of the whole image, inside
/// the window. Each map is sampled where the whole image's map would be
/// sampled (VGG floors every pooling, so that map is `image_hw / stride`),
/// which gives [`hypercolumns`]'s values on the whole image's maps wherever
/// the window's features equal the whole image's. Neighbours that fall
/// outside the window are clamped to its edge.
///
/// # Shapes
/// `features: [1, C_l, H_l, W_l]` each, `coords: [N, 2]` (row, col) → `[N, ΣC_l]`
pub fn hypercolumns_in_window(
    features: &[(&Tensor, i64)],
    coords: &Tensor,
    image_hw: (i64, i64),
    origin: (i64, i64),
) -> Tensor {
    let maps: Vec<MapAt> = features
        .iter()
        .map(|&(f, stride)| {
            let s = stride.max(1);
            MapAt {
                map: f,
                whole: (image_hw.0 / s, image_hw.1 / s),
                origin: (origin.0 / s, origin.1 / s),
            }
        })
        .collect();
    gather(&maps, coords, image_hw)
}

/// A map and where it sits in the whole image's map of its layer.
struct MapAt<'a> {
    map: &'a Tensor,
    /// The whole image's map size at this layer.
    whole: (i64, i64),
    /// This map's top-left cell in the whole map.
    origin: (i64, i64),
}

fn gather(maps: &[MapAt], coords: &Tensor, (h, w): (i64, i64)) -> Tensor {
    let n = coords.size()[0];
    let rows = coords.select(1, 0);
    let cols = coords.select(1, 1);
    // Per map geometry: the flat source indices and the bilinear weights.
    type Key = ((i64, i64), (i64, i64), (i64, i64));
    let mut plans: Vec<(Key, Tensor, Option<Tensor>)> = Vec::new();
    let mut parts = Vec::with_capacity(maps.len());
    for m in maps {
        let size = m.map.size();
        let (c, hl, wl) = (size[1], size[2], size[3]);
        let key = (m.whole, m.origin, (hl, wl));
        let at = match plans.iter().position(|(k, _, _)| *k == key) {
            Some(at) => at,
            None => {
                let (idx, weights) = if m.whole == (h, w) {
                    let r = (rows.to_kind(Kind::Int64) - m.origin.0).clamp(0, hl - 1);
                    let q = (cols.to_kind(Kind::Int64) - m.origin.1).clamp(0, wl - 1);
                    (r * wl + q, None)
                } else {
                    bilinear_plan(&rows, &cols, (h, w), m.whole, m.origin, (hl, wl))
                };
                plans.push((key, idx, weights));
                plans.len() - 1
            }
        };
        let (_, idx, weights) = &plans[at];
        let flat = m
            .map
            .squeeze_dim(0)
            .permute([1, 2, 0])
            .reshape([hl * wl, c]);
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
/// interpolation places them, clamped at the edges; the indices are into a
/// `local` part of the map whose top-left cell is `origin` (clamped to it).
fn bilinear_plan(
    rows: &Tensor,
    cols: &Tensor,
    image: (i64, i64),
    map: (i64, i64),
    origin: (i64, i64),
    local: (i64, i64),
) -> (Tensor, Option<Tensor>) {
    let axis = |c: &Tensor, full: i64, part: i64, o: i64, len: i64| {
        let pos = ((c.to_kind(Kind::Double) + 0.5) * (part as f64 / full as f64) - 0.5)
            .clamp(0.0, (part - 1) as f64);
        let lo = pos.floor();
        let frac = (&pos - &lo).to_kind(Kind::Float);
        let lo = lo.to_kind(Kind::Int64);
        let hi = (&lo + 1).clamp_max(part - 1);
        ((lo - o).clamp(0, len - 1), (hi - o).clamp(0, len - 1), frac)
    };
    let (y0, y1, fy) = axis(rows, image.0, map.0, origin.0, local.0);
    let (x0, x1, fx) = axis(cols, image.1, map.1, origin.1, local.1);
    let wl = local.1;
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
