//! The node's Ethereum account: a secp256k1 key in an encrypted keystore file (Web3 Secret
//! Storage, scrypt + AES-128-CTR, as geth and every wallet read it) or, for testnets, a plain
//! hex key file that only its owner may read (mode 0600).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use zeroize::Zeroizing;

/// Why the anchoring key cannot be used or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file cannot be read or written.
    #[error("anchoring key {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is a keystore and no password was given.
    #[error(
        "anchoring key {0} is an encrypted keystore: give its password in a file (anchor.key_password_file) or in CHAINIAC_ANCHOR_KEY_PASSWORD"
    )]
    PasswordNeeded(PathBuf),
    /// The keystore does not open with the password, or is not a keystore.
    #[error("cannot open the keystore {path}: {reason} (wrong password?)")]
    Keystore { path: PathBuf, reason: String },
    /// A plain key file (or a password file) others can read.
    #[error("{0} can be read by other users; run `chmod 600 {0}`")]
    Exposed(PathBuf),
    /// An empty password file.
    #[error("the password file {0} is empty")]
    EmptyPassword(PathBuf),
    /// A plain key file that does not hold a 32-byte hex secp256k1 key.
    #[error("anchoring key {0} is not a keystore nor a 64-digit hex secp256k1 key")]
    Malformed(PathBuf),
    /// Refusing to overwrite an existing key.
    #[error("{0} exists; refusing to overwrite an Ethereum key (move it away first)")]
    Exists(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Refuses a secret file that users other than its owner may read or write.
fn owner_only(path: &Path) -> Result<(), KeyError> {
    let mode = std::fs::metadata(path)
        .map_err(io(path))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::Exposed(path.to_owned()));
    }
    Ok(())
}

/// Reads a keystore password from `path` (its last line break dropped), refusing a file other
/// users can read or an empty one.
pub fn read_password_file(path: &Path) -> Result<Zeroizing<String>, KeyError> {
    owner_only(path)?;
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io(path))?);
    let password = Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_owned());
    if password.is_empty() {
        return Err(KeyError::EmptyPassword(path.to_owned()));
    }
    Ok(password)
}

/// Loads the key at `path`: a keystore (JSON) opened with `password`, or a plain 0600 hex key.
pub fn load_key(path: &Path, password: Option<&str>) -> Result<PrivateKeySigner, KeyError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io(path))?);
    if text.trim_start().starts_with('{') {
        let password = password.ok_or_else(|| KeyError::PasswordNeeded(path.to_owned()))?;
        return PrivateKeySigner::decrypt_keystore(path, password).map_err(|e| {
            KeyError::Keystore {
                path: path.to_owned(),
                reason: e.to_string(),
            }
        });
    }
    owner_only(path)?;
    let digits = text.trim().trim_start_matches("0x");
    let mut secret = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(digits, secret.as_mut())
        .map_err(|_| KeyError::Malformed(path.to_owned()))?;
    PrivateKeySigner::from_slice(secret.as_ref()).map_err(|_| KeyError::Malformed(path.to_owned()))
}

/// Makes a new key at `path`: an encrypted keystore when `password` is given, else a plain
/// hex key file created with mode 0600. Returns its address.
pub fn create_key(path: &Path, password: Option<&str>) -> Result<Address, KeyError> {
    if path.exists() {
        return Err(KeyError::Exists(path.to_owned()));
    }
    let signer = PrivateKeySigner::random();
    let secret = Zeroizing::new(signer.to_bytes().0);
    match password {
        Some(password) => {
            let dir = path
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .ok_or_else(|| KeyError::Malformed(path.to_owned()))?;
            PrivateKeySigner::encrypt_keystore(
                dir,
                &mut rand08::thread_rng(),
                secret.as_ref(),
                password,
                Some(name),
            )
            .map_err(|e| KeyError::Keystore {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(io(path))?;
        }
        None => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io(path))?;
            let text = Zeroizing::new(format!("{}\n", hex::encode(secret.as_ref())));
            file.write_all(text.as_bytes()).map_err(io(path))?;
            file.sync_all().map_err(io(path))?;
        }
    }
    Ok(signer.address())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_encrypted_keys_round_trip() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let plain = dir.path().join("plain.key");
        let address = create_key(&plain, None)?;
        assert_eq!(load_key(&plain, None)?.address(), address);
        assert!(matches!(create_key(&plain, None), Err(KeyError::Exists(_))));
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644))?;
        assert!(matches!(load_key(&plain, None), Err(KeyError::Exposed(_))));

        let sealed = dir.path().join("keystore.json");
        let address = create_key(&sealed, Some("correct horse"))?;
        assert_eq!(load_key(&sealed, Some("correct horse"))?.address(), address);
        assert!(matches!(
            load_key(&sealed, None),
            Err(KeyError::PasswordNeeded(_))
        ));
        assert!(matches!(
            load_key(&sealed, Some("wrong")),
            Err(KeyError::Keystore { .. })
        ));
        let text = std::fs::read_to_string(&sealed)?;
        assert!(
            text.contains("\"crypto\"") || text.contains("\"Crypto\""),
            "{text}"
        );

        let password = dir.path().join("password");
        std::fs::write(&password, "correct horse\n")?;
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600))?;
        assert_eq!(read_password_file(&password)?.as_str(), "correct horse");
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o644))?;
        assert!(matches!(
            read_password_file(&password),
            Err(KeyError::Exposed(_))
        ));

        let junk = dir.path().join("junk.key");
        std::fs::write(&junk, "not a key")?;
        std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600))?;
        assert!(matches!(load_key(&junk, None), Err(KeyError::Malformed(_))));
        Ok(())
    }
}
