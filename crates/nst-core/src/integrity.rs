//! Whether an image file is complete, checked on its container structure
//! before decoding.
//!
//! The decoders of the `image` crate tolerate truncation in some formats: a
//! JPEG cut anywhere after its headers decodes to an image whose missing part
//! is grey, and is then stylised, or trained on, as if it were whole. PIL
//! refuses such a file ("image file is truncated"); so do we, in every format
//! we read, by walking the container to its end marker:
//!
//! * JPEG: the marker segments, every scan's entropy-coded data, up to EOI;
//! * PNG: the chunks (length, type, data, CRC) up to IEND;
//! * WebP: the RIFF size against the file's;
//! * GIF: the blocks (extensions, image descriptors with their LZW data) up
//!   to the trailer;
//! * BMP: the header's file size and pixel-data offset against the file's;
//! * TIFF: every strip or tile the first IFD points at lies inside the file.
//!
//! Bytes after the end marker are allowed (cameras and editors append data).

/// Returns `Err(reason)` when `bytes` (a whole file) ends before its format's
/// end, or its structure is broken; `Ok(())` for complete files and for
/// formats not recognised here (the decoder then has the last word).
pub fn check_complete(bytes: &[u8]) -> Result<(), String> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        jpeg(bytes)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        png(bytes)
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        webp(bytes)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        gif(bytes)
    } else if bytes.starts_with(b"BM") {
        bmp(bytes)
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        tiff(bytes)
    } else {
        Ok(())
    }
}

const TRUNCATED: &str = "the file is truncated";

fn be16(b: &[u8], i: usize) -> Option<usize> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]) as usize)
}

fn jpeg(b: &[u8]) -> Result<(), String> {
    let mut i = 2;
    let mut scans = 0;
    loop {
        // Find the next marker (fill bytes 0xFF may repeat).
        if i >= b.len() {
            return Err(format!(
                "{TRUNCATED} (JPEG ends before its end-of-image marker)"
            ));
        }
        if b[i] != 0xFF {
            return Err(format!("broken JPEG structure at byte {i}"));
        }
        while i < b.len() && b[i] == 0xFF {
            i += 1;
        }
        let Some(&m) = b.get(i) else {
            return Err(format!("{TRUNCATED} (JPEG ends inside a marker)"));
        };
        i += 1;
        match m {
            0xD9 => {
                return if scans > 0 {
                    Ok(())
                } else {
                    Err("the JPEG has no image data (no scan before its end marker)".into())
                };
            }
            0x01 | 0xD0..=0xD7 => continue, // no length
            _ => {}
        }
        let len =
            be16(b, i).ok_or_else(|| format!("{TRUNCATED} (JPEG ends inside a segment header)"))?;
        if len < 2 {
            return Err(format!("broken JPEG segment length at byte {i}"));
        }
        if i + len > b.len() {
            return Err(format!("{TRUNCATED} (a JPEG segment runs past the end)"));
        }
        i += len;
        if m == 0xDA {
            scans += 1;
            // Entropy-coded data: up to the next marker that is not a stuffed
            // 0xFF00 or a restart marker.
            loop {
                match b.get(i) {
                    None => {
                        return Err(format!(
                            "{TRUNCATED} (JPEG ends inside the data of scan {scans})"
                        ))
                    }
                    Some(0xFF) => {
                        let mut j = i + 1;
                        while b.get(j) == Some(&0xFF) {
                            j += 1;
                        }
                        match b.get(j) {
                            None => {
                                return Err(format!(
                                    "{TRUNCATED} (JPEG ends inside the data of scan {scans})"
                                ))
                            }
                            Some(0x00) | Some(0xD0..=0xD7) => i = j + 1,
                            Some(_) => {
                                i = j - 1; // at the last 0xFF before the marker code
                                break;
                            }
                        }
                    }
                    Some(_) => i += 1,
                }
            }
        }
    }
}

fn png(b: &[u8]) -> Result<(), String> {
    let mut i = 8;
    let mut idat = false;
    loop {
        if i + 8 > b.len() {
            return Err(format!("{TRUNCATED} (PNG ends before its IEND chunk)"));
        }
        let len = u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let kind = &b[i + 4..i + 8];
        let end = i
            .checked_add(12)
            .and_then(|v| v.checked_add(len))
            .ok_or("broken PNG chunk length")?;
        if end > b.len() {
            return Err(format!(
                "{TRUNCATED} (PNG chunk {} runs past the end)",
                String::from_utf8_lossy(kind)
            ));
        }
        let crc = u32::from_be_bytes([b[end - 4], b[end - 3], b[end - 2], b[end - 1]]);
        if crc32(&b[i + 4..end - 4]) != crc {
            return Err(format!(
                "corrupt PNG: chunk {} fails its CRC check",
                String::from_utf8_lossy(kind)
            ));
        }
        idat |= kind == b"IDAT";
        if kind == b"IEND" {
            return if idat {
                Ok(())
            } else {
                Err("the PNG has no image data (no IDAT chunk)".into())
            };
        }
        i = end;
    }
}

/// CRC-32 (ISO-HDLC, as PNG uses), bitwise: PNG files are read once.
fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &byte in data {
        c ^= byte as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn webp(b: &[u8]) -> Result<(), String> {
    let size = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
    if b.len() < size + 8 {
        return Err(format!(
            "{TRUNCATED} (WebP: {} of the {} bytes its header announces)",
            b.len(),
            size + 8
        ));
    }
    Ok(())
}

fn gif(b: &[u8]) -> Result<(), String> {
    let t = || format!("{TRUNCATED} (GIF ends before its trailer)");
    let flags = *b.get(10).ok_or_else(t)?;
    let mut i = 13;
    if flags & 0x80 != 0 {
        i += 3 << ((flags & 7) + 1);
    }
    // Sub-blocks: size byte, data, … , 0.
    let skip_blocks = |mut i: usize| -> Result<usize, String> {
        loop {
            let n = *b.get(i).ok_or_else(t)? as usize;
            i += 1;
            if n == 0 {
                return Ok(i);
            }
            i += n;
        }
    };
    let mut frames = 0;
    loop {
        match *b.get(i).ok_or_else(t)? {
            0x3B => {
                return if frames > 0 {
                    Ok(())
                } else {
                    Err("the GIF has no image".into())
                }
            }
            0x21 => i = skip_blocks(i + 2)?,
            0x2C => {
                let lflags = *b.get(i + 9).ok_or_else(t)?;
                i += 10;
                if lflags & 0x80 != 0 {
                    i += 3 << ((lflags & 7) + 1);
                }
                i += 1; // LZW minimum code size
                i = skip_blocks(i)?;
                frames += 1;
            }
            other => {
                return Err(format!(
                    "broken GIF structure (block 0x{other:02X} at byte {i})"
                ))
            }
        }
    }
}

fn bmp(b: &[u8]) -> Result<(), String> {
    if b.len() < 14 {
        return Err(format!("{TRUNCATED} (BMP header)"));
    }
    let size = u32::from_le_bytes([b[2], b[3], b[4], b[5]]) as usize;
    let offset = u32::from_le_bytes([b[10], b[11], b[12], b[13]]) as usize;
    if offset >= b.len() || (size > 0 && b.len() < size) {
        return Err(format!(
            "{TRUNCATED} (BMP: {} bytes, its header announces {size})",
            b.len()
        ));
    }
    Ok(())
}

fn tiff(b: &[u8]) -> Result<(), String> {
    let le = b[0] == b'I';
    let t = || format!("{TRUNCATED} (TIFF)");
    let u16_at = |i: usize| -> Option<usize> {
        let v = [*b.get(i)?, *b.get(i + 1)?];
        Some(if le {
            u16::from_le_bytes(v)
        } else {
            u16::from_be_bytes(v)
        } as usize)
    };
    let u32_at = |i: usize| -> Option<usize> {
        let v = [*b.get(i)?, *b.get(i + 1)?, *b.get(i + 2)?, *b.get(i + 3)?];
        Some(if le {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        } as usize)
    };
    let ifd = u32_at(4).ok_or_else(t)?;
    let n = u16_at(ifd).ok_or_else(t)?;
    // The IFD ends with the offset of the next one: it must be in the file.
    u32_at(ifd + 2 + 12 * n).ok_or_else(t)?;
    // (offsets, counts) of strips (273/279) or tiles (324/325).
    let mut offsets: Vec<usize> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    for k in 0..n {
        let e = ifd + 2 + 12 * k;
        let tag = u16_at(e).ok_or_else(t)?;
        let typ = u16_at(e + 2).ok_or_else(t)?;
        let cnt = u32_at(e + 4).ok_or_else(t)?;
        let unit = match typ {
            1 | 2 | 6 | 7 => 1,
            3 | 8 => 2,
            4 | 9 | 11 => 4,
            5 | 10 | 12 => 8,
            _ => 1,
        };
        if cnt.saturating_mul(unit) > 4 {
            let at = u32_at(e + 8).ok_or_else(t)?;
            if at.saturating_add(cnt.saturating_mul(unit)) > b.len() {
                return Err(t());
            }
        }
        if !matches!(tag, 273 | 279 | 324 | 325) {
            continue;
        }
        let width = if typ == 3 { 2 } else { 4 };
        let values = if cnt * width <= 4 {
            e + 8
        } else {
            u32_at(e + 8).ok_or_else(t)?
        };
        let mut v = Vec::with_capacity(cnt.min(1 << 20));
        for j in 0..cnt {
            let x = if typ == 3 {
                u16_at(values + j * 2)
            } else {
                u32_at(values + j * 4)
            };
            v.push(x.ok_or_else(t)?);
        }
        if matches!(tag, 273 | 324) {
            offsets = v;
        } else {
            counts = v;
        }
    }
    for (o, c) in offsets.iter().zip(&counts) {
        if o + c > b.len() {
            return Err(format!(
                "{TRUNCATED} (TIFF: image data runs to byte {}, the file has {})",
                o + c,
                b.len()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use image::{DynamicImage, ImageFormat, RgbImage};

    fn picture() -> DynamicImage {
        // Smooth gradients with an edge: something an encoder has work on.
        DynamicImage::ImageRgb8(RgbImage::from_fn(97, 81, |x, y| {
            let e = if (x as i32 - 40).pow(2) + (y as i32 - 35).pow(2) < 400 {
                90
            } else {
                0
            };
            image::Rgb([(x * 2 + e) as u8, (y * 3) as u8, ((x * y) % 200 + e) as u8])
        }))
    }

    fn encode(fmt: ImageFormat) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        let img = if fmt == ImageFormat::Gif {
            DynamicImage::ImageRgba8(picture().to_rgba8())
        } else {
            picture()
        };
        img.write_to(&mut buf, fmt).unwrap();
        buf.into_inner()
    }

    /// Complete files of every format we read pass, and decode; each cut at
    /// 10 points (from 5 % to the last byte but one) is refused by this check,
    /// and so by `decode_rgb`, with a reason that says so.
    #[test]
    fn truncated_files_of_every_format_are_refused_at_ten_cut_points() {
        let dir = tempfile::tempdir().unwrap();
        for (fmt, ext) in [
            (ImageFormat::Jpeg, "jpg"),
            (ImageFormat::Png, "png"),
            (ImageFormat::WebP, "webp"),
            (ImageFormat::Gif, "gif"),
            (ImageFormat::Bmp, "bmp"),
            (ImageFormat::Tiff, "tif"),
        ] {
            let full = encode(fmt);
            check_complete(&full).unwrap_or_else(|e| panic!("{ext}: complete file refused: {e}"));
            let p = dir.path().join(format!("full.{ext}"));
            std::fs::write(&p, &full).unwrap();
            crate::image_io::decode_rgb(&p).unwrap();
            let n = full.len();
            for k in 0..10 {
                let cut = if k == 9 {
                    n - 1
                } else {
                    n * (5 + 10 * k) / 100
                };
                let part = &full[..cut];
                let e = check_complete(part)
                    .expect_err(&format!("{ext} cut at {cut} of {n} bytes was accepted"));
                assert!(!e.is_empty());
                let p = dir.path().join(format!("cut{k}.{ext}"));
                std::fs::write(&p, part).unwrap();
                let err = crate::image_io::decode_rgb(&p)
                    .expect_err(&format!("{ext} cut at {cut}: decoded"))
                    .to_string();
                assert!(err.contains(&format!("cut{k}.{ext}")), "{err}");
                assert!(!err.contains('\n'), "one line: {err}");
            }
        }
    }

    /// Data after a JPEG's end marker (as cameras append) is accepted; a
    /// flipped CRC byte in a PNG is refused; a byte stream of no known
    /// format is left to the decoder.
    #[test]
    fn trailing_data_flipped_crc_and_unknown_formats() {
        let mut j = encode(ImageFormat::Jpeg);
        j.extend_from_slice(b"trailing bytes after EOI");
        check_complete(&j).unwrap();
        let mut p = encode(ImageFormat::Png);
        let k = p.len() - 20;
        p[k] ^= 0x40;
        assert!(check_complete(&p).unwrap_err().contains("CRC"));
        check_complete(b"not an image at all").unwrap();
    }

    /// Real files: the sample photos setup copies (PNG and JPEG from
    /// scikit-image) and the shared test images, where present, all pass.
    #[test]
    fn real_photos_pass() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut seen = 0;
        for d in [
            "samples/content",
            "samples/style",
            "samples/texture",
            "../shared/images/content",
            "../shared/images/style",
        ] {
            let Ok(rd) = std::fs::read_dir(root.join(d)) else {
                continue;
            };
            for f in rd.flatten() {
                let bytes = std::fs::read(f.path()).unwrap();
                check_complete(&bytes).unwrap_or_else(|e| panic!("{}: {e}", f.path().display()));
                seen += 1;
            }
        }
        eprintln!("{seen} real images checked");
    }
}
