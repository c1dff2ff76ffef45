//! Histogram matching, rotations, closed-form moment matching, shapes, and
//! an end-to-end run with untrained decoders.
#![allow(clippy::unwrap_used)]
use crate::transforms::*;
use crate::*;
use nst_testkit::vgg19_weights;
use nst_train::TrainModel;
use nst_vgg::{Pooling, Vgg, VggOptions};
use tch::{nn::Module, Device, Kind, Tensor};

const F32: (Kind, Device) = (Kind::Float, Device::Cpu);

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn histogram_matching_lands_exactly_on_the_target_values() {
    let _rng = nst_testkit::rng_lock();
    tch::manual_seed(3);
    let src = Tensor::randn([50, 4], F32);
    let tgt = Tensor::rand([50, 4], F32) * 7.0 - 2.0;
    let out = histogram_match(&src, &tgt);
    // Same multiset per column as the target…
    let (so, _) = out.sort(0, false);
    let (st, _) = tgt.sort(0, false);
    assert!(max_abs(&so, &st) == 0.0, "sorted output = sorted target");
    // …in the source's order.
    let (_, rank_src) = src.sort(0, false);
    let (_, rank_out) = out.sort(0, false);
    assert_eq!(
        max_abs(
            &rank_src.to_kind(Kind::Float),
            &rank_out.to_kind(Kind::Float)
        ),
        0.0,
        "order preserved"
    );
    // Different sizes: quantiles interpolated, still within the target's range and ordered.
    let tgt2 = Tensor::rand([173, 4], F32);
    let out2 = histogram_match(&src, &tgt2);
    assert!(out2.min().double_value(&[]) >= tgt2.min().double_value(&[]) - 1e-6);
    assert!(out2.max().double_value(&[]) <= tgt2.max().double_value(&[]) + 1e-6);
}

#[test]
fn rotations_are_orthogonal() {
    let _rng = nst_testkit::rng_lock();
    for d in [2, 16, 128] {
        let r = random_rotation(d, Device::Cpu);
        let eye = Tensor::eye(d, F32);
        assert!(
            max_abs(&r.matmul(&r.transpose(0, 1)), &eye) < 1e-5,
            "R Rᵀ = I at d = {d}"
        );
        assert!(max_abs(&r.transpose(0, 1).matmul(&r), &eye) < 1e-5);
    }
}

fn cov(x: &Tensor) -> Tensor {
    let x = x.to_kind(Kind::Double);
    let xc = &x - x.mean_dim([0i64].as_slice(), true, Kind::Double);
    xc.transpose(0, 1).matmul(&xc) / (x.size()[0] - 1) as f64
}

#[test]
fn closed_form_matching_reproduces_the_target_covariance() {
    let _rng = nst_testkit::rng_lock();
    tch::manual_seed(5);
    let mix = Tensor::randn([6, 6], F32);
    let src = Tensor::randn([400, 6], F32).matmul(&mix) + 3.0;
    let tgt = Tensor::randn([300, 6], F32).matmul(&Tensor::randn([6, 6], F32)) * 0.5 - 1.0;
    for s in [Strategy::Symmetric, Strategy::Pca, Strategy::Cholesky] {
        let out = match_moments(&src, &tgt, s);
        let err = max_abs(&cov(&out), &cov(&tgt)) / cov(&tgt).abs().max().double_value(&[]);
        assert!(err < 1e-4, "{s:?}: covariance error {err:e}");
        let mean_err = max_abs(
            &out.mean_dim([0i64].as_slice(), false, Kind::Float),
            &tgt.mean_dim([0i64].as_slice(), false, Kind::Float),
        );
        assert!(mean_err < 1e-4, "{s:?}: mean error {mean_err}");
    }
    // Sliced OT moves the whole distribution: after enough passes the covariance is close too.
    let out = sliced_ot(&src, &tgt, 30);
    let err = max_abs(&cov(&out), &cov(&tgt)) / cov(&tgt).abs().max().double_value(&[]);
    assert!(err < 0.15, "sliced OT covariance error {err}");
    // PCA keeps at least the asked variance fraction.
    let (_, basis, k) = pca_basis(&tgt, 0.9);
    assert!(k >= 1 && k <= 6 && basis.size() == [6, k]);
    assert!(max_abs(&basis.transpose(0, 1).matmul(&basis), &Tensor::eye(k, F32)) < 1e-4);
}

#[test]
fn matching_agrees_with_an_independent_numpy_reference() {
    let _rng = nst_testkit::rng_lock();
    tch::manual_seed(8);
    let src = Tensor::randn([300, 5], F32).matmul(&Tensor::randn([5, 5], F32)) + 1.0;
    let tgt = Tensor::rand([211, 5], F32).matmul(&Tensor::randn([5, 5], F32)) * 2.0;
    // sliced_ot draws its rotations from the generator: draw the same ones here.
    tch::manual_seed(9);
    let rot = Tensor::stack(
        &(0..3)
            .map(|_| random_rotation(5, Device::Cpu))
            .collect::<Vec<_>>(),
        0,
    );
    tch::manual_seed(9);
    let sliced = sliced_ot(&src, &tgt, 3);
    let want = nst_testkit::torch_reference(
        "optex_ref.py",
        &[("src", &src), ("tgt", &tgt), ("rot", &rot)],
        &[] as &[&str],
    );
    nst_testkit::assert_close(
        &histogram_match(&src, &tgt),
        &want["hist"],
        1e-5,
        "histogram matching",
    );
    nst_testkit::assert_close(&sliced, &want["sliced"], 1e-4, "sliced OT, 3 passes");
    for (s, name) in [
        (Strategy::Symmetric, "symmetric"),
        (Strategy::Cholesky, "cholesky"),
    ] {
        nst_testkit::assert_close(&match_moments(&src, &tgt, s), &want[name], 1e-5, name);
    }
}

fn model(width: f64) -> Decoders {
    let vgg = Vgg::load(vgg19_weights(), VggOptions::cpu(Pooling::Max)).unwrap();
    Decoders::new(
        vgg,
        DecodersConfig {
            width,
            ..Default::default()
        },
        DecodersLoss::default(),
    )
    .unwrap()
}

#[test]
fn decoders_invert_each_level_shape() {
    let _rng = nst_testkit::rng_lock();
    tch::manual_seed(0);
    let m = model(0.125);
    assert_eq!(m.levels(), vec![1, 2, 3, 4, 5]);
    for (h, w) in [(32, 32), (48, 80)] {
        let x = Tensor::rand([2, 3, h, w], F32);
        for l in 1..=5u8 {
            let f = m.encode(&x, l).unwrap();
            assert_eq!(f.size()[2..], [h >> (l - 1), w >> (l - 1)]);
            assert_eq!(m.decode(&f, l).unwrap().size(), [2, 3, h, w], "level {l}");
        }
    }
    let names: Vec<String> = m.var_store().variables().into_keys().collect();
    assert!(
        names.iter().any(|n| n == "relu4_1.conv4_1.weight"),
        "{names:?}"
    );
    let d = level_decoder(&tch::nn::VarStore::new(Device::Cpu).root(), 1, 1.0);
    assert_eq!(
        d.forward(&Tensor::rand([1, 64, 8, 8], F32)).size(),
        [1, 3, 8, 8]
    );
}

#[test]
fn untrained_end_to_end_at_64px() {
    let _rng = nst_testkit::rng_lock();
    tch::manual_seed(1);
    let m = model(0.125);
    let style = Tensor::rand([1, 3, 64, 64], F32);
    let content = Tensor::rand([1, 3, 64, 48], F32);
    for strategy in [
        Strategy::Cdf,
        Strategy::Symmetric,
        Strategy::Pca,
        Strategy::Cholesky,
    ] {
        let cfg = OptexConfig {
            strategy,
            passes: 2,
            pyramid: 2,
            ..Default::default()
        };
        let y = optimal_textures(
            &m,
            &[(style.shallow_clone(), 1.0)],
            None,
            (64, 96),
            &cfg,
            None,
        )
        .unwrap();
        assert_eq!(y.size(), [1, 3, 64, 96], "{strategy:?}");
        assert!(y.isfinite().all().int64_value(&[]) == 1);
    }
    let cfg = OptexConfig {
        passes: 1,
        pyramid: 1,
        color: ColorMode::Preserve,
        ..Default::default()
    };
    let y = optimal_textures(
        &m,
        &[(style.shallow_clone(), 0.5), (content.shallow_clone(), 0.5)],
        Some(&content),
        (64, 48),
        &cfg,
        None,
    )
    .unwrap();
    assert_eq!(y.size(), [1, 3, 64, 48]);
    let y = closed_form(&m, &content, &style, true, &[5, 4, 3, 2, 1], 0.8, None).unwrap();
    assert_eq!(y.size(), [1, 3, 64, 48]);
    let y = closed_form(&m, &content, &style, false, &[4], 1.0, None).unwrap();
    assert_eq!(y.size(), [1, 3, 64, 48]);
}

/// Tiled WCT at two levels against the whole image (untrained decoders, so
/// PSNR over the output's range), and the tile-size errors. relu4_1 runs
/// three ways, as the budget allows: staged ([`crate::staged`]: exact up to
/// float rounding), its whole feature map encoded first with
/// [`split_halo`], or each window encoded and decoded together with the
/// joint [`halo`] (a budget with no room for features).
#[test]
fn tiled_closed_form_matches_whole_image() {
    let _rng = nst_testkit::rng_lock();
    tch::manual_seed(2);
    let m = model(0.125);
    let load = |p: &str, n: u32| nst_testkit::sample_image(p, n, n);
    let (c, s) = (
        load("samples/content/chelsea.png", 256),
        load("samples/style/retina.jpg", 160),
    );
    let whole = closed_form(&m, &c, &s, true, &[4, 2], 0.9, None).unwrap();
    let peak = f64::try_from(whole.max() - whole.min()).unwrap();
    let tiling = nst_tiling::Tiling::new(160, halo(4), STRIDE).unwrap();
    let middle = crate::staged::middle_bytes(&m, 256, 256);
    let with_room = |bytes: Option<u64>| nst_tiling::Tiling {
        cache_bytes: bytes,
        ..tiling
    };
    let mut outputs = Vec::new();
    for (what, room, floor) in [
        ("staged", Some(middle), 100.0),
        ("relu4_1 encoded whole first", Some(middle - 1), 40.0),
        ("windows with the joint halo", Some(0), 40.0),
    ] {
        let tiled = closed_form(&m, &c, &s, true, &[4, 2], 0.9, Some(&with_room(room))).unwrap();
        let db = nst_core::psnr(&tiled, &whole, peak);
        eprintln!("tiled WCT vs whole, {what}: {db:.1} dB");
        assert!(db >= floor, "tiled WCT ({what}) vs whole: {db:.1} dB");
        outputs.push(tiled);
    }
    for (i, j) in [(0, 1), (1, 2), (0, 2)] {
        let db = nst_core::psnr(&outputs[i], &outputs[j], peak);
        assert!(db < 200.0, "paths {i} and {j} both ran");
    }
    // Windows of relu5_1 need 128 px of context: a 160-px tile is refused,
    // unless the level runs staged (32 px).
    let e = closed_form(&m, &c, &s, false, &[5], 1.0, Some(&with_room(Some(0)))).unwrap_err();
    assert!(e.to_string().contains("--tile 272"), "{e}");
    let whole = closed_form(&m, &c, &s, false, &[5], 1.0, None).unwrap();
    let staged = closed_form(&m, &c, &s, false, &[5], 1.0, Some(&tiling)).unwrap();
    let peak = f64::try_from(whole.max() - whole.min()).unwrap();
    let db = nst_core::psnr(&staged, &whole, peak);
    assert!(db >= 100.0, "staged AdaIN at relu5_1 vs whole: {db:.1} dB");
}

/// No seams (issue 27): a 1024² WCT (relu2_1, then relu1_1) made in tiles of
/// 256 px changes across the tile boundaries no more than across any other
/// rows and columns (mean absolute difference, ratio ≤ 1.1).
#[test]
fn tiled_output_has_no_seams_at_1024() {
    let _rng = nst_testkit::rng_lock();
    tch::manual_seed(5);
    let m = model(0.125);
    let load = |p: &str, n: u32| nst_testkit::sample_image(p, n, n);
    let (c, s) = (
        load("samples/content/astronaut.png", 1024),
        load("samples/style/coffee.png", 256),
    );
    let tiling = nst_tiling::Tiling::new(256, halo(2), STRIDE).unwrap();
    let y = closed_form(&m, &c, &s, true, &[2, 1], 1.0, Some(&tiling)).unwrap();
    let grid = tiling.grid(1024, 1024).unwrap();
    assert!(grid.len() >= 16);
    let r = grid.seam_ratio(&y);
    eprintln!("seam ratio at 1024², {} tiles: {r:.3}", grid.len());
    assert!(r <= 1.1, "seam ratio {r:.3}");
}

/// The tiled form of sliced OT: fitted on every source row (with the same
/// rotations), the map sends those rows where `sliced_ot` does; applied to
/// new rows in between, it stays within the target's range.
#[test]
fn sliced_ot_map_fitted_on_all_rows_equals_sliced_ot() {
    let _rng = nst_testkit::rng_lock();
    tch::manual_seed(10);
    let src = Tensor::randn([500, 6], F32) * 2.0 + 1.0;
    let tgt = Tensor::rand([700, 6], F32) * 3.0;
    tch::manual_seed(11);
    let want = sliced_ot(&src, &tgt, 3);
    tch::manual_seed(11);
    let map = transforms::SlicedOtMap::fit_cols(&src.transpose(0, 1), &tgt.transpose(0, 1), 3);
    let got = map.apply_cols(&src.transpose(0, 1)).transpose(0, 1);
    // Up to the order of near-equal projections (rows transposed in memory
    // round differently): 1e-4.
    nst_testkit::assert_close(&got, &want, 1e-4, "map on the fitted rows");
    // Rows it was not fitted on land in the matched distribution too: the
    // per-dimension means of a fresh draw match the target's within 0.1.
    let fresh = Tensor::randn([2000, 6], F32) * 2.0 + 1.0;
    let mapped = map.apply_cols(&fresh.transpose(0, 1)).transpose(0, 1);
    let d = f64::try_from(
        (mapped.mean_dim(0, false, Kind::Float) - want.mean_dim(0, false, Kind::Float))
            .abs()
            .max(),
    )
    .unwrap();
    assert!(d < 0.1, "{d}");
}

/// A map fitted on more rows than it keeps ranks of (`MAP_KNOTS`) stays
/// within a small fraction of the target's range of the exact transport on
/// those rows: mean error below 1e-3 and largest below 2 % of the range.
#[test]
fn sliced_ot_map_cut_to_its_knots_stays_close_to_sliced_ot() {
    let _rng = nst_testkit::rng_lock();
    tch::manual_seed(12);
    let n = 3 * transforms::MAP_KNOTS;
    let src = Tensor::randn([n, 4], F32) * 2.0 + 1.0;
    let tgt = Tensor::rand([50_000, 4], F32) * 3.0;
    tch::manual_seed(13);
    let want = sliced_ot(&src, &tgt, 2);
    tch::manual_seed(13);
    let map = transforms::SlicedOtMap::fit_cols(&src.transpose(0, 1), &tgt.transpose(0, 1), 2);
    let got = map.apply_cols(&src.transpose(0, 1)).transpose(0, 1);
    let err = (&got - &want).abs();
    let (mean, max) = (
        f64::try_from(err.mean(Kind::Float)).unwrap() / 3.0,
        f64::try_from(err.max()).unwrap() / 3.0,
    );
    eprintln!("knots: mean error {mean:.2e}, largest {max:.2e} of the range");
    assert!(mean < 1e-3 && max < 2e-2, "mean {mean:.2e}, max {max:.2e}");
}

/// Tiled Optimal Textures (sliced OT and WCT matching, with a content)
/// against the whole image, untrained decoders: PSNR over the range ≥ 40 dB.
/// relu4_1 encodes the whole map (and the content's) first; relu3_1 and
/// relu1_1 encode and decode each window together.
#[test]
fn tiled_optimal_textures_matches_whole_image() {
    let _rng = nst_testkit::rng_lock();
    let m = model(0.125);
    let c = nst_testkit::sample_image("samples/content/chelsea.png", 256, 224);
    let style = Tensor::rand([1, 3, 96, 96], F32);
    let tiling = nst_tiling::Tiling::new(160, halo(4), STRIDE).unwrap();
    for strategy in [Strategy::Cdf, Strategy::Symmetric] {
        let cfg = OptexConfig {
            strategy,
            passes: 2,
            pyramid: 1,
            levels: vec![4, 3, 1],
            content_strength: 0.5,
            ..Default::default()
        };
        let run = |t: Option<&nst_tiling::Tiling>| {
            tch::manual_seed(4);
            optimal_textures(
                &m,
                &[(style.shallow_clone(), 1.0)],
                Some(&c),
                (224, 256),
                &cfg,
                t,
            )
            .unwrap()
        };
        let whole = run(None);
        let peak = f64::try_from(whole.max() - whole.min()).unwrap();
        // With room, each level's matching is the whole run's (exact up to
        // float rounding); without, a map fitted on the tiles' features.
        let no_room = nst_tiling::Tiling {
            cache_bytes: Some(0),
            ..tiling
        };
        for (what, t, floor) in [("room", &tiling, 80.0), ("no room", &no_room, 40.0)] {
            let db = nst_core::psnr(&run(Some(t)), &whole, peak);
            eprintln!("{strategy:?}, {what}: tiled vs whole {db:.1} dB");
            assert!(
                db >= floor,
                "{strategy:?}, {what}: tiled vs whole {db:.1} dB"
            );
        }
    }
    // Two pyramid scales at 448×512: the coarse one (224×256, larger than a
    // tile) runs whole, since it fits in the budget (none here), and the
    // finest scale's matching is the whole run's (measured 129 dB; 61 dB
    // with no room, both scales tiled and their maps fitted on the tiles).
    let cfg = OptexConfig {
        passes: 2,
        pyramid: 2,
        levels: vec![4, 1],
        content_strength: 0.5,
        ..Default::default()
    };
    let run = |t: Option<&nst_tiling::Tiling>| {
        tch::manual_seed(4);
        let style = [(style.shallow_clone(), 1.0)];
        optimal_textures(&m, &style, Some(&c), (448, 512), &cfg, t).unwrap()
    };
    let (whole, tiled) = (run(None), run(Some(&tiling)));
    let peak = f64::try_from(whole.max() - whole.min()).unwrap();
    let db = nst_core::psnr(&tiled, &whole, peak);
    eprintln!("two scales, the finest tiled: {db:.1} dB");
    // With no room beside the tiles, the coarse scale is tiled too, and
    // both scales' maps are fitted on the tiles' features.
    let no_room = nst_tiling::Tiling {
        cache_bytes: Some(0),
        ..tiling
    };
    let both = nst_core::psnr(&run(Some(&no_room)), &whole, peak);
    eprintln!("two scales, both tiled: {both:.1} dB");
    assert!(both < db, "the coarse scale was tiled: {both:.1} dB");
    assert!(db >= 40.0, "two scales, the finest tiled: {db:.1} dB");
}

/// Ties (identical feature vectors, as in flat image regions) all go to the
/// mean of the target values of their ranks, whatever their order, so a
/// seeded run is reproducible (an unstable sort once left their order to
/// the sort's internals: three 1024² runs with one seed gave three images)
/// and a tiled run, which sees the pixels in another order, matches them
/// as the whole image does.
#[test]
fn histogram_matching_sends_ties_to_their_ranks_mean() {
    let _rng = nst_testkit::rng_lock();
    let n = 5000;
    // Every source value tied (zeros) but the last; distinct target values.
    let src = Tensor::zeros([n, 1], F32);
    let _ = src.narrow(0, n - 1, 1).fill_(1.0);
    let tgt = Tensor::arange(n, F32).reshape([n, 1]);
    let out = histogram_match(&src, &tgt);
    let want = Tensor::full([n, 1], (n - 2) as f64 / 2.0, (Kind::Float, Device::Cpu));
    let _ = want.narrow(0, n - 1, 1).fill_((n - 1) as f64);
    nst_testkit::assert_close(&out, &want, 1e-6, "ties at their ranks' mean");
    // The same multiset in another order gives the same values per element.
    let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
    let out_p = histogram_match(&src.index_select(0, &perm), &tgt);
    nst_testkit::assert_close(&out_p, &want.index_select(0, &perm), 1e-6, "order-free");
}

/// With tied rows, a map fitted on all rows still sends them where
/// `sliced_ot` does (the tiled and whole paths agree on flat regions).
#[test]
fn sliced_ot_map_agrees_with_sliced_ot_on_tied_rows() {
    let _rng = nst_testkit::rng_lock();
    tch::manual_seed(20);
    let src = Tensor::randn([600, 5], F32);
    let _ = src.narrow(0, 0, 250).fill_(0.0); // a flat region
    let _ = src.narrow(0, 250, 100).fill_(0.7); // a clipped one
    let tgt = Tensor::rand([800, 5], F32) * 2.0;
    tch::manual_seed(21);
    let want = sliced_ot(&src, &tgt, 3);
    tch::manual_seed(21);
    let map = transforms::SlicedOtMap::fit_cols(&src.transpose(0, 1), &tgt.transpose(0, 1), 3);
    let got = map.apply_cols(&src.transpose(0, 1)).transpose(0, 1);
    // Exact but for rounding: rows near a tie are snapped to it, not
    // interpolated on a steep slope (without the snap: 1.9e-3 after 3 passes).
    nst_testkit::assert_close(&got, &want, 1e-6, "map on tied rows");
    // Each flat region stays one vector.
    let flat = want.narrow(0, 0, 250);
    assert!(max_abs(&flat, &flat.narrow(0, 0, 1).expand_as(&flat)) < 1e-5);
}

/// Padding to the stride and cutting back is the identity, the padded sides
/// are multiples of 16, and the pad mirrors the last rows and columns.
#[test]
fn pad_to_stride_mirrors_and_crop_to_undoes_it() {
    let _rng = nst_testkit::rng_lock();
    let x = Tensor::rand([1, 3, 37, 50], (Kind::Float, Device::Cpu));
    let p = crate::pad_to_stride(&x);
    assert_eq!(p.size(), [1, 3, 48, 64]);
    assert!(crate::crop_to(&p, (37, 50)).equal(&x));
    // Row 37 mirrors row 35 (reflection about the last row, 36).
    assert!(p
        .narrow(2, 37, 1)
        .narrow(3, 0, 50)
        .equal(&x.narrow(2, 35, 1)));
    let y = Tensor::rand([1, 3, 32, 48], (Kind::Float, Device::Cpu));
    assert!(crate::pad_to_stride(&y).equal(&y));
    // Sides shorter than their pad are replicated instead.
    let z = Tensor::rand([1, 3, 5, 40], (Kind::Float, Device::Cpu));
    assert_eq!(crate::pad_to_stride(&z).size(), [1, 3, 16, 48]);
}

/// Optimal Textures' memory policy: untiled runs keep only the image
/// buffers and take the styles at the output's size; tiled ones bound the
/// styles by a third of the budget and count their features and the
/// sliced-OT fit beside the tiles.
#[test]
fn optex_budget_counts_what_stays_beside_the_tiles() {
    let whole = crate::optex_budget((1376, 2048), 1, Strategy::Cdf, None, Some(2 << 30), false);
    assert_eq!(whole.style_long, 2048);
    assert_eq!(
        whole.state_bytes_per_pixel,
        nst_tiling::WHOLE_IMAGE_BYTES_PER_PIXEL
    );
    let tiled = crate::optex_budget((1376, 2048), 1, Strategy::Cdf, None, Some(2 << 30), true);
    // sqrt(2 GiB / 3 / 2950 B) = 492 px, down to a multiple of 16.
    assert_eq!(tiled.style_long, 480);
    let px = 1376 * 2048u64;
    let beside = crate::OT_FIT_BYTES + 480 * 480 * crate::STYLE_FEATURE_BYTES_PER_PIXEL;
    assert_eq!(
        tiled.state_bytes_per_pixel,
        nst_tiling::WHOLE_IMAGE_BYTES_PER_PIXEL + beside.div_ceil(px)
    );
    // Moments need no sample; two styles share the third; the user's side wins.
    let sym = crate::optex_budget(
        (1376, 2048),
        1,
        Strategy::Symmetric,
        None,
        Some(2 << 30),
        true,
    );
    assert!(sym.state_bytes_per_pixel < tiled.state_bytes_per_pixel);
    let two = crate::optex_budget((1376, 2048), 2, Strategy::Cdf, None, Some(2 << 30), true);
    assert!(two.style_long < tiled.style_long);
    let mine = crate::optex_budget(
        (1376, 2048),
        1,
        Strategy::Cdf,
        Some(300),
        Some(2 << 30),
        true,
    );
    assert_eq!(mine.style_long, 300);
    // No budget: the default cap, never above the output's side.
    let free = crate::optex_budget((512, 512), 1, Strategy::Cdf, None, None, true);
    assert_eq!(free.style_long, 512);
}
