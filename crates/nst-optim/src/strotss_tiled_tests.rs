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
    let c = nst_testkit::sample_image("samples/content/astronaut.png", 240, 256);
    tch::manual_seed(5);
    let x = (&c + Tensor::rand_like(&c) * 0.2 - 0.1).clamp(0.0, 1.0);
    let coords = random_coords(256, 240, 1024, Device::Cpu);
    let feats = st.features(&x).unwrap();
    let (whole_rows, _) = st.sample(&feats, &x, &coords);
    let g = Tensor::randn(whole_rows.size(), (Kind::Float, Device::Cpu));
    let xv = x.detach().set_requires_grad(true);
    let (rows_v, _) = st.sample(&st.features(&xv).unwrap(), &xv, &coords);
    let sur = (rows_v * &g).sum(Kind::Float);
    let whole_grad = Tensor::run_backward(&[&sur], &[&xv], false, false)[0].shallow_clone();

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
    let tiling = Tiling::new(128, 32, ALIGN).unwrap();
    let run = |tiled: bool| {
        tch::manual_seed(11);
        let mut tiles_used = false;
        let out = st
            .run_tiled(
                &c,
                &styles,
                None,
                |h, w| {
                    let t = (tiled && h.max(w) == 160).then_some(tiling);
                    tiles_used |= t.is_some();
                    Ok(t)
                },
                |_, _, _| true,
            )
            .unwrap();
        assert_eq!(tiles_used, tiled);
        out.last().unwrap().shallow_clone()
    };
    let (whole, tiled) = (run(false), run(true));
    let alpha = cfg.alpha_at(1);
    let measure = |x: &Tensor| st.measure(x, &c, &styles, alpha, 99).unwrap().total;
    let init = detail_band(&c) + s.mean_dim([2i64, 3].as_slice(), true, Kind::Float);
    let (l0, lw, lt) = (measure(&init), measure(&whole), measure(&tiled));
    crate::tests::assert_tiled_run_close("moving grid", l0, lw, lt, 0.8);
}
