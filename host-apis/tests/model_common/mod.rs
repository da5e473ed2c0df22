//! Helpers shared by the integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use wafer_host_apis::model::bert::BertModel;

/// Where pulled models live: `$WAFER_MODELS_DIR`, else `~/.cache/wafer/models`
/// (`wafer models pull` puts them there; `./dev.sh test` pulls them first).
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WAFER_MODELS_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("wafer").join("models")
}

/// `path` under the models folder, or `None` (and a note) when it was not
/// pulled. With `WAFER_REQUIRE_MODELS=1` (set by `./dev.sh test`) a missing
/// model fails the test instead, so CI never passes without checking.
pub fn pulled(path: &str) -> Option<PathBuf> {
    let full = models_dir().join(path);
    if full.exists() {
        return Some(full);
    }
    if std::env::var_os("WAFER_REQUIRE_MODELS").is_some_and(|v| v == "1") {
        panic!(
            "model {} is missing: run `wafer models pull` (or ./dev.sh test)",
            full.display()
        );
    }
    eprintln!("skipping: no model at {} (run `wafer models pull`)", full.display());
    None
}

/// The folder of all-MiniLM-L6-v2.
pub fn model_dir() -> PathBuf {
    models_dir().join(MINILM)
}

/// Folder of the embeddings model under the models folder.
pub const MINILM: &str = "all-minilm-l6-v2";
/// The SmolLM2 GGUF under the models folder.
pub const SMOLLM2: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The embeddings model, loaded once per test binary; `None` when not pulled.
pub fn model() -> Option<&'static BertModel> {
    static MODEL: OnceLock<Option<BertModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| pulled(MINILM).map(|dir| BertModel::load(&dir).expect("load model")))
        .as_ref()
}

pub fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// A fresh, empty scratch folder unique to this process and `name`.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wafer-bert-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies the small JSON files of a sentence-transformers folder (not the weights).
pub fn copy_configs(from: &Path, to: &Path) {
    for f in [
        "config.json",
        "modules.json",
        "sentence_bert_config.json",
        "tokenizer.json",
    ] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    std::fs::create_dir_all(to.join("1_Pooling")).unwrap();
    std::fs::copy(from.join("1_Pooling/config.json"), to.join("1_Pooling/config.json")).unwrap();
}
