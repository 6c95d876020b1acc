//! Round-level tests: star and tree rounds, interoperability with Ed25519, culprits, tampering.

use curve25519_dalek::edwards::EdwardsPoint;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::Error;
use crate::encoding::{Decode, Encode};
use crate::keys::SecretKey;

struct Fixture {
    secrets: Vec<SecretKey>,
    roster: Roster,
}

fn fixture(n: usize, seed: u64) -> Fixture {
    let mut rng = StdRng::seed_from_u64(seed);
    let secrets: Vec<SecretKey> = (0..n).map(|_| SecretKey::generate(&mut rng)).collect();
    let members = secrets.iter().map(RosterMember::from_secret).collect();
    let Ok(roster) = Roster::with_default_threshold(members) else {
        panic!("valid roster")
    };
    Fixture { secrets, roster }
}

impl Fixture {
    fn refs(&self) -> Vec<&SecretKey> {
        self.secrets.iter().collect()
    }

    fn sign(
        &self,
        message: &[u8],
        participants: &[usize],
        seed: u64,
    ) -> Result<CollectiveSignature, Error> {
        let mut rng = StdRng::seed_from_u64(seed);
        local_round(&self.roster, &self.refs(), message, participants, &mut rng)
    }

    /// A star round of `participants` up to the challenge: the leader's aggregator, each
    /// participant's nonces, and the challenge.
    fn open_round<'a>(
        &'a self,
        message: &'a [u8],
        participants: std::ops::Range<usize>,
        seed: u64,
    ) -> (Aggregator<'a>, Vec<(usize, SigningNonces)>, Challenge) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut aggregator = Aggregator::new(&self.roster, message);
        let mut pending = Vec::new();
        for index in participants {
            let (nonces, commitment) = commit(&self.secrets[index], message, &mut rng);
            let added =
                aggregator.add_commitment(&Contribution::single(&self.roster, index, &commitment));
            assert!(added.is_ok(), "{added:?}");
            pending.push((index, nonces));
        }
        let Ok(challenge) = aggregator.challenge() else {
            panic!("challenge")
        };
        (aggregator, pending, challenge)
    }

    fn aggregate(&self, mask: &ParticipationMask) -> [u8; 32] {
        let sum: EdwardsPoint = mask
            .present()
            .map(|i| self.secrets[i].public_key().point())
            .sum();
        sum.compress().to_bytes()
    }
}

fn all(n: usize) -> Vec<usize> {
    (0..n).collect()
}

#[test]
fn full_round_verifies_with_roster_and_plain_ed25519() {
    let f = fixture(7, 1);
    let message = b"release 1.2.3";
    let Ok(signature) = f.sign(message, &all(7), 2) else {
        panic!("round failed")
    };
    assert!(f.roster.verify(message, &signature).is_ok());

    // ed25519-dalek, both verification modes, under the sum of the participants' keys.
    let key_bytes = f.aggregate(&signature.mask);
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&key_bytes) else {
        panic!()
    };
    let ed = ed25519_dalek::Signature::from_bytes(&signature.to_ed25519_bytes());
    assert!(key.verify_strict(message, &ed).is_ok());
    assert!(ed25519_dalek::Verifier::verify(&key, message, &ed).is_ok());

    // An independent implementation (ed25519-compact, not derived from dalek).
    let Ok(pk) = ed25519_compact::PublicKey::from_slice(&key_bytes) else {
        panic!()
    };
    let Ok(sig) = ed25519_compact::Signature::from_slice(&signature.to_ed25519_bytes()) else {
        panic!()
    };
    assert!(pk.verify(message, &sig).is_ok());
}

#[test]
fn partial_participation_at_threshold_verifies() {
    let f = fixture(10, 3);
    // threshold is 7 of 10
    let participants = [0, 2, 3, 5, 7, 8, 9];
    let Ok(signature) = f.sign(b"m", &participants, 4) else {
        panic!()
    };
    assert_eq!(signature.mask.count(), 7);
    assert!(f.roster.verify(b"m", &signature).is_ok());
}

#[test]
fn below_threshold_cannot_start_nor_verify() {
    let f = fixture(10, 5);
    let result = f.sign(b"m", &[0, 1, 2, 3, 4, 5], 6);
    assert_eq!(
        result.err(),
        Some(Error::BelowThreshold {
            participants: 6,
            threshold: 7
        })
    );

    // A signature whose mask is shrunk below the threshold is refused before any curve work.
    let Ok(mut signature) = f.sign(b"m", &all(7), 6) else {
        panic!()
    };
    signature.mask.clear(6);
    assert_eq!(
        f.roster.verify(b"m", &signature).err(),
        Some(Error::BelowThreshold {
            participants: 6,
            threshold: 7
        })
    );
}

#[test]
fn tampering_is_detected() {
    let f = fixture(5, 7);
    let Ok(signature) = f.sign(b"payload", &[0, 1, 2, 3], 8) else {
        panic!()
    };
    assert!(f.roster.verify(b"payload", &signature).is_ok());
    // wrong message
    assert_eq!(
        f.roster.verify(b"payloaD", &signature).err(),
        Some(Error::InvalidCollectiveSignature)
    );
    // claim an absent witness took part
    let mut added = signature.clone();
    added.mask.set(4);
    assert_eq!(
        f.roster.verify(b"payload", &added).err(),
        Some(Error::InvalidCollectiveSignature)
    );
    // swap one participant for another
    let mut swapped = signature.clone();
    swapped.mask.clear(0);
    swapped.mask.set(4);
    assert_eq!(
        f.roster.verify(b"payload", &swapped).err(),
        Some(Error::InvalidCollectiveSignature)
    );
    // flip a bit of s and of R
    let mut bad_s = signature.clone();
    bad_s.s[0] ^= 1;
    assert!(f.roster.verify(b"payload", &bad_s).is_err());
    let mut bad_r = signature.clone();
    bad_r.r[0] ^= 1;
    assert!(f.roster.verify(b"payload", &bad_r).is_err());
    // another roster
    let other = fixture(5, 70);
    assert!(other.roster.verify(b"payload", &signature).is_err());
    // a mask over another roster size
    let mut wrong_len = signature;
    wrong_len.mask = ParticipationMask::full(6);
    assert!(matches!(
        f.roster.verify(b"payload", &wrong_len),
        Err(Error::MaskLengthMismatch { .. })
    ));
}

#[test]
fn non_canonical_s_is_rejected() {
    let f = fixture(4, 9);
    let Ok(mut signature) = f.sign(b"m", &all(4), 10) else {
        panic!()
    };
    // s + l has the same value mod l but is not canonical: strict verification refuses it.
    let l: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (byte, l_byte) in signature.s.iter_mut().zip(l) {
        let sum = *byte as u16 + l_byte as u16 + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
    assert!(f.roster.verify(b"m", &signature).is_err());
}

#[test]
fn wrong_response_is_named_and_round_restarts_without_it() {
    let f = fixture(7, 11);
    let message = b"block 42";
    let (mut aggregator, pending, challenge) = f.open_round(message, 0..7, 12);
    for (index, nonces) in pending {
        let Ok(mut share) = nonces.respond(&f.secrets[index], &f.roster, message, &challenge)
        else {
            panic!()
        };
        if index == 3 {
            share.s[5] ^= 0x10; // a lying witness
        }
        if index == 5 {
            share.s = [1; 32]; // answers with garbage (canonical, wrong)
        }
        assert!(aggregator.add_response(&share).is_ok());
    }
    assert_eq!(
        aggregator.finish().err(),
        Some(Error::InvalidResponses {
            culprits: vec![3, 5]
        })
    );

    // Restart without the culprits: 5 of 7 is still the threshold.
    let Ok(signature) = f.sign(message, &[0, 1, 2, 4, 6], 13) else {
        panic!()
    };
    assert!(f.roster.verify(message, &signature).is_ok());
}

#[test]
fn several_liars_among_many_are_all_named() {
    let f = fixture(50, 26);
    let message = b"bisect";
    let (mut aggregator, pending, challenge) = f.open_round(message, 0..50, 27);
    let liars = [3usize, 17, 18, 49];
    for (index, nonces) in pending {
        let Ok(mut share) = nonces.respond(&f.secrets[index], &f.roster, message, &challenge)
        else {
            panic!()
        };
        if liars.contains(&index) {
            // independent wrong answers (errors that cancel out add up to a correct sum and
            // do not affect the signature; see `Aggregator::blame`)
            share.s = curve25519_dalek::scalar::Scalar::from(index as u64 * 7919 + 1).to_bytes();
        }
        assert!(aggregator.add_response(&share).is_ok());
    }
    assert_eq!(
        aggregator.finish().err(),
        Some(Error::InvalidResponses {
            culprits: liars.to_vec()
        })
    );
}

#[test]
fn missing_responses_are_named() {
    let f = fixture(4, 14);
    let (mut aggregator, pending, challenge) = f.open_round(b"m", 0..4, 15);
    for (index, nonces) in pending.into_iter().take(3) {
        let Ok(share) = nonces.respond(&f.secrets[index], &f.roster, b"m", &challenge) else {
            panic!()
        };
        assert!(aggregator.add_response(&share).is_ok());
    }
    assert_eq!(aggregator.missing(), vec![3]);
    assert_eq!(
        aggregator.finish().err(),
        Some(Error::MissingResponses { witnesses: vec![3] })
    );
}

#[test]
fn protocol_misuse_is_refused() {
    let f = fixture(4, 16);
    let mut rng = StdRng::seed_from_u64(17);
    let mut aggregator = Aggregator::new(&f.roster, b"m");
    let (n0, c0) = commit(&f.secrets[0], b"m", &mut rng);
    let single = Contribution::single(&f.roster, 0, &c0);
    assert!(aggregator.add_commitment(&single).is_ok());
    // the same witness twice
    assert!(matches!(
        aggregator.add_commitment(&single),
        Err(Error::InvalidCommitment { .. })
    ));
    // a point that does not decode
    let mut broken = Contribution::single(&f.roster, 1, &c0);
    broken.first = [0xff; 32];
    broken.first[31] = 0x7f;
    let decodes = curve25519_dalek::edwards::CompressedEdwardsY(broken.first)
        .decompress()
        .is_some();
    if !decodes {
        assert!(matches!(
            aggregator.add_commitment(&broken),
            Err(Error::InvalidCommitment { witness: 1, .. })
        ));
    }
    // a sender outside its own mask
    let mut outside = Contribution::single(&f.roster, 1, &c0);
    outside.origin = 2;
    assert!(matches!(
        aggregator.add_commitment(&outside),
        Err(Error::InvalidCommitment { .. })
    ));
    // responses before the challenge
    assert!(matches!(
        aggregator.add_response(&ResponseShare {
            origin: 0,
            s: [0; 32]
        }),
        Err(Error::RoundState { .. })
    ));
    // nonces drawn for another message
    let challenge = Challenge {
        participants: ParticipationMask::full(4),
        first: c0.first,
        second: c0.second,
    };
    assert_eq!(
        n0.respond(&f.secrets[0], &f.roster, b"other", &challenge)
            .err(),
        Some(Error::NonceMessageMismatch)
    );
    // a witness outside the challenge's participants
    let (n1, _) = commit(&f.secrets[1], b"m", &mut rng);
    let mut without_one = challenge.clone();
    without_one.participants.clear(1);
    assert_eq!(
        n1.respond(&f.secrets[1], &f.roster, b"m", &without_one)
            .err(),
        Some(Error::NotAParticipant { index: 1 })
    );
    // a key outside the roster
    let stranger = SecretKey::from_seed(&[200; 32]);
    let (n2, _) = commit(&stranger, b"m", &mut rng);
    assert!(matches!(
        n2.respond(&stranger, &f.roster, b"m", &challenge),
        Err(Error::NotInRoster { .. })
    ));
}

#[test]
fn nonces_print_redacted() {
    let f = fixture(1, 18);
    let mut rng = StdRng::seed_from_u64(19);
    let (nonces, _) = commit(&f.secrets[0], b"m", &mut rng);
    assert_eq!(format!("{nonces:?}"), "SigningNonces(<redacted>)");
}

#[test]
fn nonces_are_fresh_per_commit() {
    let f = fixture(1, 20);
    let mut rng = StdRng::seed_from_u64(21);
    let (_, a) = commit(&f.secrets[0], b"m", &mut rng);
    let (_, b) = commit(&f.secrets[0], b"m", &mut rng);
    assert_ne!(a, b);
    assert_ne!(a.first, a.second);
}

/// A round over an aggregation tree, each interior node with its own aggregator, every witness
/// drawing its nonces from an RNG seeded with `seed + index` so that the same round can be
/// replayed with another tree shape. `tamper` lets one witness lie about its share.
struct TreeRound<'a> {
    f: &'a Fixture,
    tree: &'a AggregationTree,
    message: &'a [u8],
    commitments: Vec<Option<Commitment>>,
    nonces: Vec<Option<SigningNonces>>,
    tamper: Option<usize>,
}

impl TreeRound<'_> {
    fn single(&self, node: usize) -> Contribution {
        let commitment = self.commitments[node].unwrap_or(Commitment {
            first: [0; 32],
            second: [0; 32],
        });
        Contribution::single(&self.f.roster, node, &commitment)
    }

    /// The aggregator of `node` over its subtree, with every commitment in.
    fn aggregator(&self, node: usize) -> Result<Aggregator<'_>, Error> {
        let mut aggregator = Aggregator::new(&self.f.roster, self.message);
        aggregator.add_commitment(&self.single(node))?;
        for child in self.tree.children(node) {
            aggregator.add_commitment(&self.aggregator(child)?.commitment(child))?;
        }
        Ok(aggregator)
    }

    /// `node`'s own response, possibly tampered with.
    fn own_response(&mut self, node: usize, challenge: &Challenge) -> Result<ResponseShare, Error> {
        let nonces = self.nonces[node]
            .take()
            .ok_or(Error::RoundState { reason: "used" })?;
        let mut share = nonces.respond(
            &self.f.secrets[node],
            &self.f.roster,
            self.message,
            challenge,
        )?;
        if self.tamper == Some(node) {
            share.s[1] ^= 4;
        }
        Ok(share)
    }

    /// The checked response of `node`'s subtree.
    fn subtree_response(
        &mut self,
        node: usize,
        challenge: &Challenge,
    ) -> Result<ResponseShare, Error> {
        let own = self.own_response(node, challenge)?;
        let children = self.tree.children(node);
        if children.is_empty() {
            return Ok(own);
        }
        let mut shares = vec![own];
        for &child in &children {
            shares.push(self.subtree_response(child, challenge)?);
        }
        let mut aggregator = self.aggregator(node)?;
        aggregator.set_challenge(challenge.clone())?;
        for share in &shares {
            aggregator.add_response(share)?;
        }
        aggregator.response(node)
    }
}

fn tree_round(
    f: &Fixture,
    message: &[u8],
    tree: &AggregationTree,
    seed: u64,
    tamper: Option<usize>,
) -> Result<CollectiveSignature, Error> {
    let mut round = TreeRound {
        f,
        tree,
        message,
        commitments: vec![None; f.roster.len()],
        nonces: (0..f.roster.len()).map(|_| None).collect(),
        tamper,
    };
    for &index in tree.participants() {
        let mut rng = StdRng::seed_from_u64(seed + index as u64);
        let (nonces, commitment) = commit(&f.secrets[index], message, &mut rng);
        round.nonces[index] = Some(nonces);
        round.commitments[index] = Some(commitment);
    }
    let root = tree.root();
    let challenge = round.aggregator(root)?.challenge()?;
    let mut shares = vec![round.own_response(root, &challenge)?];
    for child in tree.children(root) {
        shares.push(round.subtree_response(child, &challenge)?);
    }
    let mut leader = round.aggregator(root)?;
    leader.set_challenge(challenge)?;
    for share in &shares {
        leader.add_response(share)?;
    }
    leader.finish()
}

#[test]
fn tree_rounds_give_the_star_signature() {
    let f = fixture(31, 22);
    let participants: Vec<usize> = (0..31).filter(|i| i % 10 != 9).collect(); // 28 of 31
    let Ok(star) = AggregationTree::star(participants.clone()) else {
        panic!()
    };
    let Ok(expected) = tree_round(&f, b"tree", &star, 100, None) else {
        panic!("star round")
    };
    assert!(f.roster.verify(b"tree", &expected).is_ok());
    for branching in [1, 2, 3, 4, 8] {
        let Ok(tree) = AggregationTree::new(participants.clone(), branching) else {
            panic!()
        };
        let signature = tree_round(&f, b"tree", &tree, 100, None);
        assert_eq!(
            signature.as_ref().ok(),
            Some(&expected),
            "branching {branching}"
        );
    }
}

#[test]
fn tree_interior_node_names_a_lying_child() {
    let f = fixture(15, 23);
    let Ok(tree) = AggregationTree::new((0..15).collect(), 2) else {
        panic!()
    };
    // 13 is a leaf under 6 (positions: 6 -> 13, 14), 6 is under 2.
    assert_eq!(tree.parent(13), Some(6));
    let result = tree_round(&f, b"m", &tree, 200, Some(13));
    assert_eq!(
        result.err(),
        Some(Error::InvalidResponses { culprits: vec![13] })
    );
    // A lying interior node is named by its parent.
    let result = tree_round(&f, b"m", &tree, 200, Some(2));
    assert_eq!(
        result.err(),
        Some(Error::InvalidResponses { culprits: vec![2] })
    );
}

#[test]
fn collective_signature_encoding_round_trips() {
    let f = fixture(9, 24);
    let Ok(signature) = f.sign(b"m", &all(9), 25) else {
        panic!()
    };
    let bytes = signature.to_bytes();
    assert_eq!(bytes.len(), 64 + 4 + 2);
    assert_eq!(
        CollectiveSignature::from_bytes(&bytes).ok(),
        Some(signature)
    );
    assert!(CollectiveSignature::from_bytes(&bytes[..bytes.len() - 1]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn any_mask_at_or_above_threshold_verifies_and_flipping_it_breaks_it(
        n in 1usize..12,
        seed in any::<u64>(),
        drop_bits in any::<u16>(),
    ) {
        let f = fixture(n, seed);
        let mut participants: Vec<usize> = (0..n).filter(|i| drop_bits & (1 << i) == 0).collect();
        for i in 0..n {
            if participants.len() >= f.roster.threshold() { break; }
            if !participants.contains(&i) { participants.push(i); }
        }
        participants.sort_unstable();
        let signature = f.sign(b"prop", &participants, seed ^ 1);
        prop_assert!(signature.is_ok());
        let Ok(signature) = signature else { return Ok(()) };
        prop_assert!(f.roster.verify(b"prop", &signature).is_ok());
        let key = f.aggregate(&signature.mask);
        let pk = ed25519_compact::PublicKey::from_slice(&key);
        let sig = ed25519_compact::Signature::from_slice(&signature.to_ed25519_bytes());
        prop_assert!(matches!((pk, sig), (Ok(pk), Ok(sig)) if pk.verify(b"prop", &sig).is_ok()));
        // Any single-bit change of the mask makes it invalid (or below threshold).
        for i in 0..n {
            let mut changed = signature.clone();
            if changed.mask.contains(i) { changed.mask.clear(i) } else { changed.mask.set(i) }
            prop_assert!(f.roster.verify(b"prop", &changed).is_err());
        }
    }

    #[test]
    fn signature_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        let _ = CollectiveSignature::from_bytes(&bytes);
        let _ = Contribution::from_bytes(&bytes);
        let _ = Challenge::from_bytes(&bytes);
        let _ = Roster::from_bytes(&bytes);
    }
}
