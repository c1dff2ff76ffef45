//! Channel statistics and the AdaIN operator (Huang & Belongie 2017),
//! shared by AdaIN, the variational model and the universal decoders.
use tch::{Kind, Tensor};

/// Default ε added to the variance before the square root.
pub const EPS: f64 = 1e-5;

/// Per-instance, per-channel mean and standard deviation over the spatial
/// dimensions: σ = sqrt(Var(x) + ε), with the unbiased variance.
/// Computed in fp32.
///
/// # Shapes
/// `x: [B, C, H, W]` → (`[B, C, 1, 1]`, `[B, C, 1, 1]`)
pub fn mean_std(x: &Tensor, eps: f64) -> (Tensor, Tensor) {
    let x = x.to_kind(Kind::Float);
    let (b, c, _, _) = x
        .size4()
        .unwrap_or_else(|_| panic!("mean_std expects [B, C, H, W], got {:?}", x.size()));
    let flat = x.reshape([b, c, -1]);
    let mean = flat
        .mean_dim([2i64].as_slice(), true, Kind::Float)
        .unsqueeze(-1);
    let var = flat.var_dim([2i64].as_slice(), true, true).unsqueeze(-1);
    (mean, (var + eps).sqrt())
}

/// AdaIN(x, y) = σ(y) · (x − μ(x)) / σ(x) + μ(y).
///
/// # Shapes
/// `content: [B, C, H, W]`, `style: [B, C, H', W']` → `[B, C, H, W]`
pub fn adain(content: &Tensor, style: &Tensor) -> Tensor {
    let (mc, sc) = mean_std(content, EPS);
    let (ms, ss) = mean_std(style, EPS);
    adain_with(content, (&mc, &sc), (&ms, &ss))
}

/// Feature statistics of one image accumulated piece by piece (over the
/// tiles of a large image, say): the count, the per-channel sums and either
/// the per-channel sums of squares or the full `C × C` sums of products, in
/// f64. Adding the pieces of a partition gives the statistics of the whole,
/// up to rounding.
#[derive(Debug)]
pub struct Moments {
    n: i64,
    sum: Option<Tensor>,
    sq: Option<Tensor>,
    full: bool,
}

impl Moments {
    /// Per-channel mean and variance (`full = false`), or mean and
    /// covariance (`full = true`).
    pub fn new(full: bool) -> Self {
        Self {
            n: 0,
            sum: None,
            sq: None,
            full,
        }
    }

    /// The moments of one feature map `[1, C, H, W]`.
    pub fn of(f: &Tensor, full: bool) -> Self {
        let mut m = Self::new(full);
        m.add(f);
        m
    }

    /// Adds the samples of `f: [1, C, H, W]` (every pixel is one sample),
    /// in either memory layout. The map is converted to f64 in blocks of
    /// [`Moments::BLOCK`] pixels, not whole: a whole f64 copy of a relu1_1
    /// map at 1024² is 512 MB, mapped and zeroed afresh on every call.
    pub fn add(&mut self, f: &Tensor) {
        let c = f.size()[1];
        // Pixels as rows [N, C]: free for a channels-last map; an NCHW map
        // is read as columns [C, N] (free too) and transposed per block.
        let nhwc = f.permute([0, 2, 3, 1]);
        let (rows, by_rows) = if nhwc.is_contiguous() {
            (nhwc.reshape([-1, c]), true)
        } else {
            (f.reshape([c, -1]), false)
        };
        let n = if by_rows {
            rows.size()[0]
        } else {
            rows.size()[1]
        };
        let opts = (Kind::Double, f.device());
        let mut s = Tensor::zeros([c], opts);
        let mut q = if self.full {
            Tensor::zeros([c, c], opts)
        } else {
            Tensor::zeros([c], opts)
        };
        let mut start = 0;
        while start < n {
            let len = Self::BLOCK.min(n - start);
            let b = if by_rows {
                rows.narrow(0, start, len)
            } else {
                rows.narrow(1, start, len).transpose(0, 1)
            }
            .to_kind(Kind::Double); // [len, C]
            s += b.sum_dim_intlist([0i64].as_slice(), false, Kind::Double);
            if self.full {
                q += b.transpose(0, 1).matmul(&b);
            } else {
                q += b
                    .square()
                    .sum_dim_intlist([0i64].as_slice(), false, Kind::Double);
            }
            start += len;
        }
        self.n += n;
        self.sum = Some(match self.sum.take() {
            Some(a) => a + s,
            None => s,
        });
        self.sq = Some(match self.sq.take() {
            Some(a) => a + q,
            None => q,
        });
    }

    /// Pixels converted to f64 at a time by [`Moments::add`] (8 MB of f64
    /// at 64 channels).
    pub const BLOCK: i64 = 1 << 14;

    pub fn count(&self) -> i64 {
        self.n
    }

    fn parts(&self) -> (&Tensor, &Tensor) {
        match (&self.sum, &self.sq) {
            (Some(s), Some(q)) if self.n > 0 => (s, q),
            _ => panic!("Moments used before any samples were added"),
        }
    }

    /// The mean `[C]` (f64).
    pub fn mean(&self) -> Tensor {
        self.parts().0 / self.n as f64
    }

    /// The unbiased per-channel variance `[C]` (f64).
    pub fn variance(&self) -> Tensor {
        let (s, q) = self.parts();
        let q = if self.full {
            q.diagonal(0, 0, 1)
        } else {
            q.shallow_clone()
        };
        let n = self.n as f64;
        ((q - s.square() / n) / (n - 1.0).max(1.0)).clamp_min(0.0)
    }

    /// The unbiased covariance `[C, C]` (f64); needs `full`.
    pub fn covariance(&self) -> Tensor {
        assert!(self.full, "covariance needs Moments::new(true)");
        let (s, q) = self.parts();
        let n = self.n as f64;
        (q - s.outer(s) / n) / (n - 1.0).max(1.0)
    }

    /// [`mean_std`] of the whole: (`[1, C, 1, 1]`, `[1, C, 1, 1]`) fp32,
    /// σ = sqrt(Var + ε).
    pub fn mean_std(&self, eps: f64) -> (Tensor, Tensor) {
        let shape = [1i64, -1, 1, 1];
        (
            self.mean().to_kind(Kind::Float).reshape(shape),
            (self.variance() + eps)
                .sqrt()
                .to_kind(Kind::Float)
                .reshape(shape),
        )
    }
}

/// AdaIN with the channel statistics given: σ_s · (x − μ_c) / σ_c + μ_s,
/// each `[1, C, 1, 1]` (as [`mean_std`] or [`Moments::mean_std`] return).
pub fn adain_with(
    content: &Tensor,
    (mc, sc): (&Tensor, &Tensor),
    (ms, ss): (&Tensor, &Tensor),
) -> Tensor {
    let d = content.device();
    (content.to_kind(Kind::Float) - mc.to_device(d)) / sc.to_device(d) * ss.to_device(d)
        + ms.to_device(d)
}
