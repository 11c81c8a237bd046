//! The built-in labelled data (`data/categories.yaml`) and its merge with the config.

use std::sync::OnceLock;

use serde::Deserialize;

use super::{ClassifierConfig, ClassifyError};

/// The built-in data, compiled into the binary.
pub(super) const BUILTIN_YAML: &str = include_str!("../../data/categories.yaml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuiltinFile {
    categories: Vec<BuiltinCategory>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuiltinCategory {
    id: String,
    #[allow(dead_code)] // documentation for humans; parsed so that typos are caught
    description: String,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    patterns: Vec<String>,
    #[serde(default)]
    examples: Vec<String>,
}

/// One category after merging built-ins and config: what the classifier is built from.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct CategorySpec {
    pub(super) id: String,
    pub(super) keywords: Vec<String>,
    pub(super) patterns: Vec<String>,
    pub(super) examples: Vec<String>,
}

fn builtin() -> Result<&'static [CategorySpec], ClassifyError> {
    static PARSED: OnceLock<Result<Vec<CategorySpec>, String>> = OnceLock::new();
    let parsed = PARSED.get_or_init(|| {
        let file: BuiltinFile =
            marked_yaml::from_yaml(0, BUILTIN_YAML).map_err(|e| e.to_string())?;
        Ok(file
            .categories
            .into_iter()
            .map(|c| CategorySpec {
                id: c.id,
                keywords: c.keywords,
                patterns: c.patterns,
                examples: c.examples,
            })
            .collect())
    });
    match parsed {
        Ok(specs) => Ok(specs),
        Err(e) => Err(ClassifyError::Builtin(e.clone())),
    }
}

/// Merges the built-in data (unless `builtin: false`) with the config: config entries for a
/// built-in category extend it, others create new categories (after the built-ins, in name
/// order). Validates ids, drops duplicates and rejects empty strings.
pub(super) fn merge(cfg: &ClassifierConfig) -> Result<Vec<CategorySpec>, ClassifyError> {
    let mut specs: Vec<CategorySpec> = if cfg.builtin.unwrap_or(true) {
        builtin()?.to_vec()
    } else {
        Vec::new()
    };
    let sections = [
        (&cfg.examples, Field::Examples),
        (&cfg.keywords, Field::Keywords),
        (&cfg.patterns, Field::Patterns),
    ];
    for (map, field) in sections {
        for (id, values) in map {
            validate_id(id)?;
            let idx = match specs.iter().position(|s| &s.id == id) {
                Some(i) => i,
                None => {
                    specs.push(CategorySpec {
                        id: id.clone(),
                        keywords: Vec::new(),
                        patterns: Vec::new(),
                        examples: Vec::new(),
                    });
                    specs.len() - 1
                }
            };
            let list = match field {
                Field::Examples => &mut specs[idx].examples,
                Field::Keywords => &mut specs[idx].keywords,
                Field::Patterns => &mut specs[idx].patterns,
            };
            list.extend(values.iter().cloned());
        }
    }
    // New categories go after the built-ins in name order, whichever section named them.
    let n_builtin = if cfg.builtin.unwrap_or(true) {
        builtin()?.len()
    } else {
        0
    };
    specs[n_builtin..].sort_by(|a, b| a.id.cmp(&b.id));
    for spec in &mut specs {
        validate_id(&spec.id)?;
        for (list, what) in [
            (&mut spec.examples, "example"),
            (&mut spec.keywords, "keyword"),
            (&mut spec.patterns, "pattern"),
        ] {
            if list.iter().any(|s| s.trim().is_empty()) {
                return Err(ClassifyError::Invalid {
                    category: spec.id.clone(),
                    message: format!("empty {what}"),
                });
            }
            dedup_keep_order(list);
        }
    }
    Ok(specs)
}

#[derive(Clone, Copy)]
enum Field {
    Examples,
    Keywords,
    Patterns,
}

fn dedup_keep_order(list: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    list.retain(|s| seen.insert(s.trim().to_owned()));
}

/// Category ids are what routing rules refer to: 1–64 ASCII letters, digits, `_`, `-`, `.`.
fn validate_id(id: &str) -> Result<(), ClassifyError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ClassifyError::Invalid {
            category: id.to_owned(),
            message: "category ids must be 1-64 ASCII letters, digits, '_', '-' or '.'".to_owned(),
        })
    }
}
