//! Data chains: chains of payloads the protocol gives no meaning to, owned by the keys their
//! genesis names. A threshold of the owners signs the genesis (who created the chain, and under
//! which roster) and every later block: its data, its position in the owners' sequence and the
//! roster the chain runs under after it. Witnesses cosign nothing else, so a peer that is not
//! an owner can neither extend a data chain nor move it to a roster of its own.

use crate::encoding::{Decode, Encode, Reader, VERSION, Writer};
use crate::hash::domain;
use crate::keys::{KeySignature, PublicKey, SecretKey, count_valid_signers};
use crate::{Error, Hash, Result};

/// Most owners a data chain may name.
pub const MAX_OWNERS: usize = 64;
/// Longest label of a data chain (what tells two chains of the same owners apart).
pub const MAX_LABEL_LEN: usize = 256;
/// Largest data one block of a data chain carries (blocks as a whole are bounded too).
pub const MAX_DATA_LEN: usize = 1 << 20;

/// The keys that own a data chain and how many of them must sign.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Owners {
    /// The owner keys, distinct.
    pub keys: Vec<PublicKey>,
    /// How many owners must sign the genesis and each block.
    pub threshold: u32,
}

impl Owners {
    /// Owners `keys` with `threshold`, checked: 1 to [`MAX_OWNERS`] distinct keys, threshold
    /// between 1 and their number.
    pub fn new(keys: Vec<PublicKey>, threshold: u32) -> Result<Self> {
        let owners = Self { keys, threshold };
        owners.check()?;
        Ok(owners)
    }

    fn check(&self) -> Result<()> {
        let invalid = |reason: String| Err(Error::InvalidDataChain { reason });
        if self.keys.is_empty() || self.keys.len() > MAX_OWNERS {
            return invalid(format!(
                "a data chain has 1 to {MAX_OWNERS} owners, not {}",
                self.keys.len()
            ));
        }
        for (i, key) in self.keys.iter().enumerate() {
            if self.keys[..i].contains(key) {
                return invalid(format!("owner {} is listed twice", key.id()));
            }
        }
        if self.threshold == 0 || self.threshold as usize > self.keys.len() {
            return invalid(format!(
                "owner threshold {} must be between 1 and {}",
                self.threshold,
                self.keys.len()
            ));
        }
        Ok(())
    }

    /// Checks that a threshold of the owners signed `digest` (and nobody else signed).
    fn check_signatures(&self, signatures: &[KeySignature], digest: &Hash) -> Result<()> {
        let valid = count_valid_signers(signatures, &self.keys, digest, "owner")?;
        if valid < self.threshold as usize {
            return Err(Error::NotEnoughSignatures {
                role: "owner",
                valid,
                threshold: self.threshold as usize,
            });
        }
        Ok(())
    }
}

impl Encode for Owners {
    fn encode_to(&self, writer: &mut Writer) {
        writer.u32(self.threshold).list(&self.keys);
    }
}

impl Decode for Owners {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        let threshold = reader.u32("owner threshold")?;
        let keys = reader.list(MAX_OWNERS, "owners")?;
        Self::new(keys, threshold)
    }
}

/// The genesis payload body of a data chain: its owners and label, signed by a threshold of the
/// owners for the roster the chain starts with.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DataGenesis {
    /// Who owns the chain.
    pub owners: Owners,
    /// Free text telling the owners' chains apart (at most [`MAX_LABEL_LEN`] bytes).
    pub label: Vec<u8>,
    /// Owner signatures over [`DataGenesis::digest`].
    pub signatures: Vec<KeySignature>,
}

impl DataGenesis {
    /// What the owners sign to create the chain under the roster with hash `roster`:
    /// BLAKE3 under [`domain::DATA_GENESIS`] of `version ‖ owners ‖ bytes label ‖ roster`.
    pub fn digest(owners: &Owners, label: &[u8], roster: &Hash) -> Hash {
        let mut writer = Writer::new();
        writer.u8(VERSION).value(owners).bytes(label).value(roster);
        Hash::of(domain::DATA_GENESIS, &[&writer.finish()])
    }

    /// A genesis for `owners`, signed by `signers` (owner secrets) for the roster `roster`.
    pub fn sign(owners: Owners, label: Vec<u8>, roster: &Hash, signers: &[&SecretKey]) -> Self {
        let digest = Self::digest(&owners, &label, roster);
        Self {
            signatures: signers
                .iter()
                .map(|secret| KeySignature::sign(secret, &digest))
                .collect(),
            owners,
            label,
        }
    }

    /// Checks the owners' signatures for the genesis running under `roster`.
    pub fn check(&self, roster: &Hash) -> Result<()> {
        if self.label.len() > MAX_LABEL_LEN {
            return Err(Error::TooLong {
                what: "data chain label",
                len: self.label.len(),
                max: MAX_LABEL_LEN,
            });
        }
        let digest = Self::digest(&self.owners, &self.label, roster);
        self.owners.check_signatures(&self.signatures, &digest)
    }

    pub(crate) fn encode_body(&self, writer: &mut Writer) {
        writer
            .value(&self.owners)
            .bytes(&self.label)
            .list(&self.signatures);
    }

    pub(crate) fn decode_body(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            owners: Owners::decode_from(reader)?,
            label: reader.bytes(MAX_LABEL_LEN, "data chain label")?.to_vec(),
            signatures: reader.list(MAX_OWNERS, "owner signatures")?,
        })
    }
}

/// The payload of a data-chain block after the genesis.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DataBlock {
    /// The owners' sequence number: above the previous block's (the genesis counts as 0), so
    /// that a signed block cannot be replayed later in the chain.
    pub sequence: u64,
    /// The data.
    pub data: Vec<u8>,
    /// Owner signatures over [`DataBlock::digest`].
    pub signatures: Vec<KeySignature>,
}

impl DataBlock {
    /// What the owners sign: BLAKE3 under [`domain::DATA_BLOCK`] of
    /// `version ‖ chain_id ‖ u64 sequence ‖ roster_after ‖ BLAKE3(data)`, where `roster_after`
    /// is the hash of the roster the chain runs under after the block (the current one when
    /// the block changes no roster).
    pub fn digest(chain_id: &Hash, sequence: u64, roster_after: &Hash, data: &[u8]) -> Hash {
        let mut writer = Writer::new();
        writer
            .u8(VERSION)
            .value(chain_id)
            .u64(sequence)
            .value(roster_after)
            .value(&Hash::of_artifact(data));
        Hash::of(domain::DATA_BLOCK, &[&writer.finish()])
    }

    /// A block of `chain_id` carrying `data`, signed by `signers`.
    pub fn sign(
        chain_id: &Hash,
        sequence: u64,
        roster_after: &Hash,
        data: Vec<u8>,
        signers: &[&SecretKey],
    ) -> Self {
        let digest = Self::digest(chain_id, sequence, roster_after, &data);
        Self {
            signatures: signers
                .iter()
                .map(|secret| KeySignature::sign(secret, &digest))
                .collect(),
            sequence,
            data,
        }
    }

    /// The witnesses' rule for a proposed block of data chain `chain_id` owned by `owners`:
    /// the sequence is above `previous_sequence` and a threshold of the owners signed the
    /// block for `roster_after`.
    pub fn check(
        &self,
        owners: &Owners,
        chain_id: &Hash,
        previous_sequence: u64,
        roster_after: &Hash,
    ) -> Result<()> {
        if self.sequence <= previous_sequence {
            return Err(Error::InvalidDataChain {
                reason: format!(
                    "sequence {} is not above the previous block's {previous_sequence} (a replayed block?)",
                    self.sequence
                ),
            });
        }
        let digest = Self::digest(chain_id, self.sequence, roster_after, &self.data);
        owners.check_signatures(&self.signatures, &digest)
    }
}

impl Encode for DataBlock {
    fn encode_to(&self, writer: &mut Writer) {
        writer
            .u8(VERSION)
            .u64(self.sequence)
            .bytes(&self.data)
            .list(&self.signatures);
    }
}

impl Decode for DataBlock {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        reader.version("data block")?;
        Ok(Self {
            sequence: reader.u64("data sequence")?,
            data: reader.bytes(MAX_DATA_LEN, "data")?.to_vec(),
            signatures: reader.list(MAX_OWNERS, "owner signatures")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_seed(&[seed; 32])
    }

    fn owners() -> (Owners, Vec<SecretKey>) {
        let keys: Vec<SecretKey> = (1..=3).map(key).collect();
        let owners = Owners::new(keys.iter().map(SecretKey::public_key).collect(), 2).unwrap();
        (owners, keys)
    }

    #[test]
    fn owners_are_checked() {
        let one = key(1).public_key();
        assert!(Owners::new(Vec::new(), 1).is_err());
        assert!(Owners::new(vec![one], 0).is_err());
        assert!(Owners::new(vec![one], 2).is_err());
        assert!(Owners::new(vec![one, one], 1).is_err());
        assert!(Owners::new(vec![one], 1).is_ok());
    }

    #[test]
    fn a_genesis_needs_the_owner_threshold_for_its_roster() {
        let (owners, keys) = owners();
        let roster = Hash([7; 32]);
        let genesis = DataGenesis::sign(owners.clone(), b"logs".to_vec(), &roster, &[&keys[0]]);
        assert!(matches!(
            genesis.check(&roster),
            Err(Error::NotEnoughSignatures { role: "owner", .. })
        ));
        let genesis = DataGenesis::sign(owners, b"logs".to_vec(), &roster, &[&keys[0], &keys[2]]);
        genesis.check(&roster).unwrap();
        // The same signatures do not create the chain under another roster.
        assert!(genesis.check(&Hash([8; 32])).is_err());
        // A stranger's signature is refused, not skipped.
        let mut stranger = genesis.clone();
        stranger.signatures.push(KeySignature::sign(
            &key(9),
            &DataGenesis::digest(&genesis.owners, &genesis.label, &roster),
        ));
        assert!(matches!(
            stranger.check(&roster),
            Err(Error::UnknownSigner { .. })
        ));
    }

    #[test]
    fn a_block_is_bound_to_its_chain_sequence_and_roster() {
        let (owners, keys) = owners();
        let chain = Hash([1; 32]);
        let roster = Hash([2; 32]);
        let block = DataBlock::sign(&chain, 5, &roster, b"hello".to_vec(), &[&keys[1], &keys[2]]);
        block.check(&owners, &chain, 4, &roster).unwrap();
        // Replayed at a later position, on another chain, or attached to another roster.
        assert!(block.check(&owners, &chain, 5, &roster).is_err());
        assert!(block.check(&owners, &Hash([3; 32]), 4, &roster).is_err());
        assert!(block.check(&owners, &chain, 4, &Hash([4; 32])).is_err());
        // Changed data.
        let mut changed = block.clone();
        changed.data = b"HELLO".to_vec();
        assert!(changed.check(&owners, &chain, 4, &roster).is_err());
        // Below the threshold.
        let one = DataBlock::sign(&chain, 5, &roster, b"hello".to_vec(), &[&keys[1]]);
        assert!(one.check(&owners, &chain, 4, &roster).is_err());
        assert_eq!(DataBlock::from_bytes(&block.to_bytes()).unwrap(), block);
    }

    #[test]
    fn data_block_vector() {
        let chain = Hash([0x11; 32]);
        let roster = Hash([0x22; 32]);
        let block = DataBlock::sign(&chain, 1, &roster, b"hi".to_vec(), &[&key(1)]);
        let bytes = hex::encode(block.to_bytes());
        // version, sequence 1, data "hi", one signature (key ‖ signature).
        assert!(bytes.starts_with("01010000000000000002000000686901000000"));
        assert_eq!(
            DataBlock::digest(&chain, 1, &roster, b"hi").to_hex(),
            "ddfc9461f16c6adb0f99118317d3fd91d89819779bfac2c5e2ed696472844ef6"
        );
    }
}
