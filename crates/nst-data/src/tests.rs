//! Fake trees in each official layout (generated images, some corrupt) and the pipeline.
#![allow(clippy::unwrap_used)]
use crate::*;
use std::path::Path;

fn img(path: &Path, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let im = image::RgbImage::from_fn(48 + seed % 7, 40 + seed % 5, |x, y| {
        image::Rgb([(seed * 37 % 251) as u8, (x * 5) as u8, (y * 6) as u8])
    });
    im.save(path).unwrap();
}

fn corrupt(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"\xff\xd8\xff\xe0 this is not really a jpeg").unwrap();
}

#[test]
fn places365_tree_and_list_files() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("places365_standard");
    for i in 0..3 {
        img(&root.join(format!("train/a/airfield/{i:08}.jpg")), i);
        img(
            &root.join(format!("train/b/bakery/shop/{i:08}.jpg")),
            10 + i,
        );
    }
    img(&root.join("val/a/airfield/00000001.jpg"), 99);
    let ds = SourceConfig {
        kind: SourceKind::Places365,
        root: root.clone(),
        split: Some("train".into()),
        list: None,
        classes: None,
        filter: vec![],
    }
    .open()
    .unwrap();
    assert_eq!(ds.samples.len(), 6);
    assert_eq!(ds.classes, vec!["/a/airfield", "/b/bakery/shop"]);
    assert_eq!(ds.samples.iter().filter(|s| s.label == Some(1)).count(), 3);

    // List-file layout resolved against the image root.
    let list = d.path().join("places365_train_standard.txt");
    std::fs::write(
        &list,
        "/a/airfield/00000000.jpg 0\n/b/bakery/shop/00000002.jpg 1\n",
    )
    .unwrap();
    let cats = d.path().join("categories_places365.txt");
    std::fs::write(&cats, "/a/airfield 0\n/b/bakery/shop 1\n").unwrap();
    let ds = SourceConfig {
        kind: SourceKind::Places365,
        root: root.join("train"),
        split: None,
        list: Some(list.clone()),
        classes: Some(cats.clone()),
        filter: vec!["/b/bakery/shop".into()],
    }
    .open()
    .unwrap();
    assert_eq!(ds.samples.len(), 1);
    assert_eq!(
        ds.samples[0].path,
        root.join("train/b/bakery/shop/00000002.jpg")
    );
    assert_eq!(ds.samples[0].label, Some(1));

    std::fs::write(&list, "/a/airfield/00000000.jpg zero\n").unwrap();
    let e = SourceConfig {
        kind: SourceKind::Places365,
        root: root.join("train"),
        split: None,
        list: Some(list),
        classes: None,
        filter: vec![],
    }
    .open()
    .unwrap_err()
    .to_string();
    assert!(e.contains(":1:") && e.contains("zero"), "{e}");
}

#[test]
fn wikiart_tree_csv_and_filters() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("wikiart");
    img(&root.join("Impressionism/claude-monet_a.jpg"), 1);
    img(&root.join("Impressionism/claude-monet_b.jpg"), 2);
    img(&root.join("Cubism/pablo-picasso_c.jpg"), 3);
    let tree = SourceConfig {
        kind: SourceKind::Wikiart,
        root: root.clone(),
        split: None,
        list: None,
        classes: None,
        filter: vec![],
    };
    let ds = tree.open().unwrap();
    assert_eq!(ds.classes, vec!["Cubism", "Impressionism"]);
    assert_eq!(ds.samples.len(), 3);
    let only = SourceConfig {
        filter: vec!["Cubism".into()],
        ..tree.clone()
    }
    .open()
    .unwrap();
    assert_eq!(only.samples.len(), 1);
    let e = SourceConfig {
        filter: vec!["Fauvism".into()],
        ..tree
    }
    .open()
    .unwrap_err()
    .to_string();
    assert!(e.contains("Fauvism") && e.contains("Cubism"), "{e}");

    let csv = d.path().join("style_train.csv");
    std::fs::write(
        &csv,
        "Impressionism/claude-monet_a.jpg,12\nCubism/pablo-picasso_c.jpg,7\n",
    )
    .unwrap();
    let classes = d.path().join("style_class.txt");
    let mut txt = String::new();
    for i in 0..27 {
        txt += &format!(
            "{i} {}\n",
            match i {
                7 => "Cubism",
                12 => "Impressionism",
                _ => "Other",
            }
        );
    }
    std::fs::write(&classes, txt).unwrap();
    let ds = SourceConfig {
        kind: SourceKind::Wikiart,
        root: root.clone(),
        split: None,
        list: Some(csv),
        classes: Some(classes),
        filter: vec!["Impressionism".into()],
    }
    .open()
    .unwrap();
    assert_eq!(ds.samples.len(), 1);
    assert_eq!(ds.samples[0].label, Some(12));
    assert_eq!(
        ds.samples[0].path,
        root.join("Impressionism/claude-monet_a.jpg")
    );
}

#[test]
fn dtd_and_plain_folders() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("dtd");
    for (i, c) in ["banded", "banded", "braided", "zigzagged"]
        .iter()
        .enumerate()
    {
        img(&root.join(format!("images/{c}/{c}_{i:04}.jpg")), i as u32);
    }
    std::fs::create_dir_all(root.join("labels")).unwrap();
    std::fs::write(
        root.join("labels/train1.txt"),
        "banded/banded_0000.jpg\nzigzagged/zigzagged_0003.jpg\n",
    )
    .unwrap();
    let all = SourceConfig {
        kind: SourceKind::Dtd,
        root: root.clone(),
        split: None,
        list: None,
        classes: None,
        filter: vec![],
    };
    let ds = all.open().unwrap();
    assert_eq!((ds.samples.len(), ds.classes.len()), (4, 3));
    let split = SourceConfig {
        list: Some(root.join("labels/train1.txt")),
        ..all
    }
    .open()
    .unwrap();
    assert_eq!(split.samples.len(), 2);
    assert_eq!(split.samples[1].label, Some(2));

    // A plain folder: recursive, images only, sorted.
    std::fs::write(root.join("images/readme.txt"), "not an image").unwrap();
    let f = SourceConfig::folder(&root).open().unwrap();
    assert_eq!(f.samples.len(), 4);
    assert!(f.samples.windows(2).all(|w| w[0].path < w[1].path));
    assert!(SourceConfig::folder(d.path().join("missing"))
        .open()
        .unwrap_err()
        .to_string()
        .contains("folder not found"));
    let empty = d.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(matches!(
        SourceConfig::folder(&empty).open(),
        Err(Error::Empty { .. })
    ));
}

fn folder_with(n: u32, bad: &[u32]) -> (tempfile::TempDir, Dataset) {
    let d = tempfile::tempdir().unwrap();
    for i in 0..n {
        let p = d.path().join(format!("img_{i:03}.png"));
        if bad.contains(&i) {
            corrupt(&p);
        } else {
            img(&p, i);
        }
    }
    let ds = SourceConfig::folder(d.path()).open().unwrap();
    (d, ds)
}

fn cfg(batch: usize, max_bad: f64) -> PipelineConfig {
    PipelineConfig {
        resize_shorter: 40,
        crop: 32,
        flip: true,
        batch_size: batch,
        threads: 2,
        prefetch: 2,
        max_bad_fraction: max_bad,
    }
}

fn take(loader: &mut Loader, n: usize) -> Vec<tch::Tensor> {
    (0..n)
        .map(|_| loader.next_batch().unwrap().images)
        .collect()
}

#[test]
fn batches_skip_bad_images_and_are_deterministic() {
    let (_d, ds) = folder_with(10, &[3, 7]);
    let mut a = Loader::new(ds.clone(), cfg(4, 0.5), 42, Position::default()).unwrap();
    let first = a.next_batch().unwrap();
    assert_eq!(first.images.size(), [4, 3, 32, 32]);
    assert!(
        first.images.min().double_value(&[]) >= 0.0 && first.images.max().double_value(&[]) <= 1.0
    );
    let rest = take(&mut a, 5); // crosses epochs: 8 good images per epoch
                                // 24 good images consumed = three epochs of 8, so at least the two bad
                                // files of epochs 0 and 1 were tried. Prefetching workers may have tried
                                // more, so only the lower bound is deterministic.
    let bad = a.stats().bad.load(std::sync::atomic::Ordering::Relaxed);
    assert!(bad >= 4, "two bad files per epoch, got {bad}");

    // Same seed, same stream.
    let mut b = Loader::new(ds.clone(), cfg(4, 0.5), 42, Position::default()).unwrap();
    assert!(b.next_batch().unwrap().images.equal(&first.images));
    // Resume from a saved position continues the same sequence.
    let mut c = Loader::new(ds.clone(), cfg(4, 0.5), 42, first.next).unwrap();
    for (x, y) in take(&mut c, 5).iter().zip(&rest) {
        assert!(x.equal(y), "resumed stream differs");
    }
    // Another seed, another stream.
    let mut e = Loader::new(ds, cfg(4, 0.5), 43, Position::default()).unwrap();
    assert!(!e.next_batch().unwrap().images.equal(&first.images));
}

#[test]
fn too_many_bad_images_stop_with_a_clear_error() {
    let (_d, ds) = folder_with(30, &(0..15).collect::<Vec<_>>());
    let mut l = Loader::new(ds, cfg(4, 0.1), 1, Position::default()).unwrap();
    let mut err = None;
    for _ in 0..20 {
        if let Err(e) = l.next_batch() {
            err = Some(e.to_string());
            break;
        }
    }
    let e = err.expect("the loader must give up");
    assert!(e.contains("failed to decode") && e.contains("10.0%"), "{e}");
}

#[test]
fn epoch_orders_are_permutations_that_change_per_epoch() {
    let a = pipeline::epoch_order(100, 7, 0);
    let b = pipeline::epoch_order(100, 7, 1);
    let mut s = a.clone();
    s.sort();
    assert_eq!(s, (0..100).collect::<Vec<u32>>());
    assert_ne!(a, b);
    assert_eq!(a, pipeline::epoch_order(100, 7, 0));
}

/// Training batches are resampled exactly as `nst_core::load_image` resamples
/// at inference: a square image resized to the crop size (no flip) gives the
/// same pixels both ways. A detailed pattern, since the filters differ most
/// on high frequencies.
#[test]
fn training_resize_matches_inference_resize() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("checker.png");
    image::RgbImage::from_fn(97, 97, |x, y| {
        let v = if (x / 2 + y / 3) % 2 == 0 { 230 } else { 20 };
        image::Rgb([v, (x * 2) as u8, ((x * y) % 256) as u8])
    })
    .save(&p)
    .unwrap();
    let ds = SourceConfig::folder(d.path()).open().unwrap();
    let cfg = PipelineConfig {
        resize_shorter: 32,
        crop: 32,
        flip: false,
        batch_size: 1,
        threads: 1,
        prefetch: 1,
        max_bad_fraction: 0.0,
    };
    let mut loader = Loader::new(ds, cfg, 0, Position::default()).unwrap();
    let train = loader.next_batch().unwrap().images;
    let infer = nst_core::load_image(
        &p,
        nst_core::LoadOptions {
            size: nst_core::ImageSize::Exact {
                width: 32,
                height: 32,
            },
            device: tch::Device::Cpu,
        },
    )
    .unwrap();
    let diff = (&train - &infer).abs().max().double_value(&[]);
    assert!(
        diff < 1e-6,
        "training and inference resampling differ by {diff}"
    );
}

/// Issue 30: truncated JPEG, PNG and WebP files in a dataset are skipped and
/// counted as bad, not trained on from a partial decode.
#[test]
fn truncated_images_are_skipped_and_counted() {
    let d = tempfile::tempdir().unwrap();
    for i in 0..4u32 {
        img(&d.path().join(format!("good_{i}.png")), i);
    }
    for ext in ["jpg", "png", "webp"] {
        let p = d.path().join(format!("full.{ext}"));
        img(&p, 9);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        std::fs::write(
            d.path().join(format!("cut.{ext}")),
            &bytes[..bytes.len() * 3 / 4],
        )
        .unwrap();
    }
    let ds = SourceConfig::folder(d.path()).open().unwrap();
    // Every image is tried once per epoch; take two epochs' worth.
    let mut l = Loader::new(ds, cfg(1, 0.9), 3, Position::default()).unwrap();
    let _ = take(&mut l, 8);
    let bad = l.stats().bad.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        bad >= 3,
        "the three truncated files of the first epoch are counted: {bad}"
    );
}
