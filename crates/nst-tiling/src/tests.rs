#![allow(clippy::unwrap_used)]
use super::*;
use tch::{Device, Kind, Tensor};

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).unwrap()
}

#[test]
fn cores_partition_the_image_and_windows_respect_the_tile() {
    for &(h, w, tile, halo, align) in &[
        (1024, 1024, 512, 64, 8),
        (1000, 1536, 256, 48, 8),
        (4096, 2048, 1024, 96, 16),
        (96, 200, 64, 8, 8),
        (300, 300, 300, 32, 1),
    ] {
        let t = Tiling::new(tile, halo, align).unwrap();
        let g = t.grid(h, w).unwrap();
        let count = Tensor::zeros([h, w], (Kind::Int, Device::Cpu));
        for tile in &g.tiles {
            let c = tile.core;
            let mut r = c.crop(&count);
            r += 1;
            assert!(
                tile.window.h <= t.tile && tile.window.w <= t.tile,
                "{tile:?}"
            );
            // The halo is there on every inner side.
            assert!(c.y == 0 || c.y - tile.window.y == t.halo, "{tile:?}");
            assert!(c.x == 0 || c.x - tile.window.x == t.halo, "{tile:?}");
            assert!(c.y + c.h == h || tile.window.y + tile.window.h - (c.y + c.h) == t.halo);
            assert!(c.x + c.w == w || tile.window.x + tile.window.w - (c.x + c.w) == t.halo);
            for v in [c.y, c.x, tile.window.y, tile.window.x] {
                assert_eq!(v % align, 0, "{tile:?}");
            }
        }
        assert_eq!(count.min().int64_value(&[]), 1);
        assert_eq!(count.max().int64_value(&[]), 1);
    }
}

#[test]
fn the_number_of_tiles_is_minimal_along_each_axis() {
    // 1024 with windows of 512 and halo 64: edge cores hold 448, middle 384:
    // two cannot cover 1024 (896), three can (1280).
    let g = Tiling::new(512, 64, 8).unwrap().grid(1024, 1024).unwrap();
    assert_eq!(g.len(), 9);
    // 800 fits in two edge cores of 448.
    let g = Tiling::new(512, 64, 8).unwrap().grid(800, 512).unwrap();
    assert_eq!(g.len(), 2);
}

#[test]
fn stitching_an_exact_local_operator_reproduces_the_whole_image() {
    tch::manual_seed(0);
    let x = Tensor::rand([1, 3, 200, 264], (Kind::Float, Device::Cpu));
    // A 7x7 box blur with zero padding: radius 3, so a halo of 3 is exact.
    let k = Tensor::ones([3, 1, 7, 7], (Kind::Float, Device::Cpu)) / 49.0;
    let op = |t: &Tensor| t.conv2d(&k, None::<Tensor>, [1, 1], [3, 3], [1, 1], 3);
    let whole = op(&x);
    let tiling = Tiling::new(64, 8, 8).unwrap();
    let g = tiling.grid(200, 264).unwrap();
    assert!(g.len() > 9 && g.blend >= 1);
    let tiled = g
        .stitch(3, |t| Ok::<_, ()>(op(&t.window.crop(&x))))
        .unwrap();
    assert!(
        max_abs(&tiled, &whole) < 1e-5,
        "{}",
        max_abs(&tiled, &whole)
    );
}

#[test]
fn blend_weights_sum_to_one() {
    let g = Tiling::new(128, 32, 8).unwrap().grid(300, 410).unwrap();
    let ones = g
        .stitch(1, |t| {
            Ok::<_, ()>(Tensor::ones(
                [1, 1, t.window.h, t.window.w],
                (Kind::Float, Device::Cpu),
            ))
        })
        .unwrap();
    assert!(max_abs(&ones, &Tensor::ones_like(&ones)) < 1e-6);
}

#[test]
fn a_too_short_halo_shows_at_the_boundaries_and_the_blend_softens_it() {
    // The same blur with a halo of 0 is wrong near the inner boundaries only.
    let x = Tensor::ones([1, 1, 64, 64], (Kind::Float, Device::Cpu));
    let k = Tensor::ones([1, 1, 7, 7], (Kind::Float, Device::Cpu)) / 49.0;
    let op = |t: &Tensor| t.conv2d(&k, None::<Tensor>, [1, 1], [3, 3], [1, 1], 1);
    let g = Tiling::new(32, 0, 8).unwrap().grid(64, 64).unwrap();
    let tiled = g
        .stitch(1, |t| Ok::<_, ()>(op(&t.window.crop(&x))))
        .unwrap();
    let whole = op(&x);
    let diff = (&tiled - &whole).abs();
    // Row 31/32 is a tile boundary: the error is there, not at row 16.
    assert!(f64::try_from(diff.select(2, 31).max()).unwrap() > 0.1);
    assert!(f64::try_from(diff.narrow(2, 8, 16).narrow(3, 8, 16).max()).unwrap() < 1e-6);
}

#[test]
fn bad_tilings_are_refused_with_the_size_to_use() {
    let e = Tiling::new(100, 64, 8).unwrap_err();
    assert_eq!(
        e,
        Error::TileTooSmall {
            tile: 100,
            halo: 64,
            align: 8,
            min: 136
        }
    );
    assert!(e.to_string().contains("--tile 136"), "{e}");
    let e = Tiling::new(512, 64, 8).unwrap().grid(256, 300).unwrap_err();
    assert!(
        e.to_string().contains("larger than the image (300x256)"),
        "{e}"
    );
}

#[test]
fn memory_sizes_parse() {
    assert_eq!(parse_bytes("3G").unwrap(), 3 << 30);
    assert_eq!(parse_bytes("512M").unwrap(), 512 << 20);
    assert_eq!(parse_bytes("1.5GiB").unwrap(), 3 << 29);
    assert_eq!(parse_bytes("2048").unwrap(), 2048);
    assert_eq!(parse_bytes("64kb").unwrap(), 64 << 10);
    for bad in ["", "G", "-1G", "3X", "nanG"] {
        assert!(parse_bytes(bad).is_err(), "{bad}");
    }
}

#[test]
fn seam_ratio_finds_a_step_at_a_boundary_only() {
    let g = Tiling::new(64, 8, 8).unwrap().grid(128, 128).unwrap();
    // A smooth ramp has no seams.
    let ramp = Tensor::arange(128, (Kind::Float, Device::Cpu)).reshape([1, 1, 1, 128]) / 128.0;
    let smooth = ramp.expand([1, 3, 128, 128], false) + ramp.reshape([1, 1, 128, 1]);
    let r = g.seam_ratio(&smooth);
    assert!((r - 1.0).abs() < 1e-6, "{r}");
    // Offsetting one tile's core shows up.
    let stepped = smooth.copy();
    let c = g.tiles[0].core;
    let mut part = c.crop(&stepped);
    part += 0.05;
    assert!(g.seam_ratio(&stepped) > 1.5, "{}", g.seam_ratio(&stepped));
}

#[test]
fn the_plan_runs_whole_when_it_fits_and_tiles_within_the_budget_otherwise() {
    let fp = nst_core::Footprint::new("test work", 1000);
    const G: u64 = 1 << 30;
    // 1024² at 1000 B/px (×1.2) is about 1.3 GB: whole within 4G.
    assert_eq!(
        plan(&fp, (1024, 1024), 64, 8, None, Some(4 * G)).unwrap(),
        Plan::Whole
    );
    assert_eq!(
        plan(&fp, (1024, 1024), 64, 8, None, None).unwrap(),
        Plan::Whole
    );
    // 4096² does not fit in 4G: the largest tile that does, automatically.
    let Plan::Tiled { tiling, auto: true } =
        plan(&fp, (4096, 4096), 64, 8, None, Some(4 * G)).unwrap()
    else {
        panic!("expected an automatic tiling")
    };
    let whole = 4096 * 4096 * WHOLE_IMAGE_BYTES_PER_PIXEL;
    assert!(fp.bytes(tiling.tile, tiling.tile, 1) + whole <= 4 * G);
    assert!(fp.bytes(tiling.tile + 8, tiling.tile + 8, 1) + whole > 4 * G);
    // A tile the budget cannot hold, and a budget nothing fits in.
    let e = plan(&fp, (4096, 4096), 64, 8, Some(2048), Some(2 * G)).unwrap_err();
    assert!(e.to_string().contains("--max-memory 2.00G is below"), "{e}");
    // An automatic tile keeps its core at least as wide as the halo (64 px):
    // 192 px, not the 136 px (8-px core) that --tile would accept.
    let e = plan(&fp, (4096, 4096), 64, 8, None, Some(G / 2)).unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot fit even its smallest useful tile (192 px"),
        "{e}"
    );
    let need = fp.bytes(192, 192, 1) + whole;
    assert!(
        e.to_string()
            .contains(&format!("needs {:.2}G", need as f64 / G as f64)),
        "{e}"
    );
    let tight = fp.bytes(200, 200, 1) + whole;
    let Plan::Tiled { tiling, .. } = plan(&fp, (4096, 4096), 64, 8, None, Some(tight)).unwrap()
    else {
        panic!("expected a tiling")
    };
    assert_eq!(tiling.tile, 200, "the largest aligned tile in the budget");
    // An image smaller than the smallest useful tile falls back to the
    // smallest that works at all.
    let small = fp.bytes(136, 136, 1) + 180 * 180 * WHOLE_IMAGE_BYTES_PER_PIXEL;
    let Plan::Tiled { tiling, .. } = plan(&fp, (180, 180), 64, 8, None, Some(small)).unwrap()
    else {
        panic!("expected a tiling")
    };
    assert_eq!(tiling.tile, 136);
    // A tile the user chose is kept, and checked.
    let p = plan(&fp, (1024, 1024), 64, 8, Some(512), None).unwrap();
    assert_eq!(p.tiling().map(|t| t.tile), Some(512));
    assert!(plan(&fp, (1024, 1024), 64, 8, Some(100), None).is_err());
}

/// With a reserve, the automatic tile is the largest that leaves it free
/// in the feature room; when even the smallest useful tile cannot, the
/// plan is the one without a reserve. A tile the user chose is kept.
#[test]
fn the_plan_leaves_a_reserve_free_when_a_tile_can() {
    let fp = nst_core::Footprint::new("test work", 1000);
    const G: u64 = 1 << 30;
    let state = WHOLE_IMAGE_BYTES_PER_PIXEL;
    let whole = 4096 * 4096 * state;
    let auto = |reserve: Option<u64>, budget: u64| match plan_with_state(
        &fp,
        state,
        reserve,
        (4096, 4096),
        64,
        8,
        None,
        Some(budget),
    ) {
        Ok(Plan::Tiled { tiling, auto: true }) => tiling,
        other => panic!("expected an automatic tiling, got {other:?}"),
    };
    let plain = auto(None, 4 * G);
    let t = auto(Some(G), 4 * G);
    assert!(t.tile < plain.tile, "{} vs {}", t.tile, plain.tile);
    let c = t.cache_bytes.unwrap();
    assert!(c >= G, "the reserve is free: {c}");
    assert!(fp.bytes(t.tile + 8, t.tile + 8, 1) + whole + G > 4 * G);
    // No useful tile leaves 3.9G free: the plan ignores the reserve.
    assert_eq!(auto(Some(39 * G / 10), 4 * G), plain);
    let p = plan_with_state(
        &fp,
        state,
        Some(G),
        (4096, 4096),
        64,
        8,
        Some(512),
        Some(4 * G),
    );
    assert_eq!(p.unwrap().tiling().map(|t| t.tile), Some(512));
}

#[test]
fn shifted_grids_partition_the_image_and_move_every_boundary() {
    let t = Tiling::new(256, 64, 8).unwrap();
    let (h, w) = (1000, 704);
    let mut seen_rows = std::collections::BTreeSet::new();
    for k in 0..12i64 {
        let shift = (k * 53, k * 37);
        let g = t.grid_shifted(h, w, shift).unwrap();
        let count = Tensor::zeros([h, w], (Kind::Int, Device::Cpu));
        for tile in &g.tiles {
            let c = tile.core;
            let mut r = c.crop(&count);
            r += 1;
            assert!(
                tile.window.h <= t.tile && tile.window.w <= t.tile,
                "{tile:?}"
            );
            assert!(c.y == 0 || c.y - tile.window.y == t.halo, "{tile:?}");
            assert!(c.y + c.h == h || tile.window.y + tile.window.h - (c.y + c.h) == t.halo);
            for v in [c.y, c.x, tile.window.y, tile.window.x] {
                assert_eq!(v % 8, 0, "{tile:?}");
            }
            if c.y > 0 {
                seen_rows.insert(c.y);
            }
        }
        assert_eq!(count.min().int64_value(&[]), 1, "shift {shift:?}");
        assert_eq!(count.max().int64_value(&[]), 1, "shift {shift:?}");
    }
    // Twelve shifts put the boundaries on many different rows: at least
    // three places for each boundary of the regular grid.
    let regular = t.grid(h, w).unwrap();
    let rows = regular
        .tiles
        .iter()
        .filter(|t| t.core.y > 0 && t.core.x == 0)
        .count();
    eprintln!(
        "{} distinct boundary rows for {rows} boundaries",
        seen_rows.len()
    );
    assert!(
        seen_rows.len() >= 3 * rows,
        "{} distinct boundary rows for {rows} boundaries",
        seen_rows.len()
    );
}

/// Σ F Fᵀ over the cores of a shifted grid equals the whole image's, for a
/// pointwise map at stride 1 and a 2 × 2 average pooling at stride 2 (both
/// exact on any window aligned to 2): checked against Gram matrices
/// computed directly on the whole maps (F Fᵀ / N with F = [C, N]).
#[test]
fn gram_sums_over_cores_equal_the_whole_image_grams() {
    tch::manual_seed(5);
    let (h, w) = (120, 88);
    let image = Tensor::rand([1, 3, h, w], (Kind::Float, Device::Cpu));
    let mix = Tensor::randn([4, 3, 1, 1], (Kind::Float, Device::Cpu));
    let maps = |x: &Tensor| {
        let a = x.conv2d(&mix, None::<Tensor>, 1, 0, 1, 1).relu();
        let b = x.avg_pool2d(2, 2, 0, false, true, None::<i64>);
        vec![(a, 1i64), (b, 2i64)]
    };
    let grid = Tiling::new(64, 8, 2)
        .unwrap()
        .grid_shifted(h, w, (14, 22))
        .unwrap();
    assert!(grid.len() >= 4, "{} tiles", grid.len());
    let sums = grid
        .gram_sums(&image, "test", |_, window| {
            Ok::<_, std::convert::Infallible>(maps(window))
        })
        .unwrap();
    for (l, (f, _)) in maps(&image).into_iter().enumerate() {
        let c = f.size()[1];
        let f = f.reshape([c, -1]).to_kind(Kind::Double);
        let n = f.size()[1];
        let whole = f.matmul(&f.transpose(0, 1)) / n as f64;
        assert_eq!(sums.counts[l], n, "map {l}: every position counted once");
        let e = max_abs(&sums.grams()[l].to_kind(Kind::Double), &whole);
        assert!(e < 1e-6, "map {l}: Gram over cores off by {e:.2e}");
    }
}
