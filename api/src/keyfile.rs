//! Key files: a secret Ed25519 key as 64 hex characters in a file only its owner can read (a
//! node's key, a developer's, a root's, a verifier's), the public identity a node shares with
//! others (its roster entry, `node.pub.json`), and the bearer token of a node's HTTP API.

use std::path::{Path, PathBuf};

use chainiac_protocol::cosi::RosterMember;
use chainiac_protocol::keys::{ProofOfPossession, PublicKey, SecretKey};
use zeroize::Zeroizing;

/// Problems with a key file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The file cannot be read or written.
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file does not hold a key.
    #[error("key file {path} does not hold a secret key (64 hex characters expected)")]
    Malformed { path: PathBuf },
    /// Others can read the secret key.
    #[error("key file {path} can be read by other users (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen { path: PathBuf, mode: u32 },
}

/// A secret key loaded from (or for) a key file.
#[derive(Debug)]
pub struct Identity {
    secret: SecretKey,
}

/// What a node tells others about itself: its key and proof of possession, i.e. its roster entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicIdentity {
    /// The public key.
    pub key: PublicKey,
    /// Proof that the node holds the secret key.
    pub possession: ProofOfPossession,
}

impl PublicIdentity {
    /// Checks the proof of possession.
    pub fn check(&self) -> Result<(), chainiac_protocol::Error> {
        self.key.verify_possession(&self.possession)
    }

    /// The roster entry for this node.
    pub fn roster_member(&self) -> RosterMember {
        RosterMember {
            key: self.key,
            possession: self.possession,
        }
    }

    /// `{"public_key": HEX, "proof_of_possession": HEX}`, as `node.pub.json` holds it.
    pub fn to_json(&self) -> String {
        let entry = crate::types::RosterMemberJson::from(&self.roster_member());
        let mut text = serde_json::to_string_pretty(&entry).unwrap_or_default();
        text.push('\n');
        text
    }
}

impl Identity {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Self {
        Self {
            secret: SecretKey::generate(&mut rand::rng()),
        }
    }

    /// The secret key.
    pub fn secret(&self) -> &SecretKey {
        &self.secret
    }

    /// The public identity.
    pub fn public(&self) -> PublicIdentity {
        PublicIdentity {
            key: self.secret.public_key(),
            possession: self.secret.proof_of_possession(),
        }
    }

    /// Writes the key as hex, readable only by its owner, refusing to overwrite a file.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.into(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        let text = Zeroizing::new(format!("{}\n", hex::encode(self.secret.to_seed().as_ref())));
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Reads a key file written by [`Identity::save`].
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.into(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(IdentityError::TooOpen {
                    path: path.into(),
                    mode,
                });
            }
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), seed.as_mut())
            .map_err(|_| IdentityError::Malformed { path: path.into() })?;
        Ok(Self {
            secret: SecretKey::from_seed(&seed),
        })
    }
}

/// The bearer token that a node's HTTP API requires for every write (creating chains, leading
/// appends, uploading artifacts): 32 random bytes as hex in a file only its owner can read.
/// Whoever can read the file may make the node lead; a web page the operator visits cannot.
#[derive(Clone)]
pub struct ApiToken {
    digest: chainiac_protocol::Hash,
    text: Zeroizing<String>,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(..)")
    }
}

impl ApiToken {
    fn of(text: &str) -> Self {
        Self {
            digest: chainiac_protocol::Hash::of(
                chainiac_protocol::hash::domain::API_TOKEN,
                &[text.as_bytes()],
            ),
            text: Zeroizing::new(text.to_owned()),
        }
    }

    /// The token, to send as `Authorization: Bearer TOKEN`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `given` is this token (in constant time).
    pub fn matches(&self, given: &str) -> bool {
        self.digest.ct_eq(&Self::of(given).digest)
    }

    /// Reads a token file (readable only by its owner, like a key file).
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.into(),
            source,
        };
        check_private(path)?;
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        let token = text.trim();
        if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(IdentityError::Malformed { path: path.into() });
        }
        Ok(Self::of(token))
    }

    /// Reads the token file, creating it with a fresh token (mode 0600) if there is none.
    pub fn load_or_create(path: &Path) -> Result<Self, IdentityError> {
        match Self::load(path) {
            Err(IdentityError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let mut bytes = Zeroizing::new([0u8; 32]);
                rand::Rng::fill_bytes(&mut rand::rng(), bytes.as_mut());
                let text = Zeroizing::new(hex::encode(bytes.as_ref()));
                write_private(path, text.as_bytes())?;
                Ok(Self::of(&text))
            }
            other => other,
        }
    }
}

/// Refuses a secret file that other users can read.
fn check_private(path: &Path) -> Result<(), IdentityError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|source| IdentityError::Io {
                path: path.into(),
                source,
            })?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::TooOpen {
                path: path.into(),
                mode,
            });
        }
    }
    Ok(())
}

/// Writes a new secret file readable only by its owner (never overwriting one).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.into(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    std::io::Write::write_all(&mut file, bytes).map_err(io)?;
    std::io::Write::write_all(&mut file, b"\n").map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_refuse_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.key");
        let identity = Identity::generate();
        identity.save(&path).expect("save");
        assert_eq!(
            Identity::load(&path).expect("load").public(),
            identity.public()
        );
        assert!(matches!(
            Identity::generate().save(&path),
            Err(IdentityError::Io { .. })
        ));
        let json = identity.public().to_json();
        assert!(json.contains(&identity.public().key.to_hex()));
    }

    #[test]
    fn api_tokens_are_made_once_private_and_compared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("api.token");
        let token = ApiToken::load_or_create(&path).expect("created");
        let again = ApiToken::load_or_create(&path).expect("loaded");
        assert!(again.matches(token.as_str()));
        assert!(!again.matches("not the token"));
        assert!(!again.matches(""));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn unreadable_or_open_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.key");
        std::fs::write(&path, "not hex\n").expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            assert!(matches!(
                Identity::load(&path),
                Err(IdentityError::Malformed { .. })
            ));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let error = Identity::load(&path)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains("chmod 600"), "{error}");
        }
    }
}
