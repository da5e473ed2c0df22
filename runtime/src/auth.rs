//! Who is calling: bearer tokens resolved to a principal with scopes.
//!
//! Two kinds of credential:
//! - the node's admin token (the operator), made on first start and stored
//!   with 0600 permissions in the data dir; it may do anything, for every tenant;
//! - tenant API keys `wk_<id>_<secret>` with one scope each, made by
//!   `wafer keys create`; only a SHA-256 of the secret is stored, and it is
//!   compared in constant time.

use dashmap::DashMap;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Name of the token file in the data dir.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Deploy, roll back, delete functions.
    Deploy,
    /// Call functions that require a key.
    Invoke,
    /// List functions, read logs and usage.
    Read,
    /// Everything within the tenant (the operator's token: every tenant).
    Admin,
}

impl Scope {
    /// Parses `deploy`, `invoke`, `read` or `admin`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "deploy" => Some(Self::Deploy),
            "invoke" => Some(Self::Invoke),
            "read" => Some(Self::Read),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// The scope's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Invoke => "invoke",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The tenant whose resources the caller may touch.
    pub tenant: String,
    /// What the caller may do within the tenant.
    pub scope: Scope,
    /// The node operator: every tenant, every scope.
    pub operator: bool,
}

impl Principal {
    /// The node operator.
    pub fn admin() -> Self {
        Self {
            tenant: crate::billing::DEFAULT_TENANT.into(),
            scope: Scope::Admin,
            operator: true,
        }
    }

    /// Whether the caller holds `scope` (admin holds all).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scope == scope || self.scope == Scope::Admin
    }

    /// Whether the caller may touch `tenant`'s resources.
    pub fn can_access(&self, tenant: &str) -> bool {
        self.operator || self.tenant == tenant
    }
}

/// A live API key, as kept in memory for checks.
#[derive(Clone, Debug)]
pub struct KeyEntry {
    /// Owner.
    pub tenant: String,
    /// Scope.
    pub scope: Scope,
    /// SHA-256 of the secret, hex.
    pub secret_hash: String,
}

/// Live API keys by id, shared by the authenticator and billing (which
/// creates and revokes them).
pub type Keys = Arc<DashMap<String, KeyEntry>>;

/// Errors setting up credentials.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token file could not be read or written.
    #[error("admin token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Resolves bearer tokens to principals.
#[derive(Clone)]
pub struct Authenticator {
    admin_token: String,
    keys: Keys,
}

impl Authenticator {
    /// Loads the admin token from `data_dir`, making one on first start.
    /// Returns the authenticator and, only when it was just made, the token,
    /// so that the caller prints it once.
    pub fn load_or_create(data_dir: &Path) -> Result<(Self, Option<String>), AuthError> {
        let path = data_dir.join(ADMIN_TOKEN_FILE);
        let io = |source| AuthError::TokenFile {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(token) => Ok((Self::with_admin_token(token.trim()), None)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let token = new_token();
                let mut file = open_private(&path).map_err(io)?;
                file.write_all(token.as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok((Self::with_admin_token(token.clone()), Some(token)))
            }
            Err(error) => Err(io(error)),
        }
    }

    /// An authenticator with a known admin token (tests, embedding).
    pub fn with_admin_token(token: impl Into<String>) -> Self {
        Self {
            admin_token: token.into(),
            keys: Keys::default(),
        }
    }

    /// The live key table (billing adds and removes keys in it).
    pub fn keys(&self) -> Keys {
        self.keys.clone()
    }

    /// The principal for an `Authorization` header value, if it is valid.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<Principal> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        if let Some(rest) = token.strip_prefix("wk_") {
            let (id, secret) = rest.split_once('_')?;
            let entry = self.keys.get(id)?;
            let hash = hex::encode(Sha256::digest(secret.as_bytes()));
            // Constant time: the comparison must not tell how much of a guess was right.
            return bool::from(hash.as_bytes().ct_eq(entry.secret_hash.as_bytes())).then(|| Principal {
                tenant: entry.tenant.clone(),
                scope: entry.scope,
                operator: false,
            });
        }
        bool::from(token.as_bytes().ct_eq(self.admin_token.as_bytes())).then(Principal::admin)
    }
}

/// A token with 256 bits of randomness, prefixed so it is recognisable in
/// secret scanners and logs.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("wafer_admin_{}", hex::encode(bytes))
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)
}

/// Reads the admin token the CLI should use: `WAFER_TOKEN` wins, else the
/// token file in `data_dir`.
pub fn read_admin_token(data_dir: &Path) -> Option<String> {
    std::env::var("WAFER_TOKEN").ok().filter(|t| !t.is_empty()).or_else(|| {
        std::fs::read_to_string(data_dir.join(ADMIN_TOKEN_FILE))
            .ok()
            .map(|t| t.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_made_once_with_private_permissions() -> Result<(), AuthError> {
        let dir = tempfile::tempdir().map_err(|source| AuthError::TokenFile {
            path: "tmp".into(),
            source,
        })?;
        let (auth, shown) = Authenticator::load_or_create(dir.path())?;
        let token = shown.unwrap_or_default();
        assert!(token.starts_with("wafer_admin_"));
        let (again, shown_again) = Authenticator::load_or_create(dir.path())?;
        assert_eq!(shown_again, None, "the token is printed only when made");
        assert_eq!(again.admin_token, auth.admin_token);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(ADMIN_TOKEN_FILE)).map(|m| m.permissions().mode() & 0o777);
            assert_eq!(mode.ok(), Some(0o600));
        }
        assert_eq!(
            auth.authenticate(Some(&format!("Bearer {token}"))),
            Some(Principal::admin())
        );
        assert_eq!(auth.authenticate(Some("Bearer wrong")), None);
        assert_eq!(auth.authenticate(Some(&token)), None, "the Bearer scheme is required");
        assert_eq!(auth.authenticate(None), None);
        Ok(())
    }
}
