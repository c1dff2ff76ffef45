//! Image files <-> tensors.
//!
//! Everything inside nst works on RGB float tensors in [0, 1], shaped
//! `[1, 3, H, W]`. Loading accepts 8/16-bit, grayscale, RGB and RGBA files in
//! any format the `image` crate decodes (PNG, JPEG, BMP, TIFF, WebP, GIF):
//! grayscale is replicated to three channels and alpha is composited over white.
use crate::{fsutil, Error, Result};
use image::{imageops::FilterType, DynamicImage, ImageFormat, ImageReader, Rgb32FImage};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Images smaller than this on either side are rejected: VGG's five pooling
/// stages leave nothing of them.
pub const MIN_IMAGE_SIDE: u32 = 32;

/// The extensions read as images (any case): the formats `decode_rgb` checks.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "gif"];

/// Whether `path` has an image extension ([`IMAGE_EXTENSIONS`]).
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The images directly in `dir` (not in subfolders), sorted by path. An
/// unreadable folder, or one with no image, is an error naming it.
pub fn images_in(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound {
            path: dir.to_path_buf(),
        },
        _ => Error::BadImage {
            path: dir.to_path_buf(),
            reason: format!("cannot list folder: {e}"),
        },
    })?;
    let mut v: Vec<std::path::PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_image_path(p))
        .collect();
    v.sort();
    if v.is_empty() {
        return Err(Error::BadImage {
            path: dir.to_path_buf(),
            reason: format!("no images in this folder ({})", IMAGE_EXTENSIONS.join(", ")),
        });
    }
    Ok(v)
}
/// Decoding refuses images over this many megapixels (a 16k x 16k image).
pub const MAX_MEGAPIXELS: u64 = 256;

/// Output or working size of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSize {
    /// Keep the file's size.
    Original,
    /// Scale so that the longer side has this many pixels, keeping the aspect ratio.
    LongSide(u32),
    /// Exactly this width and height.
    Exact { width: u32, height: u32 },
}

impl std::str::FromStr for ImageSize {
    type Err = Error;
    /// Parses `512` (long side), `1024x512` (width x height) or `original`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::BadSize {
            given: s.to_string(),
            reason: reason.to_string(),
        };
        let s_trim = s.trim();
        if s_trim.eq_ignore_ascii_case("original") {
            return Ok(ImageSize::Original);
        }
        let parse = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| bad("expected N, WxH or original"))
        };
        let size = match s_trim.split_once(['x', 'X']) {
            Some((w, h)) => ImageSize::Exact {
                width: parse(w)?,
                height: parse(h)?,
            },
            None => ImageSize::LongSide(parse(s_trim)?),
        };
        let (a, b) = match size {
            ImageSize::LongSide(n) => (n, n),
            ImageSize::Exact { width, height } => (width, height),
            ImageSize::Original => unreachable!(),
        };
        if a.min(b) < MIN_IMAGE_SIDE {
            return Err(bad(&format!("sides must be at least {MIN_IMAGE_SIDE} px")));
        }
        if a.max(b) > 16384 {
            return Err(bad("sides must be at most 16384 px"));
        }
        Ok(size)
    }
}

impl ImageSize {
    /// The (width, height) this size gives an image of size (w, h).
    pub fn resolve(self, w: u32, h: u32) -> (u32, u32) {
        match self {
            ImageSize::Original => (w, h),
            ImageSize::Exact { width, height } => (width, height),
            ImageSize::LongSide(n) => {
                let scale = n as f64 / w.max(h) as f64;
                let sw = ((w as f64 * scale).round() as u32).max(1);
                let sh = ((h as f64 * scale).round() as u32).max(1);
                (sw, sh)
            }
        }
    }
}

/// How [`load_image`] sizes and places the image.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    pub size: ImageSize,
    pub device: Device,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            size: ImageSize::Original,
            device: Device::Cpu,
        }
    }
}

fn bad_image(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::BadImage {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Decodes an image file to RGB f32 in [0, 1], validating its size.
pub fn decode_rgb(path: &Path) -> Result<Rgb32FImage> {
    if !path.exists() {
        return Err(Error::NotFound {
            path: path.to_path_buf(),
        });
    }
    // The whole file, once: its structure is checked to its end marker
    // (a truncated file is refused, not decoded in part), then decoded.
    let bytes = std::fs::read(path).map_err(|e| bad_image(path, e))?;
    crate::integrity::check_complete(&bytes).map_err(|e| bad_image(path, e))?;
    let open = || -> Result<ImageReader<std::io::Cursor<&[u8]>>> {
        ImageReader::new(std::io::Cursor::new(bytes.as_slice()))
            .with_guessed_format()
            .map_err(|e| bad_image(path, e))
    };
    let (w, h) = open()?.into_dimensions().map_err(|e| bad_image(path, e))?;
    let mp = w as u64 * h as u64;
    if mp > MAX_MEGAPIXELS * 1_000_000 {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            width: w,
            height: h,
            megapixels: mp as f64 / 1e6,
            limit: MAX_MEGAPIXELS,
        });
    }
    if w.min(h) < MIN_IMAGE_SIDE {
        return Err(Error::TooSmall {
            path: path.to_path_buf(),
            width: w,
            height: h,
            min: MIN_IMAGE_SIDE,
        });
    }
    let mut reader = open()?;
    reader.no_limits();
    let img = reader.decode().map_err(|e| bad_image(path, e))?;
    Ok(to_rgb_over_white(img))
}

fn to_rgb_over_white(img: DynamicImage) -> Rgb32FImage {
    if !img.color().has_alpha() {
        return img.to_rgb32f();
    }
    let rgba = img.to_rgba32f();
    let (w, h) = rgba.dimensions();
    Rgb32FImage::from_fn(w, h, |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = p[3].clamp(0.0, 1.0);
        image::Rgb([p[0] * a + 1.0 - a, p[1] * a + 1.0 - a, p[2] * a + 1.0 - a])
    })
}

/// Converts an RGB f32 image to a `[1, 3, H, W]` tensor.
pub fn rgb_to_tensor(img: &Rgb32FImage, device: Device) -> Tensor {
    let (w, h) = img.dimensions();
    Tensor::from_slice(img.as_raw())
        .view([h as i64, w as i64, 3])
        .permute([2, 0, 1])
        .unsqueeze(0)
        .contiguous()
        .to_device(device)
}

/// Loads an image as an RGB `[1, 3, H, W]` float tensor in [0, 1].
///
/// Errors name the file: missing, undecodable or truncated, under
/// [`MIN_IMAGE_SIDE`] px, or over [`MAX_MEGAPIXELS`].
pub fn load_image(path: impl AsRef<Path>, opts: LoadOptions) -> Result<Tensor> {
    let path = path.as_ref();
    let img = decode_rgb(path)?;
    let (w, h) = img.dimensions();
    let (tw, th) = opts.size.resolve(w, h);
    if tw.min(th) < MIN_IMAGE_SIDE {
        return Err(Error::TooSmall {
            path: path.to_path_buf(),
            width: tw,
            height: th,
            min: MIN_IMAGE_SIDE,
        });
    }
    Ok(rgb_to_tensor(&resize_rgb(img, tw, th), opts.device))
}

/// Resizes an image to `width × height` with the Lanczos3 filter, clamped to
/// [0, 1] (no copy when the size already matches).
///
/// Every image the project reads goes through this one function, the
/// training pipeline included: a model that sees targets resampled one way
/// in training and another way at inference is judged on statistics it was
/// not trained for (a pseudo-optimizer trained on a bilinear-downsampled
/// brick lost 3.6x of its texture loss on the Lanczos-downsampled one).
pub fn resize_rgb(img: Rgb32FImage, width: u32, height: u32) -> Rgb32FImage {
    if img.dimensions() == (width, height) {
        return img;
    }
    let mut r = image::imageops::resize(&img, width, height, FilterType::Lanczos3);
    r.pixels_mut()
        .for_each(|p| p.0.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0)));
    r
}

/// Resizes a `[B, C, H, W]` tensor to `height x width` (bilinear, antialiased when shrinking).
pub fn resize_to(x: &Tensor, height: i64, width: i64) -> Tensor {
    let (_, _, h, w) = x.size4().unwrap_or((1, 3, height, width));
    if (h, w) == (height, width) {
        return x.shallow_clone();
    }
    if height < h || width < w {
        x.internal_upsample_bilinear2d_aa([height, width], false, None, None)
    } else {
        x.upsample_bilinear2d([height, width], false, None, None)
    }
}

/// Converts a `[1, 3, H, W]` or `[3, H, W]` tensor in [0, 1] to 8-bit RGB.
pub fn tensor_to_rgb8(x: &Tensor) -> Result<image::RgbImage> {
    let x = if x.dim() == 4 {
        x.get(0)
    } else {
        x.shallow_clone()
    };
    let (c, h, w) = x.size3()?;
    if c != 3 {
        return Err(Error::Torch(tch::TchError::Shape(format!(
            "expected 3 channels, got {c}"
        ))));
    }
    let bytes = x
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .clamp(0.0, 1.0)
        .g_mul_scalar(255.0)
        .round()
        .to_kind(Kind::Uint8)
        .permute([1, 2, 0])
        .contiguous()
        .flatten(0, -1);
    let data = Vec::<u8>::try_from(&bytes)?;
    image::RgbImage::from_raw(w as u32, h as u32, data)
        .ok_or_else(|| Error::Torch(tch::TchError::Shape("image buffer size mismatch".into())))
}

/// The output format for a path, from its extension.
pub fn output_format(path: &Path) -> Result<ImageFormat> {
    let fmt = ImageFormat::from_path(path).map_err(|_| Error::Unwritable {
        path: path.to_path_buf(),
        reason: "unknown image extension; use .png, .jpg, .bmp, .tif or .webp".into(),
    })?;
    if !fmt.writing_enabled() {
        return Err(Error::Unwritable {
            path: path.to_path_buf(),
            reason: format!("cannot write {fmt:?} files"),
        });
    }
    Ok(fmt)
}

/// Saves a `[1, 3, H, W]` tensor in [0, 1] atomically; the format follows the extension.
pub fn save_image(x: &Tensor, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let fmt = output_format(path)?;
    let img = tensor_to_rgb8(x)?;
    fsutil::write_atomic(path, |tmp| {
        img.save_with_format(tmp, fmt)
            .map_err(|e| Error::Unwritable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png<P: image::PixelWithColorType>(
        dir: &Path,
        name: &str,
        img: image::ImageBuffer<P, Vec<P::Subpixel>>,
    ) -> std::path::PathBuf
    where
        [P::Subpixel]: image::EncodableLayout,
    {
        let p = dir.join(name);
        img.save(&p).unwrap();
        p
    }

    #[test]
    fn converts_gray_rgba_and_16_bit() {
        let dir = tempfile::tempdir().unwrap();
        let gray = write_png(
            dir.path(),
            "g.png",
            image::GrayImage::from_pixel(40, 50, image::Luma([128])),
        );
        let t = load_image(&gray, LoadOptions::default()).unwrap();
        assert_eq!(t.size(), [1, 3, 50, 40]);
        assert!((t.mean(Kind::Float).double_value(&[]) - 128.0 / 255.0).abs() < 1e-6);

        let rgba = write_png(
            dir.path(),
            "a.png",
            image::RgbaImage::from_pixel(40, 40, image::Rgba([0, 0, 0, 0])),
        );
        let t = load_image(&rgba, LoadOptions::default()).unwrap();
        assert!(
            (t.min().double_value(&[]) - 1.0).abs() < 1e-6,
            "transparent pixels composite to white"
        );

        let g16 = write_png(
            dir.path(),
            "w.png",
            image::ImageBuffer::<image::Rgb<u16>, _>::from_pixel(
                64,
                32,
                image::Rgb([65535u16, 0, 32768]),
            ),
        );
        let t = load_image(&g16, LoadOptions::default()).unwrap();
        let px: Vec<f32> = Vec::try_from(t.get(0).select(1, 0).select(1, 0)).unwrap();
        assert!((px[0] - 1.0).abs() < 1e-6 && px[1].abs() < 1e-6 && (px[2] - 0.5).abs() < 1e-3);
    }

    #[test]
    fn rejects_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.png");
        assert!(matches!(
            load_image(&missing, LoadOptions::default()),
            Err(Error::NotFound { .. })
        ));

        let tiny = write_png(dir.path(), "t.png", image::RgbImage::new(31, 64));
        assert!(matches!(
            load_image(&tiny, LoadOptions::default()),
            Err(Error::TooSmall { .. })
        ));

        let good = write_png(
            dir.path(),
            "ok.png",
            image::RgbImage::from_pixel(64, 64, image::Rgb([1, 2, 3])),
        );
        let bytes = std::fs::read(&good).unwrap();
        let trunc = dir.path().join("trunc.png");
        std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(
            load_image(&trunc, LoadOptions::default()),
            Err(Error::BadImage { .. })
        ));
        let junk = dir.path().join("junk.jpg");
        std::fs::write(&junk, b"definitely not a jpeg").unwrap();
        assert!(matches!(
            load_image(&junk, LoadOptions::default()),
            Err(Error::BadImage { .. })
        ));
    }

    #[test]
    fn resizes_long_side_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let img = image::RgbImage::from_fn(200, 100, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let p = write_png(dir.path(), "i.png", img);
        let t = load_image(
            &p,
            LoadOptions {
                size: ImageSize::LongSide(64),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(t.size(), [1, 3, 32, 64]);
        let full = load_image(&p, LoadOptions::default()).unwrap();
        let out = dir.path().join("o.png");
        save_image(&full, &out).unwrap();
        let back = load_image(&out, LoadOptions::default()).unwrap();
        assert!(f64::try_from((back - full).abs().max()).unwrap() < 1e-6);
        assert!(save_image(&t, dir.path().join("o.unknownext")).is_err());
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(
            "512".parse::<ImageSize>().unwrap(),
            ImageSize::LongSide(512)
        );
        assert_eq!(
            "1024x512".parse::<ImageSize>().unwrap(),
            ImageSize::Exact {
                width: 1024,
                height: 512
            }
        );
        assert!("16".parse::<ImageSize>().is_err());
        assert!("abc".parse::<ImageSize>().is_err());
        assert_eq!(ImageSize::LongSide(256).resolve(512, 340), (256, 170));
    }
}
