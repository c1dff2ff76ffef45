//! Region masks for guided transfer.
//!
//! A mask is a colour image in which equal colours mark corresponding regions
//! in the content and the style (like `photoreal/*_seg`). Real masks have
//! anti-aliased or compressed edges, so each mask is first reduced to its
//! dominant colours (each covering at least `MIN_SHARE` of the pixels) and
//! every pixel is snapped to the nearest of them. Then colours are paired:
//! * `Exact`: a content colour pairs with a style colour equal to it within
//!   `TOLERANCE` per channel (so (0,255,1) pairs with (0,255,0));
//! * `Nearest`: each content colour pairs with the nearest style colour.
//!
//! A content colour with no partner is an error naming the colour. A style
//! colour with no partner only gets a warning: that style region is not used.
use crate::strotss::Guidance;
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::Path;
use tch::Tensor;

/// Share of the pixels a colour must cover to be a region.
pub const MIN_SHARE: f64 = 0.01;
/// Per-channel tolerance of `Exact` matching (out of 255).
pub const TOLERANCE: i32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskMatch {
    Exact,
    Nearest,
}

type Rgb = [u8; 3];

fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

fn dist2(a: Rgb, b: Rgb) -> i32 {
    (0..3).map(|i| (a[i] as i32 - b[i] as i32).pow(2)).sum()
}

/// A mask snapped to its dominant colours: (colours, per-pixel index into them, width, height).
struct Snapped {
    colours: Vec<Rgb>,
    index: Vec<usize>,
    width: u32,
    height: u32,
}

fn load_snapped(path: &Path, size: (u32, u32), warnings: &mut Vec<String>) -> Result<Snapped> {
    let img =
        nst_core::image_io::decode_rgb(path).map_err(|e| Error::Config(format!("mask: {e}")))?;
    let (mw, mh) = img.dimensions();
    let img = if (mw, mh) != size {
        warnings.push(format!(
            "{}: mask is {mw}x{mh} but its image is {}x{}; resized (nearest)",
            path.display(),
            size.0,
            size.1
        ));
        image::imageops::resize(&img, size.0, size.1, image::imageops::FilterType::Nearest)
    } else {
        img
    };
    let px: Vec<Rgb> = img
        .pixels()
        .map(|p| p.0.map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8))
        .collect();
    let mut counts: HashMap<Rgb, usize> = HashMap::new();
    for p in &px {
        *counts.entry(*p).or_default() += 1;
    }
    let mut colours: Vec<(Rgb, usize)> = counts
        .into_iter()
        .filter(|(_, n)| *n as f64 >= MIN_SHARE * px.len() as f64)
        .collect();
    colours.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    // Merge dominant colours that are near-duplicates of a larger one.
    let mut kept: Vec<Rgb> = Vec::new();
    for (c, _) in colours {
        if !kept
            .iter()
            .any(|k| (0..3).all(|i| (k[i] as i32 - c[i] as i32).abs() <= TOLERANCE))
        {
            kept.push(c);
        }
    }
    if kept.is_empty() {
        return Err(Error::Config(format!(
            "{}: mask has no colour covering {:.0}% of it",
            path.display(),
            MIN_SHARE * 100.0
        )));
    }
    let index = px
        .iter()
        .map(|p| {
            (0..kept.len())
                .min_by_key(|&i| dist2(kept[i], *p))
                .unwrap_or(0)
        })
        .collect();
    Ok(Snapped {
        colours: kept,
        index,
        width: size.0,
        height: size.1,
    })
}

fn labels_tensor(index: &[usize], map: &[i64], width: u32, height: u32) -> Tensor {
    let v: Vec<i64> = index.iter().map(|&i| map[i]).collect();
    Tensor::from_slice(&v).view([height as i64, width as i64])
}

/// Builds the label maps of a guided run. `content_size` and each style size are
/// (width, height) of the images the masks belong to. Returns the guidance and warnings.
pub fn load_guidance(
    content_mask: &Path,
    content_size: (u32, u32),
    style_masks: &[(&Path, (u32, u32))],
    mode: MaskMatch,
) -> Result<(Guidance, Vec<String>)> {
    let mut warnings = Vec::new();
    let c = load_snapped(content_mask, content_size, &mut warnings)?;
    let regions = c.colours.len() as i64;
    let mut styles = Vec::new();
    for (path, size) in style_masks {
        let s = load_snapped(path, *size, &mut warnings)?;
        // For each style colour, the content region it belongs to (or `regions`: unused).
        let mut map = vec![regions; s.colours.len()];
        for (r, cc) in c.colours.iter().enumerate() {
            let partner = match mode {
                MaskMatch::Exact => (0..s.colours.len()).find(|&i| {
                    (0..3).all(|k| (s.colours[i][k] as i32 - cc[k] as i32).abs() <= TOLERANCE)
                }),
                MaskMatch::Nearest => {
                    (0..s.colours.len()).min_by_key(|&i| dist2(s.colours[i], *cc))
                }
            };
            match partner {
                Some(i) => {
                    if map[i] == regions {
                        map[i] = r as i64;
                    }
                }
                None => {
                    return Err(Error::Config(format!(
                        "content mask colour {} has no partner in style mask {} (its colours: {}); use --mask-match nearest to pair by nearest colour",
                        hex(*cc),
                        path.display(),
                        s.colours.iter().map(|c| hex(*c)).collect::<Vec<_>>().join(", ")
                    )))
                }
            }
        }
        for (i, m) in map.iter().enumerate() {
            if *m == regions {
                warnings.push(format!(
                    "{}: style region {} has no partner in the content mask; it is not used",
                    path.display(),
                    hex(s.colours[i])
                ));
            }
        }
        styles.push(labels_tensor(&s.index, &map, s.width, s.height));
    }
    let identity: Vec<i64> = (0..regions).collect();
    let content = labels_tensor(&c.index, &identity, c.width, c.height);
    Ok((
        Guidance {
            content,
            styles,
            regions,
        },
        warnings,
    ))
}
