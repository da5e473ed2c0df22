//! Who is calling: bearer tokens resolved to a principal with scopes.
//!
//! Today there is one credential, the node's admin token, made on first start
//! and stored with 0600 permissions in the data dir. The shape is the one that
//! tenants and scoped API keys will fill: a [`Principal`] (tenant + scopes)
//! and a [`Scope`] each route asks for.

use rand::RngCore;
use std::io::Write;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// Name of the token file in the data dir.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Deploy, roll back, delete functions.
    Deploy,
    /// Call functions that require a key.
    Invoke,
    /// List functions, read logs and usage.
    Read,
    /// Everything, for every tenant.
    Admin,
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The tenant whose resources the caller may touch.
    pub tenant: String,
    /// What the caller may do.
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// The node operator.
    pub fn admin() -> Self {
        Self {
            tenant: "default".into(),
            scopes: vec![Scope::Admin],
        }
    }

    /// Whether the caller holds `scope` (admin holds all).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes
            .iter()
            .any(|s| *s == scope || *s == Scope::Admin)
    }
}

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
            Ok(token) => Ok((
                Self {
                    admin_token: token.trim().to_owned(),
                },
                None,
            )),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let token = new_token();
                let mut file = open_private(&path).map_err(io)?;
                file.write_all(token.as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok((
                    Self {
                        admin_token: token.clone(),
                    },
                    Some(token),
                ))
            }
            Err(error) => Err(io(error)),
        }
    }

    /// An authenticator with a known admin token (tests, embedding).
    pub fn with_admin_token(token: impl Into<String>) -> Self {
        Self {
            admin_token: token.into(),
        }
    }

    /// The principal for an `Authorization` header value, if it is valid.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<Principal> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        // Constant time: the comparison must not tell how much of a guess was right.
        if bool::from(token.as_bytes().ct_eq(self.admin_token.as_bytes())) {
            Some(Principal::admin())
        } else {
            None
        }
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
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Reads the admin token the CLI should use: `WAFER_TOKEN` wins, else the
/// token file in `data_dir`.
pub fn read_admin_token(data_dir: &Path) -> Option<String> {
    std::env::var("WAFER_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| {
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
            let mode = std::fs::metadata(dir.path().join(ADMIN_TOKEN_FILE))
                .map(|m| m.permissions().mode() & 0o777);
            assert_eq!(mode.ok(), Some(0o600));
        }
        assert_eq!(
            auth.authenticate(Some(&format!("Bearer {token}"))),
            Some(Principal::admin())
        );
        assert_eq!(auth.authenticate(Some("Bearer wrong")), None);
        assert_eq!(
            auth.authenticate(Some(&token)),
            None,
            "the Bearer scheme is required"
        );
        assert_eq!(auth.authenticate(None), None);
        Ok(())
    }
}
