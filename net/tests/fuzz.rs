//! Fuzzing every decoder of hostile bytes: wire requests and answers, blocks, links, proofs,
//! rosters, policies, releases, timeline blocks, signing-round messages.
//!
//! The engine (`fuzz/engine.rs`) is a seeded mutation fuzzer on stable Rust; each target starts
//! from the corpus in `fuzz/corpus/<target>/` (real objects and real traffic of a small network,
//! written by `tests/tests/fuzz_corpus.rs`) and checks on every mutated input that the decoder
//! * does not panic, and
//! * accepts only canonical encodings: whatever decodes re-encodes to exactly the input bytes
//!   (otherwise two encodings of one object would hash differently).
//!
//! Each target runs for `CHAINIAC_FUZZ_SECONDS` (default 1) with seed `CHAINIAC_FUZZ_SEED`
//! (default: from the clock, printed on failure). A failing input is written to
//! `fuzz/crashes/<target>/`; moved to `fuzz/regressions/<target>/`, it is checked on every run.

use chainiac_net::wire::{HeadInfo, LinkedBlock, Request, Response};
use chainiac_protocol::anchor::AnchorProof;
use chainiac_protocol::cosi::{
    Challenge, CollectiveSignature, Commitment, Contribution, ParticipationMask, ResponseShare,
    Roster, TreeLayout,
};
use chainiac_protocol::data_chain::DataBlock;
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::keys::{KeySignature, PublicKey};
use chainiac_protocol::policy::{Policy, SignedPolicy};
use chainiac_protocol::project::ChainGenesis;
use chainiac_protocol::release::{BuildAttestation, Release, ReleaseManifest};
use chainiac_protocol::skipchain::{ForwardLink, SkipBlock, SkipProof};
use chainiac_protocol::timeline::{InclusionProof, TimelineBlock};

#[path = "../../fuzz/engine.rs"]
mod engine;

use engine::fuzz;

/// The binary decoders' property: whatever decodes re-encodes to exactly the input bytes
/// (otherwise two encodings of one object would hash differently).
fn canonical<T: Decode + Encode>(bytes: &[u8]) -> Result<bool, String> {
    match T::from_bytes(bytes) {
        Err(_) => Ok(false),
        Ok(value) => {
            let encoded = value.to_bytes();
            if encoded == bytes {
                Ok(true)
            } else {
                Err(format!(
                    "a non-canonical encoding was accepted: re-encoded to {} bytes",
                    encoded.len()
                ))
            }
        }
    }
}

macro_rules! targets {
    ($($name:ident: $type:ty, [$($corpus:literal),*];)*) => {
        $(
            #[test]
            fn $name() {
                fuzz(stringify!($name), &[$($corpus),*], canonical::<$type>);
            }
        )*
    };
}

targets! {
    request: Request, ["request"];
    response: Response, ["response"];
    linked_block: LinkedBlock, ["linked_block"];
    head_info: HeadInfo, [];
    skip_block: SkipBlock, ["skip_block"];
    forward_link: ForwardLink, ["forward_link"];
    skip_proof: SkipProof, ["skip_proof"];
    roster: Roster, ["roster"];
    chain_genesis: ChainGenesis, ["chain_genesis"];
    signed_policy: SignedPolicy, ["signed_policy"];
    policy: Policy, ["policy"];
    release: Release, ["release"];
    release_manifest: ReleaseManifest, ["release_manifest"];
    build_attestation: BuildAttestation, ["build_attestation"];
    data_block: DataBlock, ["data_block"];
    timeline_block: TimelineBlock, ["timeline_block"];
    inclusion_proof: InclusionProof, ["inclusion_proof"];
    anchor_proof: AnchorProof, [];
    commitment: Commitment, ["commitment"];
    challenge: Challenge, ["challenge"];
    response_share: ResponseShare, ["response_share"];
    contribution: Contribution, [];
    tree_layout: TreeLayout, [];
    participation_mask: ParticipationMask, [];
    collective_signature: CollectiveSignature, [];
    key_signature: KeySignature, [];
    public_key: PublicKey, [];
}
