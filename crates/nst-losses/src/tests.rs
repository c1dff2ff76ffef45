//! Parity of every loss with tests/torch_ref/losses_ref.py (computed in
//! float64 there) at relative tolerance 1e-4, plus properties.
#![allow(clippy::unwrap_used)]
use super::*;
use nst_testkit::{assert_close, torch_reference};
use tch::{Device, Kind, Tensor};

const RTOL: f64 = 1e-4;

/// LibTorch's RNG is process-wide: see `nst_testkit::rng_lock`.
use nst_testkit::rng_lock as serial;
const F32: (Kind, Device) = (Kind::Float, Device::Cpu);

#[test]
fn all_losses_match_pytorch_reference() {
    let _serial = serial();
    tch::manual_seed(7);
    let f0 = Tensor::randn([2, 8, 6, 5], F32).relu();
    let t0 = Tensor::randn([2, 8, 6, 5], F32).relu();
    let f1 = Tensor::randn([2, 16, 3, 3], F32).relu();
    let t1 = Tensor::randn([2, 16, 3, 3], F32).relu();
    let x = Tensor::rand([1, 3, 9, 7], F32);
    let a = Tensor::randn([40, 12], F32).relu() + 0.01;
    let b = Tensor::randn([55, 12], F32).relu() + 0.01;
    let c = Tensor::randn([30, 12], F32).relu() + 0.01;
    let o = Tensor::randn([30, 12], F32).relu() + 0.01;
    // Hypercolumns of three maps at the strides VGG gives a 17x23 image.
    let (h, w) = (17i64, 23i64);
    let m0 = Tensor::randn([1, 4, 17, 23], F32);
    let m1 = Tensor::randn([1, 5, 8, 11], F32);
    let m2 = Tensor::randn([1, 6, 4, 5], F32);
    let coords = random_coords(h, w, 60, Device::Cpu);
    let hw = Tensor::from_slice(&[h, w]);
    // Weights of the hypercolumns in a scalar whose gradient reaches the maps.
    let hyper_w = Tensor::randn([60, 15], F32);
    let alpha = 0.7;

    let want = torch_reference(
        "losses_ref.py",
        &[
            ("f0", &f0),
            ("t0", &t0),
            ("f1", &f1),
            ("t1", &t1),
            ("x", &x),
            ("A", &a),
            ("B", &b),
            ("C", &c),
            ("O", &o),
            ("m0", &m0),
            ("m1", &m1),
            ("m2", &m2),
            ("coords", &coords),
            ("hw", &hw),
            ("hyper_w", &hyper_w),
        ],
        &[&alpha.to_string()],
    );

    assert_close(&content_loss(&f0, &t0), &want["content"], RTOL, "content");
    assert_close(&gram(&f0), &want["gram0"], RTOL, "gram");
    let style = gram_loss(&f0, &gram(&t0)) + gram_loss(&f1, &gram(&t1)) * 0.5;
    assert_close(&style, &want["style"], RTOL, "weighted gram style");
    assert_close(&total_variation(&x), &want["tv"], RTOL, "total variation");

    assert_close(
        &cosine_distance(&a, &b),
        &want["cos"],
        RTOL,
        "cosine distance",
    );
    let lr = remd_loss(&a, &b);
    let lp = palette_loss(&a.narrow(1, 0, 3), &b.narrow(1, 0, 3));
    let lm = moment_loss(&a, &b);
    let lc = self_similarity_loss(&c, &o);
    assert_close(&lr, &want["remd"], RTOL, "relaxed EMD");
    assert_close(&lp, &want["palette"], RTOL, "palette");
    assert_close(&lm, &want["moments"], RTOL, "moments");
    assert_close(&lc, &want["selfsim"], RTOL, "self-similarity");
    let (v, g) = value_and_grad(&o, |o| {
        strotss::self_similarity_loss_fast_at(&c, o, nst_core::Precision::Fp32)
    });
    assert!(
        (v - want["selfsim"].double_value(&[])).abs() <= RTOL * v,
        "fast self-similarity {v}"
    );
    assert_close(&g, &want["selfsim_grad"], RTOL, "self-similarity gradient");
    assert_close(
        &strotss_total(alpha, &lc, &lm, &lr, &lp),
        &want["total"],
        RTOL,
        "STROTSS total",
    );

    let hc = hypercolumns(&[&m0, &m1, &m2], &coords, (h, w));
    assert_eq!(hc.size(), [60, 15]);
    assert_close(&hc, &want["hyper"], RTOL, "hypercolumns");
    // The same from channels-last maps (as STROTSS's VGG gives them), with
    // the gradient of Σ w·hypercolumns reaching each map.
    let maps: Vec<Tensor> = [&m0, &m1, &m2]
        .iter()
        .map(|m| {
            m.permute([0, 2, 3, 1])
                .contiguous()
                .permute([0, 3, 1, 2])
                .set_requires_grad(true)
        })
        .collect();
    let refs: Vec<&Tensor> = maps.iter().collect();
    let hc = hypercolumns(&refs, &coords, (h, w));
    assert_close(
        &hc,
        &want["hyper"],
        RTOL,
        "hypercolumns of channels-last maps",
    );
    let grads = Tensor::run_backward(&[(&hc * &hyper_w).sum(Kind::Float)], &refs, false, false);
    for (l, g) in grads.iter().enumerate() {
        assert_close(
            g,
            &want[format!("hyper_grad{l}").as_str()],
            RTOL,
            "hypercolumn gradient",
        );
    }
    // bf16 maps: gathered in bf16, returned in fp32 (bf16's 8-bit mantissa).
    let bf: Vec<Tensor> = [&m0, &m1, &m2]
        .iter()
        .map(|m| m.to_kind(Kind::BFloat16))
        .collect();
    let hc = hypercolumns(&bf.iter().collect::<Vec<_>>(), &coords, (h, w));
    assert_eq!(hc.kind(), Kind::Float);
    assert_close(&hc, &want["hyper"], 1e-2, "hypercolumns of bf16 maps");
}

#[test]
fn losses_vanish_on_identical_inputs_and_grow_otherwise() {
    let _serial = serial();
    tch::manual_seed(3);
    let a = Tensor::rand([50, 8], F32);
    // The palette's |a|²+|b|²−2a·b expansion leaves ~sqrt(f32 eps) on the diagonal.
    for (name, l, tol) in [
        ("remd", remd_loss(&a, &a), 1e-5),
        ("moments", moment_loss(&a, &a), 1e-5),
        ("selfsim", self_similarity_loss(&a, &a), 1e-5),
        (
            "palette",
            palette_loss(&a.narrow(1, 0, 3), &a.narrow(1, 0, 3)),
            1e-3,
        ),
    ] {
        assert!(
            l.double_value(&[]).abs() < tol,
            "{name} of identical sets is {}",
            l.double_value(&[])
        );
    }
    let b = Tensor::rand([50, 8], F32) + 1.0;
    assert!(moment_loss(&a, &b).double_value(&[]) > 0.5);
    // REMD is symmetric and picks the worse direction: a subset is close one way only.
    let sub = a.narrow(0, 0, 5);
    let d1 = remd_loss(&a, &sub).double_value(&[]);
    let d2 = remd_loss(&sub, &a).double_value(&[]);
    assert!((d1 - d2).abs() < 1e-6 && d1 > 0.0);
    // Constant image has zero total variation.
    assert!(
        total_variation(&Tensor::ones([1, 3, 8, 8], F32))
            .double_value(&[])
            .abs()
            < 1e-12
    );
}

#[test]
fn random_coords_are_distinct_and_in_range() {
    let _serial = serial();
    tch::manual_seed(0);
    let c = random_coords(10, 7, 30, Device::Cpu);
    assert_eq!(c.size(), [30, 2]);
    let flat = c.select(1, 0) * 7 + c.select(1, 1);
    assert_eq!(
        flat.unique_dim(0, false, false, false).0.size()[0],
        30,
        "coords must be distinct"
    );
    assert!(
        c.select(1, 0).max().int64_value(&[]) < 10 && c.select(1, 1).max().int64_value(&[]) < 7
    );
    assert!(c.min().int64_value(&[]) >= 0);
    assert_eq!(
        random_coords(4, 4, 100, Device::Cpu).size(),
        [16, 2],
        "n is capped at the pixel count"
    );
    // Same seed, same sample.
    tch::manual_seed(5);
    let a = random_coords(50, 50, 20, Device::Cpu);
    tch::manual_seed(5);
    let b = random_coords(50, 50, 20, Device::Cpu);
    assert!(a.equal(&b));
}

#[test]
fn gradients_flow_through_every_loss() {
    let _serial = serial();
    let x = Tensor::rand([20, 6], F32).set_requires_grad(true);
    let y = Tensor::rand([25, 6], F32);
    let l = remd_loss(&y, &x)
        + moment_loss(&y, &x)
        + self_similarity_loss(&y.narrow(0, 0, 20), &x)
        + palette_loss(&y.narrow(1, 0, 3), &x.narrow(1, 0, 3));
    l.backward();
    let g = x.grad();
    assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    assert!(!bool::try_from(g.isnan().any()).unwrap());
}

/// Value and gradient of `f` at `x`.
fn value_and_grad(x: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> (f64, Tensor) {
    let xv = x.detach().set_requires_grad(true);
    let l = f(&xv);
    let g = Tensor::run_backward(&[&l], &[&xv], false, false);
    (l.double_value(&[]), g[0].shallow_clone())
}

#[test]
fn fast_remd_matches_autograd_remd_in_value_and_gradient() {
    let _serial = serial();
    tch::manual_seed(21);
    let style = Tensor::randn([70, 16], F32).relu() + 0.01;
    let unit = strotss::UnitPool::new(&style, nst_core::Precision::Fp32);
    // More outputs than style samples and the reverse, so both means get to be the larger one.
    for n in [30, 200] {
        let out = Tensor::randn([n, 16], F32).relu() + 0.01;
        let extra = (Tensor::rand([n, 70], F32).gt(0.7)).to_kind(Kind::Float) * 2.0;
        for e in [None, Some(&extra)] {
            let slow = |o: &Tensor| {
                let mut d = strotss::cosine_distance(o, &style);
                if let Some(e) = e {
                    d += e;
                }
                strotss::remd(&d)
            };
            let (v1, g1) = value_and_grad(&out, slow);
            let (v2, g2) = value_and_grad(&out, |o| strotss::remd_cosine(o, &unit, e));
            assert!(
                (v1 - v2).abs() <= 1e-5 * v1.abs(),
                "value {v1} vs {v2} (n = {n})"
            );
            assert_close(&g2, &g1, 1e-4, "REMD gradient");
        }
    }
}

#[test]
fn fast_palette_remd_matches_autograd_in_value_and_gradient() {
    let _serial = serial();
    tch::manual_seed(24);
    let style = Tensor::rand([70, 3], F32);
    for n in [30, 200] {
        let out = Tensor::rand([n, 3], F32);
        let extra = (Tensor::rand([n, 70], F32).gt(0.7)).to_kind(Kind::Float) * 2.0;
        for e in [None, Some(&extra)] {
            let slow = |o: &Tensor| {
                let d = strotss::euclidean_distance(o, &style);
                // Not in place: sqrt's backward needs its output.
                let d = match e {
                    Some(e) => d + e,
                    None => d,
                };
                strotss::remd(&d)
            };
            let (v1, g1) = value_and_grad(&out, slow);
            let (v2, g2) = value_and_grad(&out, |o| strotss::remd_euclidean(o, &style, e));
            assert!(
                (v1 - v2).abs() <= 1e-5 * v1.abs(),
                "value {v1} vs {v2} (n = {n})"
            );
            assert_close(&g2, &g1, 1e-3, "palette REMD gradient");
        }
    }
}

#[test]
fn bf16_remd_stays_near_fp32() {
    let _serial = serial();
    tch::manual_seed(23);
    let style = Tensor::randn([300, 64], F32).relu() + 0.01;
    let out = Tensor::randn([200, 64], F32).relu() + 0.01;
    let exact = strotss::UnitPool::new(&style, nst_core::Precision::Fp32);
    let bf16 = strotss::UnitPool::new(&style, nst_core::Precision::Bf16);
    let (v1, g1) = value_and_grad(&out, |o| strotss::remd_cosine(o, &exact, None));
    let (v2, g2) = value_and_grad(&out, |o| strotss::remd_cosine(o, &bf16, None));
    // Only the choice of the minima sees bf16 rounding; the chosen distances
    // are recomputed in fp32. A near-tie may pick another, almost as close, sample.
    let rel = (v1 - v2).abs() / v1.abs();
    assert!(rel < 1e-2, "value {v1} vs {v2}: relative {rel:.2e}");
    // The bf16-chosen minima are recomputed exactly, so they can only be
    // larger than (or equal to) the true minima.
    assert!(
        v2 >= v1 * (1.0 - 1e-6),
        "bf16 REMD {v2} below the exact {v1}"
    );
    // Near-ties make other samples the match, so the gradient is another,
    // equally valid, descent direction of the same size.
    let (n1, n2) = (g1.norm().double_value(&[]), g2.norm().double_value(&[]));
    let cos = (&g1 * &g2).sum(Kind::Float).double_value(&[]) / (n1 * n2);
    assert!((n2 / n1 - 1.0).abs() < 0.2, "gradient norms {n1} vs {n2}");
    assert!(cos > 0.3, "gradient cosine {cos}");
    // Self-similarity with bf16 matmuls.
    let c = Tensor::randn([100, 64], F32).relu() + 0.01;
    let o = Tensor::randn([100, 64], F32).relu() + 0.01;
    let l1 = strotss::self_similarity_loss(&c, &o).double_value(&[]);
    let l2 = strotss::self_similarity_loss_at(&c, &o, nst_core::Precision::Bf16).double_value(&[]);
    assert!((l1 - l2).abs() < 2e-2 * l1, "self-similarity {l1} vs {l2}");
}

#[test]
fn fast_self_similarity_matches_autograd_in_value_and_gradient() {
    let _serial = serial();
    tch::manual_seed(25);
    let c = Tensor::randn([150, 24], F32).relu() + 0.01;
    let o = Tensor::randn([150, 24], F32).relu() + 0.01;
    // A zero row exercises the clamped norm.
    let _ = o.get(3).zero_();
    let slow = |x: &Tensor| strotss::self_similarity_loss(&c, x);
    let fast = |x: &Tensor| strotss::self_similarity_loss_fast_at(&c, x, nst_core::Precision::Fp32);
    let (v1, g1) = value_and_grad(&o, slow);
    let (v2, g2) = value_and_grad(&o, fast);
    assert!((v1 - v2).abs() <= 1e-5 * v1.abs(), "value {v1} vs {v2}");
    assert_close(&g2, &g1, 1e-4, "self-similarity gradient");
    // In bf16 only the N×N products are rounded: the same descent direction.
    let bf16 = |x: &Tensor| strotss::self_similarity_loss_fast_at(&c, x, nst_core::Precision::Bf16);
    let (v3, g3) = value_and_grad(&o, bf16);
    assert!((v1 - v3).abs() < 2e-2 * v1, "bf16 value {v1} vs {v3}");
    let cos = (&g1 * &g3).sum(Kind::Float).double_value(&[])
        / (g1.norm().double_value(&[]) * g3.norm().double_value(&[]));
    assert!(cos > 0.95, "bf16 gradient cosine {cos}");
}

#[test]
fn blocked_gram_update_matches_one_addmm() {
    let _serial = serial();
    tch::manual_seed(26);
    // Wide enough for the blocked path, with a width that does not divide by 4,
    // and a non-symmetric base.
    for c in [40, 301] {
        let x = Tensor::randn([50, c], F32);
        let base = Tensor::randn([c, c], F32);
        let want = base.addmm(&(&x * -0.3).transpose(0, 1), &x);
        assert_close(
            &strotss::add_gram(&base, &x, -0.3),
            &want,
            1e-5,
            "base + k·xᵀx",
        );
    }
}

#[test]
fn fast_moment_loss_matches_autograd_in_value_and_gradient() {
    let _serial = serial();
    tch::manual_seed(22);
    let style = Tensor::randn([90, 12], F32).relu();
    let (mu, cov) = strotss::mean_and_cov(&style);
    let out = Tensor::randn([40, 12], F32).relu() * 1.5;
    let (v1, g1) = value_and_grad(&out, |o| strotss::moment_loss_to(&mu, &cov, o));
    let (v2, g2) = value_and_grad(&out, |o| strotss::moment_loss_to_fast(&mu, &cov, o));
    assert!((v1 - v2).abs() <= 1e-5 * v1.abs(), "value {v1} vs {v2}");
    assert_close(&g2, &g1, 1e-4, "moment-loss gradient");
}

#[test]
fn fast_moment_loss_value_is_exact_at_strotss_width() {
    // STROTSS's hypercolumns are 2,176 wide: the covariance term sums 4.7 M
    // entries, where a careless fp32 reduction drifts by ~1e-3.
    let _serial = serial();
    tch::manual_seed(27);
    let c = 2176;
    let style = Tensor::randn([1200, c], F32).relu();
    let out = Tensor::randn([1024, c], F32).relu() * 1.2;
    let (mu, cov) = strotss::mean_and_cov(&style);
    let got = strotss::moment_loss_to_fast(&mu, &cov, &out).double_value(&[]);
    let d = |t: &Tensor| t.to_kind(Kind::Double);
    let (mu_o, cov_o) = strotss::mean_and_cov(&out);
    let want = (d(&mu) - d(&mu_o))
        .abs()
        .mean(Kind::Double)
        .double_value(&[])
        + (d(&cov) - d(&cov_o))
            .abs()
            .mean(Kind::Double)
            .double_value(&[]);
    assert!(
        (got - want).abs() <= 1e-5 * want,
        "moment loss {got} vs float64 sum {want}"
    );
}

#[test]
fn moments_accumulated_over_pieces_equal_the_whole_images() {
    use crate::stats::{mean_std, Moments, EPS};
    tch::manual_seed(3);
    let f = Tensor::randn([1, 6, 40, 52], (Kind::Float, Device::Cpu)) * 3.0 + 1.5;
    // Four uneven pieces that partition the map.
    let mut m = Moments::new(true);
    let mut d = Moments::new(false);
    for (y, h) in [(0, 17), (17, 23)] {
        for (x, w) in [(0, 30), (30, 22)] {
            let p = f.narrow(2, y, h).narrow(3, x, w);
            m.add(&p);
            d.add(&p);
        }
    }
    assert_eq!(m.count(), 40 * 52);
    let (mu, sd) = mean_std(&f, EPS);
    for (a, b) in [m.mean_std(EPS), d.mean_std(EPS)] {
        assert_close(&a, &mu, 1e-5, "mean");
        assert_close(&b, &sd, 1e-5, "std");
    }
    // torch.cov over pixels (rows are channels), unbiased.
    let rows = f.reshape([6, -1]).to_kind(Kind::Double);
    let cov = rows.cov(1, None::<Tensor>, None::<Tensor>);
    assert_close(&m.covariance(), &cov, 1e-9, "covariance");
}
