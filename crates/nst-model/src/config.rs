//! The model's part of a training config: `[model]` (with its `kind`) and
//! `[loss]`, each parsed by serde into the family's typed section, unknown
//! keys refused by name.
use crate::{Error, Result};

/// The `[model]` and `[loss]` tables of a config, as saved with a checkpoint.
#[derive(Debug, Clone)]
pub struct ModelSections {
    pub kind: String,
    pub model: toml::Table,
    pub loss: toml::Table,
}

impl ModelSections {
    /// Reads the two sections from a config's TOML text; `origin` names the
    /// text's source in errors. The other sections are the trainer's.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            Error::Config(format!("{origin}: {}", one_line(&e.to_string())))
        })?;
        let mut take = |name: &str| -> Result<toml::Table> {
            match table.remove(name) {
                None => Ok(toml::Table::new()),
                Some(toml::Value::Table(t)) => Ok(t),
                Some(_) => Err(Error::Config(format!("{origin}: [{name}] is not a table"))),
            }
        };
        let model = take("model")?;
        let loss = take("loss")?;
        let kind = model
            .get("kind")
            .and_then(|k| k.as_str())
            .ok_or_else(|| Error::Config(format!("{origin}: [model] needs kind = \"…\"")))?
            .to_string();
        Ok(Self { kind, model, loss })
    }
}

/// Parses one section into `T`, leaving out the keys in `skip` (e.g. `kind`).
/// An error names the section and the key at fault (`[loss] style_layers[1]: …`).
pub fn parse_section<T: serde::de::DeserializeOwned>(
    table: &toml::Table,
    section: &str,
    skip: &[&str],
) -> Result<T> {
    let mut t = table.clone();
    for k in skip {
        t.remove(*k);
    }
    from_toml(toml::Value::Table(t)).map_err(|(path, msg)| {
        Error::Config(match path {
            None => format!("[{section}]: {msg}"),
            Some(p) => format!("[{section}] {p}: {msg}"),
        })
    })
}

/// Deserialises `value` into `T`. An error is the path of the value at
/// fault (`style_layers[1]`; `None` at the top level) and a one-line message.
pub fn from_toml<T: serde::de::DeserializeOwned>(
    value: toml::Value,
) -> std::result::Result<T, (Option<String>, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let mut msg = one_line(&e.into_inner().to_string());
        // toml names the innermost key itself ("… in `style_layers`"): the
        // path says it already.
        if let Some(i) = msg.rfind(" in `").filter(|_| msg.ends_with('`')) {
            msg.truncate(i);
        }
        ((path != ".").then_some(path), msg)
    })
}

/// A TOML error on one line (toml's own spans several, with a source excerpt).
pub fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|'))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_read_and_unknown_keys_refused_by_name() {
        let s = ModelSections::parse(
            "[model]\nkind = \"adain\"\nwidth = 0.5\n[loss]\nstyle_weight = 3.0\n[train]\nsteps = 1\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(s.kind, "adain");
        assert_eq!(s.loss["style_weight"].as_float(), Some(3.0));
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct M {
            width: f64,
        }
        let m: M = parse_section(&s.model, "model", &["kind"]).unwrap();
        assert_eq!(m.width, 0.5);
        let mut bad = s.model.clone();
        bad.insert("widht".into(), toml::Value::Float(1.0));
        let e = parse_section::<M>(&bad, "model", &["kind"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("widht") && !e.contains('\n'), "{e}");
        // A bad value inside a list: the section, the key and the index.
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct L {
            layers: Vec<nst_vgg::Tap>,
        }
        let t: toml::Table = "layers = [\"relu1_1\", \"relu9_1\"]".parse().unwrap();
        let e = parse_section::<L>(&t, "loss", &[]).unwrap_err().to_string();
        assert!(
            e.contains("[loss] layers[1]") && e.contains("relu9_1"),
            "{e}"
        );
        let e = ModelSections::parse("[loss]\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs kind"), "{e}");
    }
}
