//! Domain-separated BLAKE3 hashing.
//!
//! Every protocol object is hashed with BLAKE3 in key-derivation mode, with a context string
//! that names the kind of object (`chainiac v1 skipblock`, ...). Two objects of different kinds
//! can therefore never share a hash, even if their encodings happen to be equal. Artifacts are
//! the one exception: they are hashed with plain BLAKE3 so that `b3sum FILE` gives their address.

use core::fmt;

/// Context strings, one per purpose. They are part of the wire format and never change.
pub mod domain {
    /// Hash of a skipblock (its identity; the genesis hash is the chain id).
    pub const SKIPBLOCK: &str = "chainiac v1 skipblock";
    /// Hash of a roster (witness keys, proofs of possession, threshold).
    pub const ROSTER: &str = "chainiac v1 roster";
    /// Message signed collectively for a forward link.
    pub const FORWARD_LINK: &str = "chainiac v1 forward link";
    /// Message signed by a key to prove possession of its secret.
    pub const PROOF_OF_POSSESSION: &str = "chainiac v1 proof of possession";
    /// Binding factor of a collective-signing round (two-nonce commitments).
    pub const COSI_BINDING: &str = "chainiac v1 cosi binding";
    /// Hedged derivation of a witness's secret nonces.
    pub const COSI_NONCE: &str = "chainiac v1 cosi nonce";
    /// Digest of a release policy, signed by the keys that approve it.
    pub const POLICY: &str = "chainiac v1 policy";
    /// Digest of a release manifest, signed by developers.
    pub const RELEASE_MANIFEST: &str = "chainiac v1 release manifest";
    /// Digest of a build attestation, signed by a build verifier.
    pub const BUILD_ATTESTATION: &str = "chainiac v1 build attestation";
    /// Leaf of the timeline Merkle tree: (chain id, head hash).
    pub const TIMELINE_LEAF: &str = "chainiac v1 timeline leaf";
    /// Inner node of the timeline Merkle tree.
    pub const TIMELINE_NODE: &str = "chainiac v1 timeline node";
    /// Root of an empty timeline Merkle tree.
    pub const TIMELINE_EMPTY: &str = "chainiac v1 timeline empty";
    /// A timeline member's approval of moving the timeline to another roster:
    /// `timeline chain id ‖ current roster hash ‖ new roster hash`.
    pub const ROSTER_CHANGE: &str = "chainiac v1 roster change";
    /// What a threshold of a data chain's owners sign to create it:
    /// `version ‖ owners ‖ label ‖ roster hash`.
    pub const DATA_GENESIS: &str = "chainiac v1 data genesis";
    /// What a threshold of a data chain's owners sign for each later block:
    /// `version ‖ chain id ‖ u64 sequence ‖ roster-after hash ‖ BLAKE3(data)`.
    pub const DATA_BLOCK: &str = "chainiac v1 data block";
    /// What a threshold of a project's root keys sign to create its release chain:
    /// `version ‖ project ‖ policy chain id`.
    pub const RELEASE_CHAIN_GENESIS: &str = "chainiac v1 release chain genesis";
    /// What the creator of a timeline signs: `version ‖ u64 epoch seconds ‖ roster hash`.
    pub const TIMELINE_GENESIS: &str = "chainiac v1 timeline genesis";
    /// Id of a signing round a leader starts (with the link message, the attempt and 16
    /// random bytes), so that ids of two rounds never collide.
    pub const ROUND_ID: &str = "chainiac v1 round id";
    /// Seed of a chain position's view leaders (chain id, index): every member derives the
    /// same leader for each view.
    pub const ROUND_LEADER: &str = "chainiac v1 round leader";
    /// A member's agreement vote at a chain position:
    /// `chain id ‖ u64 index ‖ u8 phase (0 prepare, 1 commit) ‖ u32 view ‖ block hash`,
    /// signed with Ed25519 by the member's key. Certificates are lists of such signatures.
    pub const AGREEMENT_VOTE: &str = "chainiac v1 agreement vote";
    /// Gossip message id: every node derives it from the message bytes alone, so a message
    /// relayed by several peers is recognised as one. Other implementations must match it.
    pub const GOSSIP_MESSAGE_ID: &str = "chainiac v1 gossip id";
    /// One chain's entry in the heads digest two nodes compare (anti-entropy):
    /// `chain id ‖ u64 index (LE) ‖ head hash`. A bucket's digest is the XOR of its entries.
    pub const HEADS_ENTRY: &str = "chainiac v1 heads entry";
    /// The heads digest: the 256 bucket digests concatenated, in bucket order.
    pub const HEADS_SUMMARY: &str = "chainiac v1 heads summary";
    /// Comparing an HTTP API bearer token with the node's, in constant time (local only).
    pub const API_TOKEN: &str = "chainiac v1 api token";
    /// Checksum a node keeps beside stored values that are not content-addressed (local to a
    /// node's disk, never sent).
    pub const STORE_CHECKSUM: &str = "chainiac v1 store checksum";
    /// A roster member vouching for the Ethereum account it anchors from:
    /// `u64 chain id (BE) ‖ 20-byte address ‖ 20-byte recipient`.
    pub const ANCHOR_ACCOUNT: &str = "chainiac v1 anchor account";
}

/// A 32-byte BLAKE3 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// Hashes `parts`, concatenated, under the context string `domain`.
    pub fn of(domain: &str, parts: &[&[u8]]) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(domain);
        for part in parts {
            hasher.update(part);
        }
        Self(*hasher.finalize().as_bytes())
    }

    /// The content address of an artifact: plain BLAKE3 of its bytes (what `b3sum` prints).
    pub fn of_artifact(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> crate::Result<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| crate::Error::InvalidHex {
            what: "hash",
            expected_bytes: 32,
        })?;
        Ok(Self(bytes))
    }

    /// Constant-time equality, for comparisons where one side is secret-derived.
    pub fn ct_eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", &self.to_hex()[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_separate_equal_inputs() {
        let a = Hash::of(domain::SKIPBLOCK, &[b"x"]);
        let b = Hash::of(domain::ROSTER, &[b"x"]);
        assert_ne!(a, b);
        assert_ne!(a, Hash::of_artifact(b"x"));
    }

    #[test]
    fn parts_are_concatenated() {
        assert_eq!(
            Hash::of(domain::ROSTER, &[b"ab", b"c"]),
            Hash::of(domain::ROSTER, &[b"abc"])
        );
    }

    #[test]
    fn artifact_hash_is_plain_blake3() {
        // BLAKE3 of the empty input, from the BLAKE3 reference test vectors.
        assert_eq!(
            Hash::of_artifact(b"").to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = Hash::of(domain::POLICY, &[b"p"]);
        assert_eq!(Hash::from_hex(&h.to_hex()).ok(), Some(h));
        assert!(Hash::from_hex("abc").is_err());
        assert!(Hash::from_hex(&"zz".repeat(32)).is_err());
    }
}
