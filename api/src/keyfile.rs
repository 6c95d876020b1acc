//! Key files: a secret Ed25519 key as 64 hex characters in a file only its owner can read (a
//! node's key, a developer's, a root's, a verifier's) or an OpenSSH Ed25519 private key (the
//! key a developer already signs commits with, passphrase-protected or not), the public
//! identity a node shares with others (its roster entry, `node.pub.json`), and the bearer token
//! of a node's HTTP API.

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
    /// An OpenSSH key file that does not parse.
    #[error("key file {path} is not a valid OpenSSH private key: {reason}")]
    Ssh { path: PathBuf, reason: String },
    /// An OpenSSH key of another algorithm than Ed25519.
    #[error(
        "key file {path} holds an {algorithm} SSH key; chainiac signs with Ed25519 keys only (make one with `ssh-keygen -t ed25519`)"
    )]
    NotEd25519 { path: PathBuf, algorithm: String },
    /// A passphrase-protected key and no passphrase.
    #[error(
        "key file {path} is protected by a passphrase; run on a terminal to be asked for it, or set CHAINIAC_KEY_PASSPHRASE"
    )]
    PassphraseNeeded { path: PathBuf },
    /// A passphrase that does not decrypt the key.
    #[error("the passphrase does not decrypt key file {path}")]
    WrongPassphrase { path: PathBuf },
    /// A minisign secret key file that does not parse.
    #[error(
        "key file {path} is not a valid minisign secret key: {reason} (`minisign -G` makes one)"
    )]
    Minisign { path: PathBuf, reason: String },
}

/// Asks for the passphrase of an encrypted key file (`None`: none can be had).
pub type PassphraseSource<'a> = &'a dyn Fn(&Path) -> Option<Zeroizing<String>>;

/// The first line of an OpenSSH private key file.
const OPENSSH_PRIVATE_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";

/// How minisign key files begin (the comment line, then the key in base64).
const MINISIGN_COMMENT: &str = "untrusted comment:";

/// minisign's binary layouts (minisign's own format, read through the `minisign` crate): a
/// public key is `"Ed" ‖ key id (8) ‖ Ed25519 public key (32)`; a decrypted secret key is
/// `"Ed" ‖ kdf (2) ‖ checksum alg (2) ‖ salt (32) ‖ opslimit (8) ‖ memlimit (8) ‖ key id (8) ‖
/// Ed25519 seed (32) ‖ Ed25519 public key (32) ‖ checksum (32)`.
const MINISIGN_PUBLIC_KEY: std::ops::Range<usize> = 10..42;
const MINISIGN_PUBLIC_KEY_LEN: usize = 42;
const MINISIGN_SECRET_KEY_LEN: usize = 158;
const MINISIGN_SEED: std::ops::Range<usize> = 62..94;
const MINISIGN_SECRET_PUBLIC_KEY: std::ops::Range<usize> = 94..126;

/// The Ed25519 key of a minisign public key: the file minisign writes (`minisign.pub`: a
/// comment line, then the key) or the key line alone (`RW...`).
fn minisign_public_key(text: &str) -> Result<PublicKey, String> {
    let line = match text.strip_prefix(MINISIGN_COMMENT) {
        Some(rest) => rest.lines().nth(1).unwrap_or_default(),
        None => text,
    };
    let key = minisign::PublicKey::from_base64(line.trim())
        .map_err(|e| format!("not a minisign public key: {e}"))?;
    let bytes = key.to_bytes();
    if !bytes.starts_with(b"Ed") {
        return Err("a minisign key of another algorithm than Ed25519".into());
    }
    let raw: &[u8; 32] = bytes
        .get(MINISIGN_PUBLIC_KEY)
        .and_then(|raw| raw.try_into().ok())
        .ok_or("not a minisign Ed25519 public key")?;
    PublicKey::from_bytes(raw).map_err(|e| e.to_string())
}

/// A public key given as 64 hex characters, an OpenSSH public key line (`ssh-ed25519 AAAA...`),
/// a minisign public key (`RW...`), or a file holding one of them (an `id_ed25519.pub`, a
/// `minisign.pub`; a `node.pub.json` is not one).
pub fn public_key_from(text_or_path: &str) -> Result<PublicKey, String> {
    let path = Path::new(text_or_path);
    let text = if path.is_file() {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?
    } else {
        text_or_path.to_owned()
    };
    let text = text.trim();
    if text.starts_with(MINISIGN_COMMENT) || (text.starts_with("RW") && text.len() == 56) {
        return minisign_public_key(text);
    }
    // An OpenSSH public key line is `TYPE BASE64 [COMMENT]`; hex has no space.
    if text.contains(char::is_whitespace) {
        let key = ssh_key::PublicKey::from_openssh(text).map_err(|error| match error {
            ssh_key::Error::AlgorithmUnknown => {
                "an SSH key of a type other than Ed25519; chainiac keys are Ed25519 (`ssh-keygen -t ed25519`)".to_owned()
            }
            other => format!("not an OpenSSH public key: {other}"),
        })?;
        let ed25519 = key.key_data().ed25519().ok_or_else(|| {
            format!(
                "an {} SSH key; chainiac keys are Ed25519 (`ssh-keygen -t ed25519`)",
                key.algorithm()
            )
        })?;
        return PublicKey::from_bytes(&ed25519.0).map_err(|e| e.to_string());
    }
    PublicKey::from_hex(text).map_err(|e| {
        format!(
            "not a public key (64 hex characters, an `ssh-ed25519 ...` line or a minisign `RW...` key): {e}"
        )
    })
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

    /// Reads a key file written by [`Identity::save`], or an unencrypted OpenSSH Ed25519 key.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        Self::load_with(path, &|_| None)
    }

    /// [`Identity::load`], asking `passphrase` when the file is a passphrase-protected OpenSSH
    /// key.
    pub fn load_with(path: &Path, passphrase: PassphraseSource<'_>) -> Result<Self, IdentityError> {
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
        if text.trim_start().starts_with(OPENSSH_PRIVATE_KEY) {
            return Self::from_openssh(path, &text, passphrase);
        }
        if text.trim_start().starts_with(MINISIGN_COMMENT) {
            return Self::from_minisign(path, &text, passphrase);
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), seed.as_mut())
            .map_err(|_| IdentityError::Malformed { path: path.into() })?;
        Ok(Self {
            secret: SecretKey::from_seed(&seed),
        })
    }
}

impl Identity {
    /// The Ed25519 key of an OpenSSH private key file (decrypted with `passphrase` if it is
    /// protected); its public key is the one `ssh-keygen` wrote next to it.
    fn from_openssh(
        path: &Path,
        text: &str,
        passphrase: PassphraseSource<'_>,
    ) -> Result<Self, IdentityError> {
        let ssh = |error: ssh_key::Error| IdentityError::Ssh {
            path: path.into(),
            reason: error.to_string(),
        };
        let mut key = ssh_key::PrivateKey::from_openssh(text).map_err(|error| match error {
            // Algorithms this build does not parse (RSA, ECDSA, ...) cannot be Ed25519.
            ssh_key::Error::AlgorithmUnknown => IdentityError::NotEd25519 {
                path: path.into(),
                algorithm: "other than Ed25519".into(),
            },
            other => ssh(other),
        })?;
        if key.algorithm() != ssh_key::Algorithm::Ed25519 {
            return Err(IdentityError::NotEd25519 {
                path: path.into(),
                algorithm: key.algorithm().to_string(),
            });
        }
        if key.is_encrypted() {
            let secret = passphrase(path)
                .ok_or_else(|| IdentityError::PassphraseNeeded { path: path.into() })?;
            key = key
                .decrypt(secret.as_bytes())
                .map_err(|_| IdentityError::WrongPassphrase { path: path.into() })?;
        }
        let pair = key
            .key_data()
            .ed25519()
            .ok_or_else(|| IdentityError::NotEd25519 {
                path: path.into(),
                algorithm: key.algorithm().to_string(),
            })?;
        let seed = Zeroizing::new(pair.private.to_bytes());
        let identity = Self {
            secret: SecretKey::from_seed(&seed),
        };
        // The file's public half must be the key its secret half makes.
        if identity.secret.public_key().as_bytes() != &pair.public.0 {
            return Err(IdentityError::Ssh {
                path: path.into(),
                reason: "its public key does not match its private key".into(),
            });
        }
        Ok(identity)
    }
}

impl Identity {
    /// The Ed25519 key of a minisign secret key file (decrypted with `passphrase` unless it was
    /// made with `minisign -G -W`); the public key it holds must be the one its seed makes.
    fn from_minisign(
        path: &Path,
        text: &str,
        passphrase: PassphraseSource<'_>,
    ) -> Result<Self, IdentityError> {
        use base64ct::Encoding;
        let malformed = |reason: String| IdentityError::Minisign {
            path: path.into(),
            reason,
        };
        // Encrypted unless its key-derivation algorithm is none (bytes 2..4 zero).
        let line = text.trim_start().lines().nth(1).unwrap_or_default().trim();
        let raw = Zeroizing::new(
            base64ct::Base64::decode_vec(line)
                .map_err(|_| malformed("its second line is not base64".into()))?,
        );
        match (raw.len(), raw.get(..2)) {
            (MINISIGN_SECRET_KEY_LEN, Some(b"Ed")) => {}
            (MINISIGN_PUBLIC_KEY_LEN, Some(b"Ed")) => {
                return Err(malformed(
                    "this is a public key; sign with the secret key (minisign keeps it in ~/.minisign/minisign.key)".into(),
                ));
            }
            _ => {
                return Err(malformed(
                    "not an Ed25519 secret key of minisign's format".into(),
                ));
            }
        }
        let encrypted = match raw.get(2..4) {
            Some([0, 0]) => false,
            Some(b"Sc") => true,
            _ => return Err(malformed("an unknown key-encryption scheme".into())),
        };
        let bytes = if encrypted {
            let secret = passphrase(path)
                .ok_or_else(|| IdentityError::PassphraseNeeded { path: path.into() })?;
            let key = minisign::SecretKeyBox::from_string(text.trim_start())
                .and_then(|boxed| boxed.into_secret_key(Some(secret.as_str().to_owned())))
                .map_err(|error| match error.kind() {
                    // The checksum of the decrypted key does not match.
                    minisign::ErrorKind::Verify => {
                        IdentityError::WrongPassphrase { path: path.into() }
                    }
                    _ => malformed(error.to_string()),
                })?;
            Zeroizing::new(key.to_bytes())
        } else {
            // `minisign -G -W` leaves the checksum of an unencrypted key zero, so the key is
            // read as it is; the check below (its public key is the one its seed makes) is
            // what tells a damaged one.
            raw
        };
        let (Some(seed), Some(public)) = (
            bytes.get(MINISIGN_SEED),
            bytes.get(MINISIGN_SECRET_PUBLIC_KEY),
        ) else {
            return Err(malformed("too short".into()));
        };
        if !bytes.starts_with(b"Ed") {
            return Err(malformed("not an Ed25519 key".into()));
        }
        let mut fixed = Zeroizing::new([0u8; 32]);
        fixed.copy_from_slice(seed);
        let identity = Self {
            secret: SecretKey::from_seed(&fixed),
        };
        if identity.secret.public_key().as_bytes() != public {
            return Err(malformed(
                "its public key does not match its secret key".into(),
            ));
        }
        Ok(identity)
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

    /// Makes a key with OpenSSH's own `ssh-keygen` (testnet/setup.sh installs it).
    fn ssh_keygen(dir: &Path, name: &str, kind: &str, passphrase: &str) -> PathBuf {
        let path = dir.join(name);
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", passphrase, "-C", "test", "-f"])
            .arg(&path)
            .status()
            .expect("ssh-keygen runs (install openssh-client: ./testnet/setup.sh)");
        assert!(status.success(), "ssh-keygen -t {kind}");
        path
    }

    fn pub_file(path: &Path) -> String {
        format!("{}.pub", path.display())
    }

    #[test]
    fn an_openssh_ed25519_key_signs_as_the_public_key_ssh_keygen_wrote() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = ssh_keygen(dir.path(), "id_ed25519", "ed25519", "");
        let public = public_key_from(&pub_file(&plain)).expect("the .pub file");
        let identity = Identity::load(&plain).expect("an unencrypted key loads");
        assert_eq!(identity.public().key, public);
        identity.public().check().expect("proof of possession");
        // The same public key as a line and as hex.
        let line = std::fs::read_to_string(pub_file(&plain)).expect("read");
        assert_eq!(public_key_from(line.trim()), Ok(public));
        assert_eq!(public_key_from(&public.to_hex()), Ok(public));
    }

    #[test]
    fn a_passphrase_protected_key_needs_its_passphrase() {
        let dir = tempfile::tempdir().expect("tempdir");
        let locked = ssh_keygen(dir.path(), "id_locked", "ed25519", "correct horse");
        let public = public_key_from(&pub_file(&locked)).expect("the .pub file");
        assert!(matches!(
            Identity::load(&locked),
            Err(IdentityError::PassphraseNeeded { .. })
        ));
        let wrong = Identity::load_with(&locked, &|_| Some(Zeroizing::new("battery".into())));
        assert!(matches!(wrong, Err(IdentityError::WrongPassphrase { .. })));
        let right = Identity::load_with(&locked, &|_| Some(Zeroizing::new("correct horse".into())))
            .expect("the right passphrase");
        assert_eq!(right.public().key, public);
    }

    #[test]
    fn other_ssh_key_kinds_and_malformed_files_are_refused_clearly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ecdsa = ssh_keygen(dir.path(), "id_ecdsa", "ecdsa", "");
        let error = Identity::load(&ecdsa)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("Ed25519 keys only"), "{error}");
        let error = public_key_from(&pub_file(&ecdsa)).err().unwrap_or_default();
        assert!(error.contains("Ed25519"), "{error}");
        let broken = dir.path().join("broken");
        // Written as key files are: readable by their owner only.
        write_private(
            &broken,
            format!("{OPENSSH_PRIVATE_KEY}\nAAAA\n-----END OPENSSH PRIVATE KEY-----").as_bytes(),
        )
        .expect("write");
        assert!(matches!(
            Identity::load(&broken),
            Err(IdentityError::Ssh { .. })
        ));
        assert!(public_key_from("ssh-ed25519 not-base64").is_err());
    }

    /// Makes a key with minisign itself (testnet/setup.sh installs it); `None`: unencrypted.
    fn minisign_keygen(dir: &Path, name: &str, passphrase: Option<&str>) -> (PathBuf, PathBuf) {
        let secret = dir.join(format!("{name}.key"));
        let public = dir.join(format!("{name}.pub"));
        let mut command = std::process::Command::new("minisign");
        command
            .arg("-G")
            .arg("-p")
            .arg(&public)
            .arg("-s")
            .arg(&secret);
        if passphrase.is_none() {
            command.arg("-W");
        }
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("minisign runs (install it: ./testnet/setup.sh)");
        if let Some(passphrase) = passphrase {
            let typed = format!("{passphrase}\n{passphrase}\n");
            std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), typed.as_bytes())
                .expect("passphrase");
        }
        assert!(child.wait().expect("minisign").success(), "minisign -G");
        (secret, public)
    }

    #[test]
    fn minisign_keys_sign_as_the_public_key_minisign_wrote() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (plain, plain_pub) = minisign_keygen(dir.path(), "plain", None);
        let public = public_key_from(&plain_pub.to_string_lossy()).expect("the .pub file");
        let identity = Identity::load(&plain).expect("an unencrypted key loads");
        assert_eq!(identity.public().key, public);
        identity.public().check().expect("proof of possession");
        // The key line alone is the same key.
        let text = std::fs::read_to_string(&plain_pub).expect("read");
        let line = text.lines().nth(1).expect("a key line");
        assert_eq!(public_key_from(line), Ok(public));

        let (locked, locked_pub) = minisign_keygen(dir.path(), "locked", Some("correct horse"));
        let public = public_key_from(&locked_pub.to_string_lossy()).expect("the .pub file");
        assert!(matches!(
            Identity::load(&locked),
            Err(IdentityError::PassphraseNeeded { .. })
        ));
        let wrong = Identity::load_with(&locked, &|_| Some(Zeroizing::new("battery".into())));
        assert!(
            matches!(wrong, Err(IdentityError::WrongPassphrase { .. })),
            "{wrong:?}"
        );
        let right = Identity::load_with(&locked, &|_| Some(Zeroizing::new("correct horse".into())))
            .expect("the right passphrase");
        assert_eq!(right.public().key, public);

        // A damaged file is refused as what it is.
        let broken = dir.path().join("broken.key");
        write_private(&broken, b"untrusted comment: minisign secret key\nRWQAAEIy").expect("write");
        assert!(matches!(
            Identity::load(&broken),
            Err(IdentityError::Minisign { .. })
        ));
        assert!(public_key_from("untrusted comment: x\nRWQnotakey").is_err());
    }

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
