#![allow(clippy::unwrap_used)]
use crate::*;
use nst_testkit::{assert_close, torch_reference};
use tch::{Device, Kind, Tensor};

/// A small image with flat regions, an edge and noise.
fn small_image(h: i64, w: i64, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    let x = Tensor::arange(w, (Kind::Double, Device::Cpu)).view([1, 1, w]) / w as f64;
    let y = Tensor::arange(h, (Kind::Double, Device::Cpu)).view([1, h, 1]) / h as f64;
    let edge = x.gt(0.5).to_kind(Kind::Double).expand([1, h, w], false);
    let base = Tensor::cat(
        &[
            &edge * 0.8 + 0.1,
            y.expand([1, h, w], false) * 0.5 + 0.2,
            (1.0 - &edge) * 0.6 + 0.2,
        ],
        0,
    );
    (base + Tensor::randn([3, h, w], (Kind::Double, Device::Cpu)) * 0.03).clamp(0.0, 1.0)
}

#[test]
fn matting_laplacian_matches_levin_entry_by_entry_and_is_psd_with_constant_kernel() {
    let _rng = nst_testkit::rng_lock();
    let img = small_image(9, 8, 1);
    let l = MattingLaplacian::new(&img, 1e-5).unwrap();
    let dense = l.dense();
    let r = torch_reference("matting_ref.py", &[("image", &img)], &["--eps", "1e-5"]);
    assert_close(&dense, &r["L"], 1e-8, "matting Laplacian entries");
    assert_close(&dense, &dense.transpose(0, 1), 1e-10, "symmetry");
    let ones = Tensor::ones([1, 9, 8], (Kind::Double, Device::Cpu));
    let l1 = l.apply(&ones).abs().max().double_value(&[]);
    assert!(l1 < 1e-8, "L·1 = {l1:e}");
    let (evals, _) = dense.linalg_eigh("L");
    let min = evals.min().double_value(&[]);
    let max = evals.max().double_value(&[]);
    assert!(
        min > -1e-9 * max,
        "smallest eigenvalue {min:e} (largest {max:e})"
    );
    // Power iteration finds the top of the spectrum.
    let pm = l.max_eigenvalue(200);
    assert!(
        (pm - max).abs() / max < 1e-2,
        "power iteration {pm} vs {max}"
    );
}

#[test]
fn chebyshev_projection_is_close_to_the_exact_eigenprojector() {
    let _rng = nst_testkit::rng_lock();
    tch::manual_seed(0);
    let (h, w, k) = (16, 16, 24i64);
    let img = small_image(h, w, 2);
    let l = MattingLaplacian::new(&img, 1e-5).unwrap();
    let dense = l.dense();
    let (evals, evecs) = dense.linalg_eigh("L");
    let uk = evecs.narrow(1, 0, k);
    let p = BandlimitedProjection::new(
        MattingLaplacian::new(&img, 1e-5).unwrap(),
        Band::Count(k as usize),
        200,
        32,
    )
    .unwrap();
    let lk = evals.double_value(&[k - 1]);
    let lk1 = evals.double_value(&[k]);
    eprintln!(
        "λ_k {lk:.4e}, λ_k+1 {lk1:.4e}, estimated cutoff {:.4e}, λ_max {:.4e}",
        p.cutoff, p.lambda_max
    );
    // A random colour image as the signal (3 channels).
    let x = Tensor::rand([3, h, w], (Kind::Double, Device::Cpu));
    let px = p.apply(&x);
    let exact = uk
        .matmul(
            &uk.transpose(0, 1)
                .matmul(&x.reshape([3, h * w]).transpose(0, 1)),
        )
        .transpose(0, 1)
        .reshape([3, h, w]);
    let err = (&px - &exact).norm().double_value(&[]) / exact.norm().double_value(&[]);
    eprintln!("‖P x − U_kU_kᵀx‖ / ‖U_kU_kᵀx‖ = {err:.3e}");
    assert!(err < 0.1, "projection error {err:.3e}");
    let ppx = p.apply(&px);
    let idem = (&ppx - &px).norm().double_value(&[]) / px.norm().double_value(&[]);
    assert!(idem < 0.1, "idempotence error {idem:.3e}");
    let (q0, q1) = (l.quadratic_form(&x), l.quadratic_form(&px));
    assert!(q1 < 0.01 * q0, "Tr(XᵀLX) {q0:.3e} → {q1:.3e}");
}

/// VGG19 with average pooling, as the solver's loss uses it.
fn vgg_avg() -> nst_vgg::Vgg {
    nst_vgg::Vgg::load(
        nst_testkit::vgg19_weights(),
        nst_vgg::VggOptions::cpu(nst_vgg::Pooling::Avg),
    )
    .unwrap()
}

/// Every variable of `vs` redrawn from N(0, σ²), including the zero-initialised last conv.
fn randomise(vs: &tch::nn::VarStore, sigma: f64) {
    // In the names' order, so a seed gives the same weights in every run.
    let mut vars: Vec<_> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (_, mut v) in vars {
            let r = Tensor::randn_like(&v) * sigma;
            v.copy_(&r);
        }
    });
}

#[test]
fn one_update_matches_the_formula_by_hand_in_pytorch() {
    one_update_against_pytorch(net::CubicNorm::Rms, "rms");
}

#[test]
fn one_update_with_the_gram_normalisation_matches_pytorch() {
    one_update_against_pytorch(net::CubicNorm::Gram, "gram");
}

fn one_update_against_pytorch(norm: net::CubicNorm, name: &str) {
    let _rng = nst_testkit::rng_lock();
    tch::manual_seed(3);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let net = net::UpdateNet::new(&vs.root(), &[4, 6, 8], norm);
    randomise(&vs, 0.3);
    // Odd sizes exercise the floor pooling and the zero-padded upsampling.
    let x = Tensor::rand([2, 3, 21, 18], (Kind::Float, Device::Cpu));
    let s = Tensor::rand([1, 3, 16, 24], (Kind::Float, Device::Cpu));
    let g = net.forward(&x, &net.style_grams(&s));
    assert_eq!(g.size(), [2, 3, 21, 18]);
    let weights: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, v)| (format!("w.{k}"), v))
        .collect();
    let mut inputs: Vec<(&str, &Tensor)> = vec![("x", &x), ("s", &s)];
    inputs.extend(weights.iter().map(|(k, v)| (k.as_str(), v)));
    let r = torch_reference("puy_ref.py", &inputs, &["--mode", "update", "--norm", name]);
    assert_close(&g, &r["g"], 1e-4, "g_t(X) vs the formula in PyTorch (fp64)");
    assert!(
        g.abs().max().double_value(&[]) > 0.0,
        "the update is not zero"
    );
}

#[test]
fn the_gram_normalisation_keeps_the_fixed_point_and_the_rms_one_does_not() {
    // When X's Grams already equal the style's (X = the style image), the
    // true gradient of Ls is zero. The "gram" normalisation keeps that: its
    // update is tiny next to the update for another style. The "rms" one
    // rescales the zero cubic term's rounding noise to unit size.
    let _rng = nst_testkit::rng_lock();
    tch::manual_seed(4);
    let x = Tensor::rand([1, 3, 24, 24], (Kind::Float, Device::Cpu));
    let other = Tensor::rand([1, 3, 24, 24], (Kind::Float, Device::Cpu)).square();
    let ratio = |norm| {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let net = net::UpdateNet::new(&vs.root(), &[4, 6, 8], norm);
        randomise(&vs, 0.3);
        let at_fixed_point = net.forward(&x, &net.style_grams(&x)).abs().max();
        let elsewhere = net.forward(&x, &net.style_grams(&other)).abs().max();
        (at_fixed_point / elsewhere).double_value(&[])
    };
    let gram = ratio(net::CubicNorm::Gram);
    let rms = ratio(net::CubicNorm::Rms);
    assert!(
        gram < 1e-4,
        "gram: |g(fixed point)| / |g(other style)| = {gram}"
    );
    assert!(
        rms > 1e-2,
        "rms: |g(fixed point)| / |g(other style)| = {rms}"
    );
}

#[test]
fn an_untrained_solver_returns_the_content_and_loss_matches_pytorch() {
    let _rng = nst_testkit::rng_lock();
    let vgg = vgg_avg();
    let solver = FlexibleSolver::new(vgg, PuyConfig::default(), PuyLossConfig::default()).unwrap();
    tch::manual_seed(5);
    let c = Tensor::rand([1, 3, 40, 36], (Kind::Float, Device::Cpu));
    let s = Tensor::rand([1, 3, 32, 48], (Kind::Float, Device::Cpu));
    let xs = solver.run(&c, &s, 4, None).unwrap();
    assert_eq!(xs.len(), 5);
    assert!(xs[4].equal(&c), "the last backward conv starts at zero");
    assert!(
        solver.run(&c, &s, 5, None).is_err(),
        "more steps than trained"
    );
    // The loss in the paper's normalisation, against an independent PyTorch VGG.
    let x = Tensor::rand([1, 3, 40, 36], (Kind::Float, Device::Cpu));
    let targets = solver.loss.targets(&c, &s).unwrap();
    let t = solver.loss.terms(&x, &targets).unwrap();
    let w = nst_testkit::vgg19_weights();
    let r = torch_reference(
        "puy_ref.py",
        &[("x", &x), ("c", &c), ("s", &s)],
        &["--mode", "loss", "--weights", w.to_str().unwrap()],
    );
    assert_close(&t.content, &r["content"], 1e-3, "Lc at conv4_2");
    assert_close(&t.style, &r["style"], 1e-3, "Ls (paper normalisation)");
}

#[test]
fn downsampled_photoreal_projection_keeps_the_content_and_lowers_the_matting_energy() {
    let _rng = nst_testkit::rng_lock();
    tch::manual_seed(7);
    let (h, w) = (48, 40);
    let img = small_image(h, w, 4).to_kind(Kind::Float);
    let opts = PhotorealOptions {
        band: Band::Count(40),
        work_side: 24,
        degree: 120,
        probes: 16,
        ..Default::default()
    };
    let p = PhotorealProjection::new(&img, opts).unwrap();
    assert!(p.downsampled());
    assert_eq!(p.work_size, (24, 20));
    // The content's own channels are locally affine in themselves: kept.
    let c = img.unsqueeze(0);
    let pc = p.apply_image(&c);
    let err = (&pc - &c).norm().double_value(&[]) / c.norm().double_value(&[]);
    assert!(
        err < 0.05,
        "P(content) differs from the content by {err:.3e}"
    );
    // A noisy colour change loses almost all of its matting energy at full resolution.
    let l_full = MattingLaplacian::new(&img, 1e-7).unwrap();
    let x = &c + Tensor::rand([1, 3, h, w], (Kind::Float, Device::Cpu)) * 0.5;
    let px = p.apply_image(&x);
    let (q0, q1) = (
        l_full.quadratic_form(&x.squeeze_dim(0)),
        l_full.quadratic_form(&px.squeeze_dim(0)),
    );
    assert!(q1 < 0.05 * q0, "Tr(XᵀLX) {q0:.3e} → {q1:.3e}");
    // Nearly idempotent.
    let ppx = p.apply_image(&px);
    let idem = (&ppx - &px).norm().double_value(&[]) / px.norm().double_value(&[]);
    assert!(idem < 0.05, "idempotence error {idem:.3e}");
    eprintln!("content kept to {err:.2e}; energy {q0:.3e} → {q1:.3e}; idempotence {idem:.2e}");
    // Below the working size it is the Chebyshev projection itself.
    let full = PhotorealProjection::new(
        &img,
        PhotorealOptions {
            work_side: 64,
            ..opts
        },
    )
    .unwrap();
    assert!(!full.downsampled());
    let direct = full.projection.apply_image(&x);
    assert!(full.apply_image(&x).equal(&direct));
}

/// Overfit: 2 contents and one stripe style at 32 px. After 40 Adam steps the
/// solver's output must have at most half the loss L of X⁽⁰⁾ = content.
#[test]
fn the_solver_overfits_tiny_data_halving_the_loss() {
    let _rng = nst_testkit::rng_lock();
    use nst_train::{Adam, AdamConfig, TrainModel};
    tch::manual_seed(0);
    let vgg = vgg_avg();
    let cfg = PuyConfig {
        channels: vec![8, 16, 32],
        ..Default::default()
    };
    let mut m = FlexibleSolver::new(vgg, cfg, PuyLossConfig::default()).unwrap();
    let content = Tensor::stack(
        &[
            small_image(32, 32, 1).to_kind(Kind::Float),
            small_image(32, 32, 2).to_kind(Kind::Float).flip([2]),
        ],
        0,
    );
    let x = Tensor::arange(32, (Kind::Float, Device::Cpu)).view([1, 1, 32]);
    let stripes = (x * 0.6)
        .sin()
        .gt(0.0)
        .to_kind(Kind::Float)
        .expand([1, 32, 32], false);
    let style = Tensor::cat(
        &[&stripes * 0.9, (1.0 - &stripes) * 0.7, &stripes * 0.2 + 0.1],
        0,
    )
    .unsqueeze(0)
    .expand([2, 3, 32, 32], false)
    .contiguous();
    let mut adam = Adam::new(AdamConfig::default());
    for step in 0..40 {
        let out = m.step(&content, &style).unwrap();
        Adam::zero_grad(m.var_store());
        out.loss.backward();
        adam.step(m.var_store(), 3e-3);
        if step % 10 == 0 {
            eprintln!("step {step}: L(output) {:.4e}", out.loss.double_value(&[]));
        }
    }
    let targets = m.loss.targets(&content, &style).unwrap();
    let xs = m.run(&content, &style, m.steps(), None).unwrap();
    let l = |x: &Tensor| {
        let t = tch::no_grad(|| m.loss.terms(x, &targets)).unwrap();
        m.loss.total(&t).double_value(&[])
    };
    let (l0, ln) = (l(&content), l(&xs[m.steps()]));
    eprintln!("L(X0) {l0:.4e} → L(X{}) {ln:.4e}", m.steps());
    assert!(ln * 2.0 <= l0, "L fell only from {l0:.4e} to {ln:.4e}");
}

/// Issue 27: one update of a randomised 4-level net on a 250×229 image,
/// whole and over a grid of 200-px tiles with [`net::UpdateNet::tile_halo`]
/// (2 × 2 at least): equal within 1e-4 relative L2 for both cubic
/// normalisations (the Grams and the divisors are the whole image's, the
/// halo covers the receptive field), and visibly different with a 16-px
/// halo. The style's Grams summed over its tiles equal its whole Grams.
#[test]
fn a_tiled_update_equals_the_whole_one() {
    let _rng = nst_testkit::rng_lock();
    for norm in [net::CubicNorm::Rms, net::CubicNorm::Gram] {
        tch::manual_seed(8);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let net = net::UpdateNet::new(&vs.root(), &[4, 6, 8, 10], norm);
        randomise(&vs, 0.3);
        let x = small_image(250, 229, 1).to_kind(Kind::Float).unsqueeze(0);
        let s = small_image(230, 240, 2).to_kind(Kind::Float).unsqueeze(0);
        let grams = net.style_grams(&s);
        let whole = net.forward(&x, &grams);
        let (halo, align) = (net.tile_halo(), net.tile_align());
        assert_eq!((halo, align), (80, 8));
        let rel = |a: &Tensor| f64::try_from((a - &whole).norm() / whole.norm()).unwrap();
        let tiled = |halo: i64, keep: Option<u64>| {
            let grid = nst_tiling::Tiling::new(200, halo, align)
                .unwrap()
                .grid(250, 229)
                .unwrap();
            assert!(grid.len() >= 4, "{} tiles", grid.len());
            net.forward_tiled(&x, &grams, &grid, keep)
        };
        // Pass 1's maps kept for every window, for none, and for some.
        let (e, e16) = (rel(&tiled(halo, None)), rel(&tiled(16, None)));
        eprintln!("{norm:?}: tiled vs whole {e:.2e} (halo {halo}), {e16:.2e} (halo 16)");
        assert!(e < 1e-4, "{norm:?}: {e:.3e}");
        for keep in [0, 4 << 20] {
            let ek = rel(&tiled(halo, Some(keep)));
            assert!(ek < 1e-4, "{norm:?}, {keep} B kept: {ek:.3e}");
        }
        // Staged: the two fine levels in windows with their 16-px halo,
        // the coarse ones whole; a halo of 8 px is too small.
        let staged_halo = net.staged_halo().unwrap();
        assert_eq!(staged_halo, 16);
        let staged = |halo: i64, keep: Option<u64>| {
            let grid = nst_tiling::Tiling::new(96, halo, align)
                .unwrap()
                .grid(250, 229)
                .unwrap();
            assert!(grid.len() >= 9, "{} tiles", grid.len());
            net.forward_staged(&x, &grams, &grid, keep)
        };
        for keep in [None, Some(0), Some(1 << 20)] {
            let es = rel(&staged(staged_halo, keep));
            eprintln!("{norm:?}: staged vs whole {es:.2e} (keep {keep:?})");
            assert!(es < 1e-4, "{norm:?}, staged, keep {keep:?}: {es:.3e}");
        }
        let sgrid = nst_tiling::Tiling::new(96, staged_halo, align)
            .unwrap()
            .grid(230, 240)
            .unwrap();
        for (a, b) in net.grams_staged(&s, &sgrid).iter().zip(&grams) {
            assert_close(a, b, 1e-4, "style Grams, staged");
        }
        let es8 = rel(&staged(8, None));
        assert!(
            es8 > 1e-3,
            "{norm:?}: an 8-px halo should differ: {es8:.3e}"
        );
        assert!(
            e16 > 1e-2,
            "{norm:?}: a 16-px halo should differ: {e16:.3e}"
        );
        let sgrid = nst_tiling::Tiling::new(200, halo, align)
            .unwrap()
            .grid(230, 240)
            .unwrap();
        for (a, b) in net.grams_tiled(&s, &sgrid).iter().zip(&grams) {
            assert_close(a, b, 1e-4, "style Grams over tiles");
        }
    }
}

/// The solver's tiled run (3 randomised updates, with the photoreal
/// projection between them) equals its whole run within 1e-4; a tiling
/// with too small a halo is refused.
#[test]
fn a_tiled_solver_run_equals_the_whole_run() {
    let _rng = nst_testkit::rng_lock();
    let vgg = vgg_avg();
    let cfg = PuyConfig {
        steps: 3,
        ..Default::default()
    };
    let mut solver = FlexibleSolver::new(vgg, cfg, PuyLossConfig::default()).unwrap();
    tch::manual_seed(9);
    randomise(solver.var_store_mut(), 0.05);
    let c = small_image(216, 250, 3).to_kind(Kind::Float).unsqueeze(0);
    let s = small_image(200, 180, 4).to_kind(Kind::Float).unsqueeze(0);
    let opts = PhotorealOptions {
        band: Band::Count(200),
        work_side: 64,
        degree: 30,
        ..Default::default()
    };
    let p = PhotorealProjection::new(&c, opts).unwrap();
    let project = |x: &Tensor| p.apply_image(x);
    let whole = solver.run(&c, &s, 3, Some(&project)).unwrap();
    let d = &whole[3] - &whole[0];
    assert!(
        d.abs().max().double_value(&[]) > 1e-3,
        "the updates move the image"
    );
    // With room the coarse levels run whole (staged); without, windows.
    let t = nst_tiling::Tiling::new(200, solver.tile_halo(), solver.tile_align()).unwrap();
    let no_room = nst_tiling::Tiling {
        cache_bytes: Some(0),
        ..t
    };
    for (what, t) in [("staged", t), ("windows", no_room)] {
        let tiled = solver.run_tiled(&c, &s, 3, Some(&project), &t).unwrap();
        assert_eq!(tiled.len(), 4);
        let e = f64::try_from((&tiled[3] - &whole[3]).norm() / whole[3].norm()).unwrap();
        eprintln!("solver: tiled ({what}) vs whole {e:.2e}");
        assert!(e < 1e-4, "{what}: {e:.3e}");
    }
    let small = nst_tiling::Tiling::new(200, 16, 8).unwrap();
    let err = solver.run_tiled(&c, &s, 3, None, &small).unwrap_err();
    assert!(err.to_string().contains("halo of at least"), "{err}");
}
