//! Checkpoints: `<run_dir>/step_XXXXXXX.safetensors` (weights, with the model
//! kind in the safetensors metadata), `step_XXXXXXX.optim.safetensors` (Adam's
//! moments) and the sidecar `step_XXXXXXX.json` (step, seed, data positions,
//! resolved config, optimiser scalars, last losses). Every file is written to
//! a temporary name and renamed; `latest` (a one-line text file) is replaced
//! last, so it always names a complete checkpoint.
use crate::{Error, Result};
use nst_core::Position;
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Device, Kind, Tensor};

pub const FORMAT: &str = "nst-checkpoint-1";

/// The sidecar of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointMeta {
    pub format: String,
    pub model_kind: String,
    pub step: u64,
    pub seed: u64,
    pub content_position: Position,
    pub style_position: Position,
    /// The resolved TOML config of the run.
    pub config: String,
    pub optimizer: String,
    pub optimizer_step: u64,
    pub lr: f64,
    pub losses: BTreeMap<String, f64>,
    pub weights_file: String,
    pub optimizer_file: String,
}

impl CheckpointMeta {
    /// The run's name (`train.run` in the saved config), if it has one.
    pub fn run_name(&self) -> Option<String> {
        let t: toml::Table = self.config.parse().ok()?;
        Some(t.get("train")?.get("run")?.as_str()?.to_string())
    }
}

/// Checkpoint file operations.
#[derive(Debug)]
pub struct Checkpoint;

fn ck_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    // One line, whatever a damaged file put into a name.
    let one_line = |s: String| {
        if s.chars().any(char::is_control) {
            s.escape_debug().to_string()
        } else {
            s
        }
    };
    Error::Checkpoint {
        path: one_line(path.display().to_string()),
        reason: one_line(reason.to_string()),
    }
}

/// The metadata key of the CRC-32 over every tensor (see [`checksum`]).
pub const CHECKSUM_KEY: &str = "nst_crc32";

/// CRC-32 over the tensors in name order: name, shape, then data bytes, so
/// that the value does not depend on how the file lays the tensors out.
pub fn checksum<'a>(tensors: impl Iterator<Item = (&'a str, &'a [usize], &'a [u8])>) -> u32 {
    let mut v: Vec<_> = tensors.collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = crc32fast::Hasher::new();
    for (name, shape, data) in v {
        h.update(name.as_bytes());
        for d in shape {
            h.update(&(*d as u64).to_le_bytes());
        }
        h.update(data);
    }
    h.finalize()
}

/// Checks the [`CHECKSUM_KEY`] of a read file against its tensors. A file
/// with no metadata at all (a plain safetensors file from elsewhere) has no
/// checksum to check; a file with metadata but no checksum is refused: nst
/// has written one into every file since checkpoints kept metadata, and a
/// damaged key name must not turn the check off (found by the fuzzer: one
/// flipped bit in `nst_crc32` plus one in the data loaded other weights).
pub fn verify_checksum(
    path: &Path,
    meta: &HashMap<String, String>,
    st: &SafeTensors,
) -> Result<()> {
    let Some(want) = meta.get(CHECKSUM_KEY) else {
        if meta.is_empty() {
            return Ok(());
        }
        return Err(ck_err(
            path,
            format!(
                "has no {CHECKSUM_KEY} checksum in its metadata: damaged, or not written by nst"
            ),
        ));
    };
    let shapes: Vec<(String, Vec<usize>, &[u8])> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec(), v.data()))
        .collect();
    let got = format!(
        "{:08x}",
        checksum(
            shapes
                .iter()
                .map(|(n, s, d)| (n.as_str(), s.as_slice(), *d))
        )
    );
    if &got != want {
        return Err(ck_err(
            path,
            format!("is corrupt: its tensors' checksum is {got}, the file records {want} (a flipped bit or a damaged copy)"),
        ));
    }
    Ok(())
}

/// Writes named tensors (as f32, or their own float kind) with metadata and
/// a checksum ([`CHECKSUM_KEY`]), atomically.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t
            .detach()
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous();
        let n = t.numel();
        let mut bytes = vec![0u8; n * 4];
        t.f_copy_data_u8(&mut bytes, n)?;
        owned.push((
            name.clone(),
            Dtype::F32,
            t.size().iter().map(|&d| d as usize).collect(),
            bytes,
        ));
    }
    let mut metadata = metadata;
    metadata.insert(
        CHECKSUM_KEY.into(),
        format!(
            "{:08x}",
            checksum(
                owned
                    .iter()
                    .map(|(n, _, s, b)| (n.as_str(), s.as_slice(), b.as_slice()))
            )
        ),
    );
    let mut views = Vec::with_capacity(owned.len());
    for (name, dt, shape, bytes) in &owned {
        views.push((
            name.clone(),
            TensorView::new(*dt, shape.clone(), bytes).map_err(|e| ck_err(path, e))?,
        ));
    }
    nst_core::write_atomic(path, |tmp| {
        safetensors::serialize_to_file(views, Some(metadata), tmp).map_err(|e| {
            nst_core::Error::Unwritable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        })
    })?;
    Ok(())
}

/// Reads named tensors and the metadata of a safetensors file.
pub fn read_safetensors(path: &Path) -> Result<(Vec<(String, Tensor)>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| ck_err(path, format!("cannot read: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| ck_err(path, format!("not safetensors: {e}")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| ck_err(path, format!("not safetensors: {e}")))?;
    verify_checksum(path, &meta, &st)?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let kind = match view.dtype() {
            Dtype::F32 => Kind::Float,
            // Shipped weights are stored in bf16 (half the size); they are
            // used as f32 like any other.
            Dtype::BF16 => Kind::BFloat16,
            other => {
                return Err(ck_err(
                    path,
                    format!("tensor {name} is {other:?}, expected F32 or BF16"),
                ))
            }
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        out.push((
            name,
            Tensor::f_from_data_size(view.data(), &shape, kind)?.to_kind(Kind::Float),
        ));
    }
    Ok((out, meta))
}

/// Copies `tensors` into the variables of `vs`, strictly: missing, unexpected
/// and mis-shaped tensors are listed in one error.
pub fn load_into(vs: &VarStore, tensors: Vec<(String, Tensor)>, origin: &Path) -> Result<()> {
    let mut vars = vs.variables();
    let mut unexpected = Vec::new();
    let mut mismatched = Vec::new();
    let mut found = Vec::new();
    for (name, t) in tensors {
        match vars.get(&name) {
            None => unexpected.push(name),
            Some(v) if v.size() != t.size() => {
                mismatched.push(format!("{name}: file {:?}, model {:?}", t.size(), v.size()))
            }
            Some(_) => found.push((name, t)),
        }
    }
    for (n, _) in &found {
        vars.remove(n);
    }
    let missing: Vec<String> = vars.into_keys().collect();
    if let Some(d) = nst_core::strict_report(missing, unexpected, mismatched) {
        return Err(ck_err(
            origin,
            format!("weights do not match the model:{d}"),
        ));
    }
    let vars = vs.variables();
    tch::no_grad(|| -> Result<()> {
        for (name, t) in found {
            if let Some(mut v) = vars.get(&name).map(|v| v.shallow_clone()) {
                v.f_copy_(&t.to_device(v.device()))?;
            }
        }
        Ok(())
    })
}

impl Checkpoint {
    fn stem(step: u64) -> String {
        format!("step_{step:07}")
    }

    /// Saves a checkpoint and points `latest` at it, then keeps only the last `keep` checkpoints.
    pub fn save(
        run_dir: &Path,
        vs: &VarStore,
        optimizer_state: &[(String, Tensor)],
        meta: &CheckpointMeta,
        keep: usize,
    ) -> Result<PathBuf> {
        std::fs::create_dir_all(run_dir).map_err(|e| ck_err(run_dir, e))?;
        let stem = Self::stem(meta.step);
        let mut weights: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        let wmeta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("model_kind".to_string(), meta.model_kind.clone()),
            ("step".to_string(), meta.step.to_string()),
        ]);
        write_safetensors(&run_dir.join(&meta.weights_file), &weights, wmeta)?;
        write_safetensors(
            &run_dir.join(&meta.optimizer_file),
            optimizer_state,
            HashMap::new(),
        )?;
        let json = serde_json::to_vec_pretty(meta).map_err(|e| ck_err(run_dir, e))?;
        let side = run_dir.join(format!("{stem}.json"));
        nst_core::fsutil::write_bytes_atomic(&side, &json)?;
        nst_core::fsutil::write_bytes_atomic(
            &run_dir.join("latest"),
            format!("{stem}\n").as_bytes(),
        )?;
        Self::prune(run_dir, keep)?;
        Ok(side)
    }

    /// The metadata a new checkpoint at `step` gets (file names filled in).
    pub fn meta_for(step: u64) -> (String, String) {
        let stem = Self::stem(step);
        (
            format!("{stem}.safetensors"),
            format!("{stem}.optim.safetensors"),
        )
    }

    fn steps_in(run_dir: &Path) -> Result<Vec<u64>> {
        let mut steps: Vec<u64> = std::fs::read_dir(run_dir)
            .map_err(|e| ck_err(run_dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_prefix("step_")?.strip_suffix(".json")?.parse().ok()
            })
            .collect();
        steps.sort_unstable();
        Ok(steps)
    }

    fn prune(run_dir: &Path, keep: usize) -> Result<()> {
        let steps = Self::steps_in(run_dir)?;
        if steps.len() > keep {
            for s in &steps[..steps.len() - keep] {
                let stem = Self::stem(*s);
                for ext in [".json", ".safetensors", ".optim.safetensors"] {
                    let _ = std::fs::remove_file(run_dir.join(format!("{stem}{ext}")));
                }
            }
        }
        Ok(())
    }

    /// Removes the temporary files (`.NAME.tmp-PID`) that a writer killed
    /// mid-write left in `run_dir`, unless their process still runs (Linux:
    /// `/proc/PID`). They never look like checkpoints (`latest` only ever
    /// names complete ones); this only reclaims their space. Returns how
    /// many were removed.
    pub fn remove_stale_temps(run_dir: &Path) -> usize {
        let Ok(rd) = std::fs::read_dir(run_dir) else {
            return 0;
        };
        let own = std::process::id().to_string();
        let mut removed = 0;
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix('.')
                .and_then(|n| n.rsplit_once(".tmp-"))
                .map(|(_, pid)| pid.to_string())
            else {
                continue;
            };
            let alive = pid == own || Path::new("/proc").join(&pid).exists();
            if !alive && std::fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Resolves a run folder (through `latest`), a sidecar `.json` or a weights
    /// file to the sidecar path and its metadata.
    pub fn resolve(path: &Path) -> Result<(PathBuf, CheckpointMeta)> {
        let side = if path.is_dir() {
            let latest = std::fs::read_to_string(path.join("latest")).map_err(|_| {
                ck_err(
                    path,
                    "no `latest` file: not a run folder, or no checkpoint written yet",
                )
            })?;
            path.join(format!("{}.json", latest.trim()))
        } else if path.extension().is_some_and(|e| e == "json") {
            path.to_path_buf()
        } else {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let stem = name
                .trim_end_matches(".safetensors")
                .trim_end_matches(".optim");
            path.with_file_name(format!("{stem}.json"))
        };
        if !side.exists() {
            return Err(ck_err(&side, "not found"));
        }
        let text = std::fs::read_to_string(&side).map_err(|e| ck_err(&side, e))?;
        let meta: CheckpointMeta = serde_json::from_str(&text)
            .map_err(|e| ck_err(&side, format!("not a checkpoint sidecar: {e}")))?;
        if meta.format != FORMAT {
            return Err(ck_err(
                &side,
                format!("format {:?}, expected {FORMAT:?}", meta.format),
            ));
        }
        // The weights sit beside the sidecar: a bare file name, never a path.
        let w = &meta.weights_file;
        if w.is_empty()
            || w.contains(['/', '\\'])
            || w.chars().any(char::is_control)
            || w == "."
            || w == ".."
        {
            return Err(ck_err(
                &side,
                format!(
                    "weights_file {w:?} is not a file name beside the sidecar (a damaged sidecar?)"
                ),
            ));
        }
        Ok((side, meta))
    }

    /// Loads the weights a checkpoint names into `vs`, checking the model kind first.
    pub fn load_weights(weights: &Path, vs: &VarStore, expected_kind: &str) -> Result<()> {
        let (tensors, meta) = read_safetensors(weights)?;
        match meta.get("model_kind") {
            Some(k) if k != expected_kind => {
                return Err(ck_err(
                    weights,
                    format!("is a {k:?} checkpoint, but the model is {expected_kind:?}"),
                ))
            }
            None => {
                return Err(ck_err(
                    weights,
                    "has no model_kind metadata: not an nst checkpoint",
                ))
            }
            _ => {}
        }
        load_into(vs, tensors, weights)
    }
}
