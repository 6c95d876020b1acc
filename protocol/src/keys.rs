//! Ed25519 keys: validated public keys, zeroized secret keys, signatures over domain-separated
//! digests, and proofs of possession.

use core::fmt;

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::encoding::{Decode, Encode, Reader, Writer};
use crate::hash::domain;
use crate::{Error, Hash, Result};

/// The 32 bytes of a public key, for naming a key in errors and logs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 32]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", &hex::encode(self.0)[..16])
    }
}

/// A validated Ed25519 public key.
///
/// Construction rejects encodings that do not decompress, non-canonical encodings, points of
/// small order and points with a torsion component. Every key in the protocol is therefore a
/// point of the prime-order subgroup, which is what makes sums of keys well behaved.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl PublicKey {
    /// Validates a 32-byte public key.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        let point = CompressedEdwardsY(*bytes)
            .decompress()
            .ok_or(Error::InvalidPublicKey {
                reason: "not a curve point",
            })?;
        if point.compress().as_bytes() != bytes {
            return Err(Error::InvalidPublicKey {
                reason: "non-canonical encoding",
            });
        }
        if point.is_small_order() {
            return Err(Error::InvalidPublicKey {
                reason: "small-order point",
            });
        }
        if !point.is_torsion_free() {
            return Err(Error::InvalidPublicKey {
                reason: "point has a torsion component",
            });
        }
        Ok(Self {
            key: VerifyingKey::from(point),
        })
    }

    /// Parses and validates 64 hex characters.
    pub fn from_hex(text: &str) -> Result<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| Error::InvalidHex {
            what: "public key",
            expected_bytes: 32,
        })?;
        Self::from_bytes(&bytes)
    }

    /// The key's bytes, for errors and logs.
    pub fn id(&self) -> KeyId {
        KeyId(*self.as_bytes())
    }

    /// The 32-byte encoding.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// Lower-case hex of the encoding.
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }

    /// The decompressed point.
    pub fn point(&self) -> EdwardsPoint {
        self.key.to_edwards()
    }

    /// The ed25519-dalek verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Checks `signature` over `digest` with RFC 8032 strict verification.
    pub fn verify_digest(&self, digest: &Hash, signature: &Signature) -> Result<()> {
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.key
            .verify_strict(digest.as_bytes(), &signature)
            .map_err(|_| Error::InvalidSignature { signer: self.id() })
    }

    /// Checks a proof that the holder of this key knows its secret.
    pub fn verify_possession(&self, proof: &ProofOfPossession) -> Result<()> {
        self.verify_digest(&possession_digest(self), &proof.0)
            .map_err(|_| Error::InvalidProofOfPossession { key: self.id() })
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl core::hash::Hash for PublicKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl Encode for PublicKey {
    fn encode_to(&self, writer: &mut Writer) {
        writer.fixed(self.as_bytes());
    }
}

impl Decode for PublicKey {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Self::from_bytes(&reader.array("public key")?)
    }
}

/// An Ed25519 secret key. Its bytes are zeroized when it is dropped and never printed.
pub struct SecretKey {
    key: SigningKey,
}

impl SecretKey {
    /// A fresh key from a cryptographic random generator.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// The key whose RFC 8032 seed is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The RFC 8032 seed, for storing the key. Keep it secret.
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        // A key derived from a secret scalar is a multiple of the base point: always valid.
        PublicKey {
            key: self.key.verifying_key(),
        }
    }

    /// Signs a domain-separated digest with plain RFC 8032 Ed25519.
    pub fn sign_digest(&self, digest: &Hash) -> Signature {
        use ed25519_dalek::Signer;
        Signature(self.key.sign(digest.as_bytes()).to_bytes())
    }

    /// A proof that the holder of this key knows its secret, for rosters and policies.
    pub fn proof_of_possession(&self) -> ProofOfPossession {
        ProofOfPossession(self.sign_digest(&possession_digest(&self.public_key())))
    }

    /// The secret scalar `a` with `A = a·B`, for collective signing.
    pub(crate) fn scalar(&self) -> Zeroizing<Scalar> {
        Zeroizing::new(self.key.to_scalar())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(<redacted>, public {})", self.public_key())
    }
}

fn possession_digest(key: &PublicKey) -> Hash {
    Hash::of(domain::PROOF_OF_POSSESSION, &[key.as_bytes()])
}

/// A 64-byte Ed25519 signature `R || s`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", hex::encode(&self.0[..8]))
    }
}

impl Encode for Signature {
    fn encode_to(&self, writer: &mut Writer) {
        writer.fixed(&self.0);
    }
}

impl Decode for Signature {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(Self(reader.array("signature")?))
    }
}

/// An Ed25519 signature by a key over the digest of that key under
/// [`domain::PROOF_OF_POSSESSION`]. Requiring one for every key that is summed into an
/// aggregate key defeats rogue-key attacks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ProofOfPossession(pub Signature);

impl Encode for ProofOfPossession {
    fn encode_to(&self, writer: &mut Writer) {
        self.0.encode_to(writer);
    }
}

impl Decode for ProofOfPossession {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(Self(Signature::decode_from(reader)?))
    }
}

/// A signature together with the key that made it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KeySignature {
    /// The signer.
    pub signer: PublicKey,
    /// Its signature.
    pub signature: Signature,
}

impl KeySignature {
    /// Signs `digest` with `secret`.
    pub fn sign(secret: &SecretKey, digest: &Hash) -> Self {
        Self {
            signer: secret.public_key(),
            signature: secret.sign_digest(digest),
        }
    }

    /// Checks the signature over `digest`.
    pub fn verify(&self, digest: &Hash) -> Result<()> {
        self.signer.verify_digest(digest, &self.signature)
    }
}

impl Encode for KeySignature {
    fn encode_to(&self, writer: &mut Writer) {
        writer.value(&self.signer).value(&self.signature);
    }
}

impl Decode for KeySignature {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            signer: PublicKey::decode_from(reader)?,
            signature: Signature::decode_from(reader)?,
        })
    }
}

/// Counts the distinct signers among `signatures` that belong to `allowed` and signed `digest`.
///
/// Every signature must be valid and by an allowed key, and no key may sign twice: a stray
/// signature is an error, not something to skip, so that a refusal always names its cause.
pub fn count_valid_signers(
    signatures: &[KeySignature],
    allowed: &[PublicKey],
    digest: &Hash,
    role: &'static str,
) -> Result<usize> {
    let mut seen: Vec<&PublicKey> = Vec::with_capacity(signatures.len());
    for signature in signatures {
        if !allowed.contains(&signature.signer) {
            return Err(Error::UnknownSigner {
                signer: signature.signer.id(),
                role,
            });
        }
        if seen.contains(&&signature.signer) {
            return Err(Error::DuplicateSigner {
                signer: signature.signer.id(),
            });
        }
        signature.verify(digest)?;
        seen.push(&signature.signer);
    }
    Ok(seen.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_seed(&[seed; 32])
    }

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032 section 7.1, TEST 1.
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap_or_default();
        let mut seed_bytes = [0u8; 32];
        seed_bytes.copy_from_slice(&seed);
        let secret = SecretKey::from_seed(&seed_bytes);
        assert_eq!(
            secret.public_key().to_hex(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }

    #[test]
    fn sign_and_verify_digest() {
        let secret = key(1);
        let digest = Hash::of(domain::POLICY, &[b"m"]);
        let signature = secret.sign_digest(&digest);
        assert!(
            secret
                .public_key()
                .verify_digest(&digest, &signature)
                .is_ok()
        );
        let other = Hash::of(domain::POLICY, &[b"n"]);
        assert!(
            secret
                .public_key()
                .verify_digest(&other, &signature)
                .is_err()
        );
        assert!(
            key(2)
                .public_key()
                .verify_digest(&digest, &signature)
                .is_err()
        );
    }

    #[test]
    fn proof_of_possession_binds_the_key() {
        let a = key(1);
        let b = key(2);
        assert!(
            a.public_key()
                .verify_possession(&a.proof_of_possession())
                .is_ok()
        );
        assert!(matches!(
            b.public_key().verify_possession(&a.proof_of_possession()),
            Err(Error::InvalidProofOfPossession { .. })
        ));
    }

    #[test]
    fn small_order_keys_are_rejected() {
        for point in EIGHT_TORSION.iter() {
            let bytes = point.compress().to_bytes();
            assert!(
                PublicKey::from_bytes(&bytes).is_err(),
                "accepted {}",
                hex::encode(bytes)
            );
        }
    }

    #[test]
    fn mixed_torsion_keys_are_rejected() {
        let valid = key(3).public_key().point();
        let mixed = valid + EIGHT_TORSION[1];
        assert!(matches!(
            PublicKey::from_bytes(&mixed.compress().to_bytes()),
            Err(Error::InvalidPublicKey {
                reason: "point has a torsion component"
            })
        ));
    }

    #[test]
    fn non_canonical_and_off_curve_keys_are_rejected() {
        // y = p (non-canonical encoding of y = 0) and an off-curve y.
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xed;
        non_canonical[31] = 0x7f;
        assert!(PublicKey::from_bytes(&non_canonical).is_err());
        let mut found_off_curve = false;
        for y in 2u8..50 {
            let mut bytes = [0u8; 32];
            bytes[0] = y;
            if CompressedEdwardsY(bytes).decompress().is_none() {
                found_off_curve = true;
                assert!(matches!(
                    PublicKey::from_bytes(&bytes),
                    Err(Error::InvalidPublicKey {
                        reason: "not a curve point"
                    })
                ));
            }
        }
        assert!(found_off_curve);
    }

    #[test]
    fn secret_key_debug_is_redacted() {
        let secret = key(9);
        let seed_hex = hex::encode(secret.to_seed().as_ref());
        let printed = format!("{secret:?}");
        assert!(printed.contains("<redacted>"));
        assert!(!printed.contains(&seed_hex));
    }

    #[test]
    fn generated_keys_differ_and_round_trip() {
        let mut rng = StdRng::seed_from_u64(7);
        let a = SecretKey::generate(&mut rng);
        let b = SecretKey::generate(&mut rng);
        assert_ne!(a.public_key(), b.public_key());
        let restored = SecretKey::from_seed(&a.to_seed());
        assert_eq!(restored.public_key(), a.public_key());
        let decoded = PublicKey::from_bytes(a.public_key().as_bytes());
        assert_eq!(decoded.ok(), Some(a.public_key()));
    }

    #[test]
    fn signer_counting_rejects_strangers_and_duplicates() {
        let digest = Hash::of(domain::RELEASE_MANIFEST, &[b"r"]);
        let (a, b, c) = (key(1), key(2), key(3));
        let allowed = [a.public_key(), b.public_key()];
        let sa = KeySignature::sign(&a, &digest);
        let sb = KeySignature::sign(&b, &digest);
        assert_eq!(
            count_valid_signers(&[sa, sb], &allowed, &digest, "developer").ok(),
            Some(2)
        );
        assert!(matches!(
            count_valid_signers(&[sa, sa], &allowed, &digest, "developer"),
            Err(Error::DuplicateSigner { .. })
        ));
        let sc = KeySignature::sign(&c, &digest);
        assert!(matches!(
            count_valid_signers(&[sa, sc], &allowed, &digest, "developer"),
            Err(Error::UnknownSigner {
                role: "developer",
                ..
            })
        ));
        let forged = KeySignature {
            signer: b.public_key(),
            signature: sa.signature,
        };
        assert!(matches!(
            count_valid_signers(&[forged], &allowed, &digest, "developer"),
            Err(Error::InvalidSignature { .. })
        ));
    }
}
