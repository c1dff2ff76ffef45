//! Tiled STROTSS against the whole-image computation.
#![allow(clippy::unwrap_used)]
use crate::strotss::*;
use nst_losses::random_coords;
use nst_tiling::{Grid, Tiling};
use tch::{Device, Kind, Tensor};

/// The crate's test VGG (average pooling; the tiling does not depend on it).
use crate::tests::vgg as test_vgg;

fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).norm() / b.norm()).unwrap()
}

/// A 256×240 image `x`, 1,024 samples, their hypercolumns computed whole,
/// random weights `g` and the gradient of ⟨rows, g⟩ with respect to `x`.
struct Whole {
    x: Tensor,
    coords: Tensor,
    rows: Tensor,
    g: Tensor,
    grad: Tensor,
}

fn whole_samples(st: &Strotss) -> Whole {
    let c = nst_testkit::sample_image("samples/content/astronaut.png", 240, 256);
    tch::manual_seed(5);
    let x = (&c + Tensor::rand_like(&c) * 0.2 - 0.1).clamp(0.0, 1.0);
    let coords = random_coords(256, 240, 1024, Device::Cpu);
    let xv = x.detach().set_requires_grad(true);
    let (rows, _) = st.sample(&st.features(&xv).unwrap(), &xv, &coords);
    let g = Tensor::randn(rows.size(), (Kind::Float, Device::Cpu));
    let sur = (&rows * &g).sum(Kind::Float);
    let grad = Tensor::run_backward(&[&sur], &[&xv], false, false)[0].shallow_clone();
    Whole {
        x,
        coords,
        rows: rows.detach(),
        g,
        grad,
    }
}

/// The hypercolumns of 1,024 samples of a 256×240 image and the gradient
/// of a linear function of them, whole and over a shifted grid of 224-px
/// tiles (2 × 2 or more): on one tile covering the image the rows are
/// identical (the window's sampling geometry is the whole image's); with
/// the halo the rows' relative L2 error is within 1e-2 and the gradient's
/// within 2e-2 (the halo's error: features near a window's edge see
/// padding), and with a 16-px halo both are clearly worse.
#[test]
fn tiled_strotss_matches_the_whole_samples_and_gradient() {
    let _serial = crate::tests::serial();
    let vgg = test_vgg();
    let st = Strotss::new(&vgg, StrotssConfig::default()).unwrap();
    let w = whole_samples(&st);
    let (x, coords, whole_rows, g, whole_grad) = (w.x, w.coords, w.rows, w.g, w.grad);

    let one = st
        .sample_tiled(&x, &coords, &Grid::whole(256, 240))
        .unwrap();
    let e1 = rel_l2(&one, &whole_rows);
    assert!(e1 < 1e-6, "one whole tile: rows differ by {e1:.3e}");

    let err = |halo: i64| {
        let grid = Tiling::new(224, halo, ALIGN)
            .unwrap()
            .grid_shifted(256, 240, (40, 24))
            .unwrap();
        assert!(grid.len() >= 4, "{} tiles", grid.len());
        let rows = st.sample_tiled(&x, &coords, &grid).unwrap();
        let grad = st.backprop_tiled(&x, &coords, &g, &grid).unwrap();
        (rel_l2(&rows, &whole_rows), rel_l2(&grad, &whole_grad))
    };
    let (re, ge) = err(HALO);
    let (re0, ge0) = err(16);
    eprintln!(
        "tiled vs whole: rows {re:.3e}, gradient {ge:.3e} (halo {HALO}); rows {re0:.3e}, gradient {ge0:.3e} (halo 16)"
    );
    assert!(re < 1e-2, "rows error {re:.3e}");
    assert!(ge < 2e-2, "gradient error {ge:.3e}");
    assert!(
        re0 > 2.0 * re && ge0 > 2.0 * ge,
        "a 16-px halo should be clearly worse"
    );
}

/// The staged step (the layers up to relu3_1 in windows with a 16-px halo,
/// the deeper ones whole from the assembled relu3_1 map) gives the whole
/// image's hypercolumns and the gradient of a linear function of them up to
/// float rounding (relative L2 within 1e-5; the window path's tolerances
/// above are 1e-2 and 2e-2), and the staged maps of an image are
/// [`Strotss::features`]' within 1e-5. The staged path is refused without
/// room for its whole maps, and when a deep layer comes before a shallow
/// one in the hypercolumn.
#[test]
fn staged_strotss_gives_the_whole_samples_and_gradient() {
    let _serial = crate::tests::serial();
    let vgg = test_vgg();
    let st = Strotss::new(&vgg, StrotssConfig::default()).unwrap();
    let w = whole_samples(&st);
    let (x, coords, whole_rows, g, whole_grad) = (w.x, w.coords, w.rows, w.g, w.grad);

    let tiling = Tiling::new(128, 32, ALIGN).unwrap();
    let staged = st.staged_tiling(&tiling, 256, 240).unwrap();
    assert_eq!(staged.halo, nst_vgg::HANDOVER_HALO);
    let grid = staged.grid_shifted(256, 240, (40, 24)).unwrap();
    assert!(grid.len() >= 4, "{} tiles", grid.len());
    let rows = st.sample_staged(&x, &coords, &grid).unwrap();
    let re = rel_l2(&rows.rows, &whole_rows);
    (&rows.rows * &g).sum(Kind::Float).backward();
    let grad = st.backprop_staged(&x, &coords, &rows, &grid).unwrap();
    let ge = rel_l2(&grad, &whole_grad);
    eprintln!("staged vs whole: rows {re:.3e}, gradient {ge:.3e}");
    assert!(re < 1e-5, "rows error {re:.3e}");
    assert!(ge < 1e-5, "gradient error {ge:.3e}");

    let whole_maps = tch::no_grad(|| st.features(&x)).unwrap();
    let maps = st.features_staged(&x, &grid).unwrap();
    assert_eq!(maps.len(), whole_maps.len());
    for (i, (a, b)) in maps.iter().zip(&whole_maps).enumerate() {
        assert_eq!(a.size(), b.size(), "map {i}");
        let e = rel_l2(a, b);
        assert!(e < 1e-5, "map {i}: {e:.3e}");
    }

    let no_room = Tiling {
        cache_bytes: Some(st.staged_bytes(256, 240) - 1),
        ..tiling
    };
    assert!(st.staged_tiling(&no_room, 256, 240).is_none());
    let mut cfg = StrotssConfig::default();
    cfg.layers.swap(0, 8);
    let unordered = Strotss::new(&vgg, cfg).unwrap();
    assert!(unordered.staged_tiling(&tiling, 256, 240).is_none());
}

/// Two scales of 8 steps to 160 px, whole and with the last scale tiled
/// in 128-px windows (32-px halo; a 2 × 2 to 3 × 3 grid as it moves), from
/// the same seed: the final loss, measured whole on one fixed draw of
/// samples, within 3 % of the whole run's, and well below the start's.
#[test]
fn a_tiled_strotss_run_ends_within_three_percent_of_the_whole_run() {
    let _serial = crate::tests::serial();
    let vgg = test_vgg();
    let load = |p: &str| nst_testkit::sample_image(p, 160, 160);
    let (c, s) = (
        load("samples/content/astronaut.png"),
        load("samples/style/coffee.png"),
    );
    let cfg = StrotssConfig {
        scales: 2,
        steps_per_scale: 8,
        output_samples: 512,
        style_samples: 2000,
        ..Default::default()
    };
    let st = Strotss::new(&vgg, cfg.clone()).unwrap();
    let styles = [StyleInput {
        image: &s,
        weight: 1.0,
    }];
    // With room the tiled scale is staged (exact gradient); without, windows.
    let tiling = Tiling::new(128, 32, ALIGN).unwrap();
    let no_room = Tiling {
        cache_bytes: Some(0),
        ..tiling
    };
    assert!(st.staged_tiling(&tiling, 160, 160).is_some());
    let run = |tiling: Option<Tiling>| {
        let tiled = tiling.is_some();
        tch::manual_seed(11);
        let mut tiles_used = false;
        let out = st
            .run_tiled(
                &c,
                &styles,
                None,
                |h, w| {
                    let t = tiling.filter(|_| h.max(w) == 160);
                    tiles_used |= t.is_some();
                    Ok(t)
                },
                |_, _, _| true,
            )
            .unwrap();
        assert_eq!(tiles_used, tiled);
        out.last().unwrap().shallow_clone()
    };
    let whole = run(None);
    let alpha = cfg.alpha_at(1);
    let measure = |x: &Tensor| st.measure(x, &c, &styles, alpha, 99).unwrap().total;
    let init = detail_band(&c) + s.mean_dim([2i64, 3].as_slice(), true, Kind::Float);
    let (l0, lw) = (measure(&init), measure(&whole));
    for (what, t) in [("staged", tiling), ("windows", no_room)] {
        let lt = measure(&run(Some(t)));
        crate::tests::assert_tiled_run_close(what, l0, lw, lt, 0.8);
    }
}
