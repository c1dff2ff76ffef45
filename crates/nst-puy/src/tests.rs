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
