//! The workspace's layering, read from the crates' `Cargo.toml`s
//! (docs/architecture.md): a method crate depends on no other method crate
//! and not on the trainer; the shared layers depend on no method and not on
//! the trainer; every crate belongs to a layer.
use std::collections::BTreeMap;
use std::path::Path;

/// Each paper's crate.
const METHODS: &[&str] = &[
    "nst-adain",
    "nst-vae",
    "nst-decoders",
    "nst-po",
    "nst-puy",
    "nst-optim",
];
/// Below the methods.
const SHARED: &[&str] = &[
    "nst-core",
    "nst-vgg",
    "nst-losses",
    "nst-solvers",
    "nst-model",
    "nst-data",
    "nst-testkit",
    "nst-tiling",
];
const TRAINER: &str = "nst-train";
/// The binaries: they may use everything.
const BINARIES: &[&str] = &["nst-cli", "nst-bench"];

/// Crate name → its normal (not dev) dependencies on workspace crates.
fn workspace_deps() -> BTreeMap<String, Vec<String>> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&crates).expect("crates/ is readable") {
        let manifest = entry.expect("a directory entry").path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let t: toml::Table = text.parse().expect("a valid Cargo.toml");
        let name = t["package"]["name"]
            .as_str()
            .expect("a package name")
            .to_string();
        let deps = t
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|d| {
                d.keys()
                    .filter(|k| k.starts_with("nst-"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        out.insert(name, deps);
    }
    out
}

#[test]
fn every_crate_has_a_layer() {
    for name in workspace_deps().keys() {
        let n = name.as_str();
        assert!(
            METHODS.contains(&n) || SHARED.contains(&n) || BINARIES.contains(&n) || n == TRAINER,
            "crate {n} is in no layer: add it to tests/layering.rs and docs/architecture.md"
        );
    }
}

#[test]
fn methods_depend_on_no_other_method_and_not_on_the_trainer() {
    let deps = workspace_deps();
    let mut bad = Vec::new();
    for (name, ds) in &deps {
        let is_method = METHODS.contains(&name.as_str());
        let is_shared = SHARED.contains(&name.as_str());
        for d in ds {
            if (is_method || is_shared) && (METHODS.contains(&d.as_str()) || d == TRAINER) {
                bad.push(format!("{name} → {d}"));
            }
            if (is_shared || name == TRAINER) && BINARIES.contains(&d.as_str()) {
                bad.push(format!("{name} → {d}"));
            }
        }
        if name == TRAINER {
            for d in ds {
                if METHODS.contains(&d.as_str()) {
                    bad.push(format!("{name} → {d}"));
                }
            }
        }
    }
    assert!(bad.is_empty(), "layering broken: {bad:?}");
    // The check reads real manifests: the method crates are all there.
    for m in METHODS {
        assert!(deps.contains_key(*m), "{m} not found");
    }
}
