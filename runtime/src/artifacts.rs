//! Content-addressed component files and their precompiled machine code.
//!
//! ```text
//! DATA_DIR/components/<sha256>.wasm              what was uploaded
//! DATA_DIR/compiled/<engine fingerprint>/<sha256>.cwasm
//! ```
//!
//! The compiled cache is keyed by the component's hash and the engine's
//! fingerprint (wasmtime version, settings, CPU features), so a restart loads
//! machine code instead of compiling, and an upgraded node recompiles.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Errors storing or loading an artifact.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Disk trouble.
    #[error("artifact store: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes do not compile (the message is wasmtime's, for the uploader).
    #[error("{0}")]
    Compile(String),
}

/// Counters that show whether the compiled cache works.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Components compiled from wasm.
    pub compiled: AtomicU64,
    /// Components loaded from the compiled cache.
    pub loaded: AtomicU64,
}

/// The artifact directories of a node.
#[derive(Debug)]
pub struct ArtifactStore {
    components: PathBuf,
    compiled: PathBuf,
    /// Cache counters.
    pub stats: CacheStats,
}

/// The hex SHA-256 of `bytes`: a component's identity.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ArtifactStore {
    /// Opens the store under `data_dir`, for an engine with `fingerprint`.
    pub fn open(data_dir: &Path, fingerprint: &str) -> Result<Self, ArtifactError> {
        let components = data_dir.join("components");
        let compiled = data_dir.join("compiled").join(fingerprint);
        std::fs::create_dir_all(&components)?;
        std::fs::create_dir_all(&compiled)?;
        Ok(Self {
            components,
            compiled,
            stats: CacheStats::default(),
        })
    }

    fn component_path(&self, digest: &str) -> PathBuf {
        self.components.join(format!("{digest}.wasm"))
    }

    fn compiled_path(&self, digest: &str) -> PathBuf {
        self.compiled.join(format!("{digest}.cwasm"))
    }

    /// Compiles `bytes`, stores the component and its machine code, and
    /// returns the loaded component. Storing the same bytes twice is free.
    pub fn compile_and_store(&self, engine: &Engine, digest: &str, bytes: &[u8]) -> Result<Component, ArtifactError> {
        let path = self.compiled_path(digest);
        if path.exists()
            && let Ok(component) = self.load_compiled(engine, &path)
        {
            write_atomically(&self.component_path(digest), bytes, Replace::No)?;
            return Ok(component);
        }
        let machine_code = engine
            .precompile_component(bytes)
            .map_err(|e| ArtifactError::Compile(format!("{e:#}")))?;
        self.stats.compiled.fetch_add(1, Ordering::Relaxed);
        write_atomically(&self.component_path(digest), bytes, Replace::No)?;
        // A stale or corrupt entry is overwritten.
        write_atomically(&path, &machine_code, Replace::Yes)?;
        self.load_compiled(engine, &path)
    }

    /// Loads a stored component: from the compiled cache when it is there and
    /// fits this engine, else by compiling the stored wasm (and caching it).
    pub fn load(&self, engine: &Engine, digest: &str) -> Result<Component, ArtifactError> {
        let path = self.compiled_path(digest);
        if path.exists() {
            match self.load_compiled(engine, &path) {
                Ok(component) => {
                    self.stats.loaded.fetch_add(1, Ordering::Relaxed);
                    return Ok(component);
                }
                Err(error) => {
                    tracing::warn!(%digest, %error, "compiled cache entry unusable; recompiling")
                }
            }
        }
        let bytes = std::fs::read(self.component_path(digest))?;
        self.compile_and_store(engine, digest, &bytes)
    }

    #[allow(unsafe_code)]
    fn load_compiled(&self, engine: &Engine, path: &Path) -> Result<Component, ArtifactError> {
        if Engine::detect_precompiled_file(path).ok().flatten().is_none() {
            return Err(ArtifactError::Compile(format!(
                "{} is not precompiled code",
                path.display()
            )));
        }
        // SAFETY: only this node writes into its compiled directory, always the
        // output of `Engine::precompile_component` written atomically; wasmtime
        // checks that the code was made for this engine's settings.
        unsafe { Component::deserialize_file(engine, path) }.map_err(|e| ArtifactError::Compile(format!("{e:#}")))
    }
}

#[derive(PartialEq)]
enum Replace {
    /// Content-addressed: an existing file already has these bytes.
    No,
    Yes,
}

/// Writes through a temporary file and a rename, so a crash never leaves a
/// half-written artifact under its final name.
fn write_atomically(path: &Path, bytes: &[u8], replace: Replace) -> std::io::Result<()> {
    if replace == Replace::No && path.exists() {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
