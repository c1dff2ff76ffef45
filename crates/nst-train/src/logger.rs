//! Training logs behind a small trait, so the writer can be swapped out.
use tch::{Kind, Tensor};

pub trait Logger {
    fn scalar(&mut self, tag: &str, value: f64, step: u64);
    /// `image: [3, H, W]` in [0, 1].
    fn image(&mut self, tag: &str, image: &Tensor, step: u64);
    fn flush(&mut self);
}

/// Discards everything.
#[derive(Debug, Default)]
pub struct NullLogger;

impl Logger for NullLogger {
    fn scalar(&mut self, _: &str, _: f64, _: u64) {}
    fn image(&mut self, _: &str, _: &Tensor, _: u64) {}
    fn flush(&mut self) {}
}

/// TensorBoard event files through `tensorboard-rs`.
pub struct TensorBoard {
    writer: tensorboard_rs::summary_writer::SummaryWriter,
}

impl TensorBoard {
    pub fn new(dir: &std::path::Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            writer: tensorboard_rs::summary_writer::SummaryWriter::new(dir),
        })
    }
}

/// Pads a `[3, H, W]` image to a square (tensorboard-rs writes only square
/// images with the right width/height metadata) and returns interleaved RGB bytes.
fn square_rgb8(image: &Tensor) -> (Vec<u8>, usize) {
    let img = image
        .to_device(tch::Device::Cpu)
        .to_kind(Kind::Float)
        .clamp(0.0, 1.0);
    let (_, h, w) = img.size3().unwrap_or((3, 1, 1));
    let s = h.max(w);
    let padded = img.constant_pad_nd([0, s - w, 0, s - h]);
    let bytes = (padded * 255.0)
        .round()
        .to_kind(Kind::Uint8)
        .permute([1, 2, 0])
        .contiguous()
        .flatten(0, -1);
    (Vec::<u8>::try_from(&bytes).unwrap_or_default(), s as usize)
}

impl Logger for TensorBoard {
    fn scalar(&mut self, tag: &str, value: f64, step: u64) {
        self.writer.add_scalar(tag, value as f32, step as usize);
    }
    fn image(&mut self, tag: &str, image: &Tensor, step: u64) {
        let (bytes, s) = square_rgb8(image);
        if bytes.len() == 3 * s * s {
            self.writer
                .add_image(tag, &bytes, &[3, s, s], step as usize);
        }
    }
    fn flush(&mut self) {
        self.writer.flush();
    }
}
