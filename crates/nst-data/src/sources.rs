//! Dataset layouts.
//!
//! | kind | layout read |
//! |---|---|
//! | `folder` | any folder, scanned recursively for .jpg/.jpeg/.png/.bmp/.webp/.tif(f); or a single image file |
//! | `places365` | `root/{train,val}/<category…>/*.jpg` (places365_standard), or a list file (`places365_train_standard.txt`: `/a/airfield/00000001.jpg 0`; `places365_val.txt`: `Places365_val_00000001.jpg 165`) resolved against `root`, with `categories_places365.txt` (`/a/airfield 0`) |
//! | `wikiart` | `root/<Style>/<artist_title>.jpg`, or the ArtGAN split file (`style_train.csv`: `Impressionism/claude-monet_x.jpg,12`) with its class file (`style_class.txt`: `12 Impressionism`); `filter` keeps the listed classes |
//! | `dtd` | `root/images/<category>/*.jpg`, optionally a split file `root/labels/train1.txt` (`banded/banded_0002.jpg`) |
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One image and its class, if the layout has classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub path: PathBuf,
    pub label: Option<u32>,
}

/// A list of images with class names.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub samples: Vec<Sample>,
    pub classes: Vec<String>,
}

/// Which layout a source uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Folder,
    Places365,
    Wikiart,
    Dtd,
}

/// A data source as written in a training config (`[data.content]`, `[data.style]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub kind: SourceKind,
    /// The dataset's root folder (the image root for list files).
    pub root: PathBuf,
    /// Places365 folder tree: `train` or `val` sub-folder of `root`.
    #[serde(default)]
    pub split: Option<String>,
    /// A split/list file (Places365 list, WikiArt CSV, DTD labels file).
    #[serde(default)]
    pub list: Option<PathBuf>,
    /// A class-name file (Places365 categories, WikiArt `style_class.txt`/`genre_class.txt`).
    #[serde(default)]
    pub classes: Option<PathBuf>,
    /// Keep only these classes (WikiArt styles or genres, DTD categories, Places365 categories).
    #[serde(default)]
    pub filter: Vec<String>,
}

impl SourceConfig {
    pub fn folder(root: impl Into<PathBuf>) -> Self {
        Self {
            kind: SourceKind::Folder,
            root: root.into(),
            split: None,
            list: None,
            classes: None,
            filter: vec![],
        }
    }

    /// Reads the source into a dataset.
    pub fn open(&self) -> Result<Dataset> {
        let mut ds = match self.kind {
            SourceKind::Folder => image_folder(&self.root)?,
            SourceKind::Places365 => match &self.list {
                Some(list) => places365_list(list, &self.root, self.classes.as_deref())?,
                None => places365_tree(&self.root, self.split.as_deref().unwrap_or("train"))?,
            },
            SourceKind::Wikiart => match &self.list {
                Some(csv) => wikiart_csv(csv, &self.root, self.classes.as_deref())?,
                None => labelled_tree("wikiart", &self.root)?,
            },
            SourceKind::Dtd => dtd(&self.root, self.list.as_deref())?,
        };
        if !self.filter.is_empty() {
            for f in &self.filter {
                if !ds.classes.iter().any(|c| c == f) {
                    return Err(Error::Config(format!(
                        "filter class {f:?} is not in {} (classes: {})",
                        ds.name,
                        ds.classes
                            .iter()
                            .take(40)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
            let keep: Vec<u32> = ds
                .classes
                .iter()
                .enumerate()
                .filter(|(_, c)| self.filter.contains(c))
                .map(|(i, _)| i as u32)
                .collect();
            ds.samples
                .retain(|s| s.label.is_some_and(|l| keep.contains(&l)));
        }
        if ds.samples.is_empty() {
            return Err(Error::Empty {
                name: ds.name,
                hint: format!(" under {}", self.root.display()),
            });
        }
        Ok(ds)
    }
}

fn is_image(p: &Path) -> bool {
    nst_core::is_image_path(p)
}

fn require_dir(p: &Path) -> Result<()> {
    if p.is_dir() {
        Ok(())
    } else {
        Err(Error::Layout {
            path: p.to_path_buf(),
            reason: "folder not found".into(),
        })
    }
}

fn read_lines(p: &Path) -> Result<Vec<(usize, String)>> {
    let text = std::fs::read_to_string(p).map_err(|e| Error::Layout {
        path: p.to_path_buf(),
        reason: format!("cannot read: {e}"),
    })?;
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim().to_string()))
        .filter(|(_, l)| !l.is_empty())
        .collect())
}

/// How a class-file line is ordered.
#[derive(Clone, Copy)]
enum ClassLine {
    /// `/a/airfield 0` (Places365 categories)
    NameIndex,
    /// `12 Impressionism` (WikiArt class files)
    IndexName,
}

/// Reads a class file into names indexed by class number.
fn read_class_file(path: &Path, order: ClassLine) -> Result<Vec<String>> {
    let mut classes = Vec::new();
    for (ln, line) in read_lines(path)? {
        let parsed = match order {
            ClassLine::NameIndex => line.rsplit_once(char::is_whitespace).map(|(n, i)| (i, n)),
            ClassLine::IndexName => line.split_once(char::is_whitespace),
        };
        let example = match order {
            ClassLine::NameIndex => "`/a/airfield 0`",
            ClassLine::IndexName => "`12 Impressionism`",
        };
        let (idx, name) = parsed.ok_or_else(|| Error::Parse {
            path: path.to_path_buf(),
            line: ln,
            reason: format!("expected {example}"),
        })?;
        let idx: usize = idx.trim().parse().map_err(|_| Error::Parse {
            path: path.to_path_buf(),
            line: ln,
            reason: format!("bad class index {idx:?}"),
        })?;
        if classes.len() <= idx {
            classes.resize(idx + 1, String::new());
        }
        classes[idx] = name.trim().to_string();
    }
    Ok(classes)
}

/// Every image below `root`, recursively, in sorted path order; no labels.
pub fn image_folder(root: &Path) -> Result<Dataset> {
    if root.is_file() && is_image(root) {
        // One image (e.g. the single target of a texture pseudo-optimizer).
        return Ok(Dataset {
            name: format!("image {}", root.display()),
            samples: vec![Sample {
                path: root.to_path_buf(),
                label: None,
            }],
            classes: vec![],
        });
    }
    require_dir(root)?;
    let mut samples: Vec<Sample> = walkdir::WalkDir::new(root)
        .follow_links(true)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && is_image(e.path()))
        .map(|e| Sample {
            path: e.into_path(),
            label: None,
        })
        .collect();
    samples.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Dataset {
        name: format!("folder {}", root.display()),
        samples,
        classes: vec![],
    })
}

/// `root/<class path>/*.ext`, labelled by the folder path relative to `root`
/// (nested for Places365's `a/apartment_building/outdoor`), classes sorted.
fn labelled_tree(name: &str, root: &Path) -> Result<Dataset> {
    require_dir(root)?;
    let mut files: Vec<(String, PathBuf)> = walkdir::WalkDir::new(root)
        .follow_links(true)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && is_image(e.path()))
        .filter_map(|e| {
            let rel = e
                .path()
                .parent()?
                .strip_prefix(root)
                .ok()?
                .to_string_lossy()
                .replace('\\', "/");
            (!rel.is_empty()).then(|| (rel, e.into_path()))
        })
        .collect();
    files.sort();
    let mut classes: Vec<String> = files.iter().map(|(c, _)| c.clone()).collect();
    classes.dedup();
    let samples = files
        .into_iter()
        .map(|(c, path)| Sample {
            label: classes.binary_search(&c).ok().map(|i| i as u32),
            path,
        })
        .collect();
    Ok(Dataset {
        name: format!("{name} {}", root.display()),
        samples,
        classes,
    })
}

/// Places365-standard folder tree: `root/<split>/<category>/*.jpg`.
pub fn places365_tree(root: &Path, split: &str) -> Result<Dataset> {
    if split != "train" && split != "val" {
        return Err(Error::Config(format!(
            "places365 split must be train or val, got {split:?}"
        )));
    }
    let mut ds = labelled_tree("places365", &root.join(split))?;
    ds.classes = ds
        .classes
        .iter()
        .map(|c| format!("/{}", c.trim_start_matches('/')))
        .collect();
    Ok(ds)
}

/// Places365 list file resolved against `image_root`, with optional categories file.
pub fn places365_list(
    list: &Path,
    image_root: &Path,
    categories: Option<&Path>,
) -> Result<Dataset> {
    require_dir(image_root)?;
    let classes = match categories {
        Some(cat) => read_class_file(cat, ClassLine::NameIndex)?,
        None => vec![],
    };
    let mut samples = Vec::new();
    for (ln, line) in read_lines(list)? {
        let mut parts = line.split_whitespace();
        let rel = parts.next().unwrap_or_default();
        let label = match parts.next() {
            Some(l) => Some(l.parse::<u32>().map_err(|_| Error::Parse {
                path: list.to_path_buf(),
                line: ln,
                reason: format!("bad label {l:?}"),
            })?),
            None => None,
        };
        if let (Some(l), false) = (label, classes.is_empty()) {
            if l as usize >= classes.len() {
                return Err(Error::Parse {
                    path: list.to_path_buf(),
                    line: ln,
                    reason: format!("label {l} but only {} categories", classes.len()),
                });
            }
        }
        samples.push(Sample {
            path: image_root.join(rel.trim_start_matches('/')),
            label,
        });
    }
    Ok(Dataset {
        name: format!("places365 {}", list.display()),
        samples,
        classes,
    })
}

/// WikiArt split CSV (`Style/file.jpg,label`) resolved against `root`, with optional class file.
pub fn wikiart_csv(csv: &Path, root: &Path, class_file: Option<&Path>) -> Result<Dataset> {
    require_dir(root)?;
    let classes = match class_file {
        Some(cf) => read_class_file(cf, ClassLine::IndexName)?,
        None => vec![],
    };
    let mut samples = Vec::new();
    for (ln, line) in read_lines(csv)? {
        let (rel, label) = line.rsplit_once(',').ok_or_else(|| Error::Parse {
            path: csv.to_path_buf(),
            line: ln,
            reason: "expected `path,label`".into(),
        })?;
        let label: u32 = label.trim().parse().map_err(|_| Error::Parse {
            path: csv.to_path_buf(),
            line: ln,
            reason: format!("bad label {label:?}"),
        })?;
        samples.push(Sample {
            path: root.join(rel.trim()),
            label: Some(label),
        });
    }
    Ok(Dataset {
        name: format!("wikiart {}", csv.display()),
        samples,
        classes,
    })
}

/// DTD: `root/images/<category>/*.jpg`, optionally restricted to a split file.
pub fn dtd(root: &Path, split: Option<&Path>) -> Result<Dataset> {
    let images = root.join("images");
    let mut ds = labelled_tree("dtd", &images)?;
    if let Some(split) = split {
        let keep: std::collections::HashSet<PathBuf> = read_lines(split)?
            .into_iter()
            .map(|(_, l)| images.join(l))
            .collect();
        ds.samples.retain(|s| keep.contains(&s.path));
        ds.name = format!("dtd {}", split.display());
    }
    Ok(ds)
}
