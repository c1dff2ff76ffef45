//! nst-infer: run style-transfer and texture-synthesis methods on images.
use clap::{Parser, Subcommand};
use nst_cli::{adain, common::run_main, gatys, optex, puy, strotss, texture, vae};

/// Neural style transfer and texture synthesis on LibTorch.
///
/// Every method reads RGB images (PNG, JPEG, BMP, TIFF, WebP; grayscale,
/// RGBA and 16-bit are converted) and writes the result atomically.
/// Run `nst-infer <METHOD> --help` for a method's options.
#[derive(Debug, Parser)]
#[command(name = "nst-infer", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    method: Method,
}

#[derive(Debug, Subcommand)]
enum Method {
    /// Gatys et al.: optimise the pixels against VGG content and Gram style losses (slow, strong).
    Gatys(gatys::GatysArgs),
    /// STROTSS: relaxed optimal transport + self-similarity, multi-scale, optional region masks.
    Strotss(strotss::StrotssArgs),
    /// AdaIN: stylise in one forward pass with a decoder trained by nst-train (model.kind = "adain").
    Adain(adain::AdainArgs),
    /// Variational AdaIN: stylise, interpolate style codes, or sample new styles (model.kind = "vae_adain").
    VaeAdain(vae::VaeArgs),
    /// Optimal Textures (Risser et al.): texture synthesis and style transfer by sliced optimal transport, with trained decoders.
    Optex(optex::OptexArgs),
    /// AdaIN or WCT at one or several levels, with the decoders of `nst-train` (model.kind = "decoders").
    AdainWct(optex::AdainWctArgs),
    /// Reconstruction PSNR of trained decoders, per level, over a folder of images.
    DecodersPsnr(optex::PsnrArgs),
    /// Texture synthesis: Gatys, or the pseudo-optimizers PO / AdaPO / ProPO trained by nst-train (model.kind = "po").
    Texture(texture::TextureArgs),
    /// Quality vs diversity vs time of texture methods on a folder of targets (table + CSV).
    EvalTexture(texture::EvalArgs),
    /// Puy & Pérez's flexible solver (model.kind = "puy_perez"): artistic, or photorealistic with --photoreal.
    PuyPerez(puy::PuyArgs),
}

#[global_allocator]
static GLOBAL: nst_core::alloc::MiMalloc = nst_core::alloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    run_main(|| match cli.method {
        Method::Gatys(a) => gatys::run(a),
        Method::Adain(a) => adain::run(a),
        Method::Strotss(a) => strotss::run(a),
        Method::VaeAdain(a) => vae::run(a),
        Method::Optex(a) => optex::run_optex(a),
        Method::AdainWct(a) => optex::run_adain_wct(a),
        Method::DecodersPsnr(a) => optex::run_psnr(a),
        Method::Texture(a) => texture::run_texture(a),
        Method::EvalTexture(a) => texture::run_eval(a),
        Method::PuyPerez(a) => puy::run(a),
    })
}
