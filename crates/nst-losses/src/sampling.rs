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
/// it had been upsampled to `image_hw` with `align_corners = false`, then the
/// layers are concatenated along channels.
///
/// # Shapes
/// `features: [1, C_l, H_l, W_l]` each, `coords: [N, 2]` (row, col) → `[N, ΣC_l]`
pub fn hypercolumns(features: &[&Tensor], coords: &Tensor, image_hw: (i64, i64)) -> Tensor {
    let (h, w) = image_hw;
    let kind = features.first().map(|f| f.kind()).unwrap_or(Kind::Float);
    let coords = coords.to_kind(Kind::Double);
    // Normalised pixel centres in [-1, 1] (align_corners = false): x = (2c + 1)/W - 1.
    let y = (coords.select(1, 0) * 2.0 + 1.0) / h as f64 - 1.0;
    let x = (coords.select(1, 1) * 2.0 + 1.0) / w as f64 - 1.0;
    let n = coords.size()[0];
    let grid = Tensor::stack(&[x, y], 1).view([1, 1, n, 2]).to_kind(kind);
    let cols: Vec<Tensor> = features
        .iter()
        .map(|f| {
            // mode 0 = bilinear, padding 1 = border (clamps like interpolate's edge handling)
            let s = f.grid_sampler_2d(&grid.to_kind(f.kind()), 0, 1, false); // [1, C, 1, N]
            s.squeeze_dim(0).squeeze_dim(1).transpose(0, 1) // [N, C]
        })
        .collect();
    Tensor::cat(&cols, 1)
}
