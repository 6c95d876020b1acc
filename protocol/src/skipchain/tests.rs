//! Chain-level tests: appends, roster changes, skip proofs and every way they can be wrong.

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::cosi::{Roster, RosterMember, local_round};
use crate::encoding::{Decode, Encode};
use crate::keys::SecretKey;
use crate::{Error, Hash};

/// Witnesses with keys, able to sign link requests for any roster made of them.
struct Witnesses {
    secrets: Vec<SecretKey>,
    rng: StdRng,
}

impl Witnesses {
    fn new(count: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let secrets = (0..count).map(|_| SecretKey::generate(&mut rng)).collect();
        Self { secrets, rng }
    }

    fn roster(&self, members: std::ops::Range<usize>) -> Roster {
        let members = self.secrets[members]
            .iter()
            .map(RosterMember::from_secret)
            .collect();
        let Ok(roster) = Roster::with_default_threshold(members) else {
            panic!("valid roster")
        };
        roster
    }

    fn sign(&mut self, roster: &Roster, message: &Hash) -> crate::cosi::CollectiveSignature {
        let refs: Vec<&SecretKey> = roster
            .members()
            .iter()
            .filter_map(|m| self.secrets.iter().find(|s| s.public_key() == m.key))
            .collect();
        let all: Vec<usize> = (0..roster.len()).collect();
        let Ok(signature) = local_round(roster, &refs, message.as_bytes(), &all, &mut self.rng)
        else {
            panic!("signing failed")
        };
        signature
    }

    fn links(&mut self, chain: &SkipChain, block: &SkipBlock) -> Vec<ForwardLink> {
        let Ok(requests) = chain.link_requests(block) else {
            panic!("invalid proposal")
        };
        requests
            .into_iter()
            .map(|request| {
                let Some(roster) = chain.roster(request.from_index) else {
                    panic!()
                };
                let roster = roster.clone();
                ForwardLink {
                    chain_id: chain.id(),
                    from: request.from,
                    to: request.to,
                    level: request.level,
                    signature: self.sign(&roster, &request.message),
                }
            })
            .collect()
    }

    fn extend(&mut self, chain: &mut SkipChain, count: usize, roster: Option<Roster>) {
        let mut roster = roster;
        for _ in 0..count {
            let payload = format!("block {}", chain.len()).into_bytes();
            let Ok(block) = chain.propose(roster.take(), payload) else {
                panic!()
            };
            let links = self.links(chain, &block);
            assert_eq!(chain.append(block, links), Ok(()));
        }
    }
}

fn new_chain(w: &Witnesses, base: u32, roster: std::ops::Range<usize>) -> SkipChain {
    let Ok(params) = ChainParams::new(base, 32) else {
        panic!()
    };
    let Ok(genesis) = SkipBlock::genesis(params, w.roster(roster), b"genesis".to_vec()) else {
        panic!()
    };
    let Ok(chain) = SkipChain::new(genesis) else {
        panic!()
    };
    chain
}

fn chain_of(len: usize, base: u32, seed: u64) -> (Witnesses, SkipChain) {
    let mut w = Witnesses::new(4, seed);
    let mut chain = new_chain(&w, base, 0..4);
    w.extend(&mut chain, len - 1, None);
    (w, chain)
}

#[test]
fn appended_blocks_link_back_and_forward() {
    let (_, chain) = chain_of(20, 2, 1);
    assert_eq!(chain.len(), 20);
    let b16 = chain.block(16).cloned();
    let Some(b16) = b16 else { panic!() };
    assert_eq!(b16.height(), 5);
    let expected: Vec<Hash> = [15, 14, 12, 8, 0]
        .iter()
        .filter_map(|&i| chain.block(i).map(SkipBlock::hash))
        .collect();
    assert_eq!(b16.back_links(), &expected[..]);
    for level in 0..5 {
        assert!(chain.forward_link(16 - (1 << level), level).is_some());
    }
    assert!(chain.blocks_share_chain_id());
}

impl SkipChain {
    fn blocks_share_chain_id(&self) -> bool {
        (0..self.len()).all(|i| self.block(i).map(SkipBlock::chain_id) == Some(self.id()))
    }
}

#[test]
fn skip_proofs_verify_between_any_blocks() {
    for base in [2, 3, 4] {
        let (_, chain) = chain_of(70, base, 2);
        for (from, to) in [
            (0, 69),
            (0, 1),
            (5, 6),
            (3, 64),
            (17, 63),
            (40, 40),
            (1, 68),
        ] {
            let Ok(proof) = chain.skip_proof(from, to) else {
                panic!("proof {from}->{to}")
            };
            let Ok(trusted) = chain.trusted(from) else {
                panic!()
            };
            let verified = proof.verify(&trusted);
            let Ok(verified) = verified else {
                panic!("base {base} {from}->{to}: {verified:?}")
            };
            assert_eq!(verified.block().index(), to);
            assert_eq!(Some(verified.block()), chain.block(to));
        }
        let Ok(proof) = chain.skip_proof(0, 64) else {
            panic!()
        };
        let expected_steps = match base {
            2 => 1, // 0 -> 64 in one level-6 link
            3 => 4, // 64 = 2*27 + 1*9 + 1
            _ => 1, // 0 -> 64 in one level-3 link
        };
        assert_eq!(proof.steps.len(), expected_steps, "base {base}");
    }
}

#[test]
fn roster_changes_are_followed_by_proofs() {
    let mut w = Witnesses::new(12, 3);
    let mut chain = new_chain(&w, 2, 0..4);
    w.extend(&mut chain, 9, None); // blocks 1..=9 under roster A
    w.extend(&mut chain, 1, Some(w.roster(4..8))); // block 10 introduces roster B, signed by A
    w.extend(&mut chain, 20, None); // blocks 11..=30 under B
    w.extend(&mut chain, 1, Some(w.roster(6..12))); // block 31 introduces C
    w.extend(&mut chain, 40, None);
    assert_eq!(
        chain.roster(9).map(Roster::hash),
        Some(w.roster(0..4).hash())
    );
    assert_eq!(
        chain.roster(10).map(Roster::hash),
        Some(w.roster(4..8).hash())
    );
    assert_eq!(
        chain.roster(71).map(Roster::hash),
        Some(w.roster(6..12).hash())
    );
    for from in [0, 5, 9, 10, 16, 31, 32] {
        let Ok(proof) = chain.skip_proof(from, 71) else {
            panic!()
        };
        let Ok(trusted) = chain.trusted(from) else {
            panic!()
        };
        let verified = proof.verify(&trusted);
        assert!(verified.is_ok(), "{from}: {verified:?}");
        let Ok(verified) = verified else { return };
        assert_eq!(verified.roster().hash(), w.roster(6..12).hash());
    }
    // 0 -> 64 is a single link signed by roster A that lands on a block of roster C, which names
    // its roster by hash: the proof must carry it.
    let Ok(proof) = chain.skip_proof(0, 64) else {
        panic!()
    };
    assert_eq!(proof.steps.len(), 1);
    assert!(proof.steps[0].roster.is_some());
    let mut stripped = proof.clone();
    stripped.steps[0].roster = None;
    let Ok(genesis) = chain.trusted(0) else {
        panic!()
    };
    assert!(matches!(
        stripped.verify(&genesis),
        Err(Error::InvalidProofStep { error, .. }) if *error == Error::RosterMismatch { index: 64 }
    ));
    let mut wrong = proof;
    wrong.steps[0].roster = Some(w.roster(4..8));
    assert!(wrong.verify(&genesis).is_err());
}

#[test]
fn links_signed_by_the_wrong_roster_are_refused() {
    let mut w = Witnesses::new(8, 4);
    let mut chain = new_chain(&w, 2, 0..4);
    w.extend(&mut chain, 3, None);
    // A roster change must be signed by the old roster; here the new roster signs it itself.
    let new_roster = w.roster(4..8);
    let Ok(block) = chain.propose(Some(new_roster.clone()), b"takeover".to_vec()) else {
        panic!()
    };
    let Ok(requests) = chain.link_requests(&block) else {
        panic!()
    };
    let links: Vec<ForwardLink> = requests
        .iter()
        .map(|r| ForwardLink {
            chain_id: chain.id(),
            from: r.from,
            to: r.to,
            level: r.level,
            signature: w.sign(&new_roster, &r.message),
        })
        .collect();
    assert!(chain.append(block, links).is_err());
    assert_eq!(chain.len(), 4);
}

#[test]
fn append_rules_are_enforced() {
    let (mut w, mut chain) = chain_of(5, 2, 5);
    let Ok(good) = chain.propose(None, b"next".to_vec()) else {
        panic!()
    };
    let good_links = w.links(&chain, &good);

    // missing level-0 link
    let higher: Vec<ForwardLink> = good_links.iter().filter(|l| l.level > 0).cloned().collect();
    assert!(matches!(
        chain.append(good.clone(), higher),
        Err(Error::MissingForwardLink { level: 0, .. })
    ));

    // a link whose mask falls under the threshold
    let mut weak = good_links.clone();
    weak[0].signature.mask.clear(0);
    weak[0].signature.mask.clear(1);
    assert!(matches!(
        chain.append(good.clone(), weak),
        Err(Error::BelowThreshold { .. })
    ));

    // a link at a level that does not point to the block
    let mut wrong_level = good_links.clone();
    wrong_level[0].level = 7;
    assert!(chain.append(good.clone(), wrong_level).is_err());

    // a block that skips an index, from another chain, with wrong back links, or a wrong roster
    let Some(head) = chain.block(4).cloned() else {
        panic!()
    };
    let Some(roster) = chain.roster(4).cloned() else {
        panic!()
    };
    let Ok(skipping) = SkipBlock::successor(&good, &roster, None, vec![], |i| {
        chain.block(i).map(SkipBlock::hash).or(Some(good.hash()))
    }) else {
        panic!()
    };
    assert!(matches!(
        chain.validate_proposal(&skipping),
        Err(Error::InvalidBlock { .. })
    ));
    let (_, other_chain) = chain_of(5, 2, 6);
    let Ok(foreign) = other_chain.propose(None, vec![]) else {
        panic!()
    };
    assert!(chain.validate_proposal(&foreign).is_err());
    let Ok(bad_back) =
        SkipBlock::successor(&head, &roster, None, vec![], |_| Some(Hash::default()))
    else {
        panic!()
    };
    assert!(matches!(
        chain.validate_proposal(&bad_back),
        Err(Error::InvalidBlock { .. })
    ));
    let other_roster = w.roster(1..4);
    let Ok(repeat) = SkipBlock::successor(&head, &other_roster, None, vec![], |i| {
        chain.block(i).map(SkipBlock::hash)
    }) else {
        panic!()
    };
    assert!(matches!(
        chain.validate_proposal(&repeat),
        Err(Error::InvalidBlock { .. })
    ));

    assert_eq!(chain.len(), 5, "nothing was appended");
    assert_eq!(chain.append(good, good_links), Ok(()));
    assert_eq!(chain.len(), 6);
}

#[test]
fn a_roster_repeated_in_full_is_refused() {
    let (_, chain) = chain_of(3, 2, 7);
    let Some(head) = chain.block(2).cloned() else {
        panic!()
    };
    let Some(roster) = chain.roster(2).cloned() else {
        panic!()
    };
    // successor() gives an unchanged roster by hash...
    let block = SkipBlock::successor(&head, &roster, Some(roster.clone()), vec![], |i| {
        chain.block(i).map(SkipBlock::hash)
    });
    let Ok(block) = block else { panic!() };
    assert!(matches!(block.roster(), BlockRoster::Unchanged(_)));
    // ...and a block that repeats it in full is refused, so each roster has one encoding.
    let repeated = SkipBlock::build(
        3,
        Some(chain.id()),
        chain.params(),
        block.back_links().to_vec(),
        BlockRoster::Full(roster),
        vec![],
    );
    let Ok(repeated) = repeated else { panic!() };
    assert!(matches!(
        chain.validate_proposal(&repeated),
        Err(Error::InvalidBlock { .. })
    ));
}

#[test]
fn tampered_or_truncated_proofs_are_refused() {
    let (_, chain) = chain_of(40, 2, 8);
    let Ok(proof) = chain.skip_proof(1, 39) else {
        panic!()
    };
    let Ok(trusted) = chain.trusted(1) else {
        panic!()
    };
    assert!(proof.steps.len() >= 3);
    assert!(proof.verify(&trusted).is_ok());

    // tampered payload: the block no longer has the hash the link signed
    let mut tampered = proof.clone();
    let step = &tampered.steps[1];
    let Ok(forged) = SkipBlock::successor(
        &chain
            .block(step.block.index() - 1)
            .cloned()
            .unwrap_or_else(|| step.block.clone()),
        chain.current_roster(),
        None,
        b"malware".to_vec(),
        |i| chain.block(i).map(SkipBlock::hash),
    ) else {
        panic!()
    };
    tampered.steps[1].block = forged;
    assert!(matches!(
        tampered.verify(&trusted),
        Err(Error::InvalidProofStep { step: 1, .. })
    ));

    // a missing step in the middle
    let mut gap = proof.clone();
    gap.steps.remove(1);
    assert!(matches!(
        gap.verify(&trusted),
        Err(Error::InvalidProofStep { step: 1, .. })
    ));

    // reordered steps
    let mut reordered = proof.clone();
    reordered.steps.swap(0, 1);
    assert!(matches!(
        reordered.verify(&trusted),
        Err(Error::InvalidProofStep { step: 0, .. })
    ));

    // a link with its level changed
    let mut relevel = proof.clone();
    relevel.steps[0].link.level += 1;
    assert!(relevel.verify(&trusted).is_err());

    // a signature copied from another link
    let mut copied = proof.clone();
    copied.steps[0].link.signature = proof.steps[1].link.signature.clone();
    assert!(copied.verify(&trusted).is_err());

    // a proof started from the wrong trusted block
    let Ok(other) = chain.trusted(2) else {
        panic!()
    };
    assert!(proof.verify(&other).is_err());

    // a byte-truncated proof does not decode
    let bytes = proof.to_bytes();
    assert_eq!(SkipProof::from_bytes(&bytes).as_ref(), Ok(&proof));
    for cut in [1, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(SkipProof::from_bytes(&bytes[..cut]).is_err());
    }
}

#[test]
fn proofs_from_another_chain_are_refused() {
    let (_, a) = chain_of(10, 2, 9);
    let (_, b) = chain_of(10, 2, 10);
    let Ok(proof) = b.skip_proof(0, 9) else {
        panic!()
    };
    let Ok(trusted) = a.trusted(0) else { panic!() };
    assert!(matches!(
        proof.verify(&trusted),
        Err(Error::InvalidProofStep { error, .. }) if *error == Error::WrongChain
    ));
}

#[test]
fn blocks_and_links_round_trip_and_reject_tampering() {
    let (_, chain) = chain_of(9, 2, 11);
    for index in 0..9 {
        let Some(block) = chain.block(index) else {
            panic!()
        };
        let bytes = block.to_bytes();
        let Ok(decoded) = SkipBlock::from_bytes(&bytes) else {
            panic!("block {index}")
        };
        assert_eq!(&decoded, block);
        assert_eq!(decoded.hash(), block.hash());
    }
    let Some(block) = chain.block(8) else {
        panic!()
    };
    let mut bytes = block.to_bytes();
    // the height field sits after version, index, chain id, base and max height
    let height_at = 1 + 8 + 32 + 4 + 4;
    bytes[height_at] = 3;
    assert!(matches!(
        SkipBlock::from_bytes(&bytes),
        Err(Error::InvalidBlock { .. })
    ));
    let Some(link) = chain.forward_link(0, 3) else {
        panic!()
    };
    assert_eq!(ForwardLink::from_bytes(&link.to_bytes()).as_ref(), Ok(link));
    let mut bytes = block.to_bytes();
    bytes[0] = 2;
    assert!(matches!(
        SkipBlock::from_bytes(&bytes),
        Err(Error::UnknownVersion { found: 2, .. })
    ));
    let mut bytes = block.to_bytes();
    bytes.push(0);
    assert!(matches!(
        SkipBlock::from_bytes(&bytes),
        Err(Error::TrailingBytes { extra: 1 })
    ));
}

#[test]
fn higher_links_can_be_added_later_and_are_then_used() {
    let (mut w, mut chain) = chain_of(4, 2, 12);
    let Ok(block) = chain.propose(None, b"4".to_vec()) else {
        panic!()
    };
    let links = w.links(&chain, &block);
    let (level0, higher): (Vec<_>, Vec<_>) = links.into_iter().partition(|l| l.level == 0);
    assert_eq!(chain.append(block, level0), Ok(()));
    // without the level-2 link: 0 -> 2 -> 3 -> 4
    assert_eq!(chain.skip_proof(0, 4).map(|p| p.steps.len()).ok(), Some(3));
    for link in higher {
        assert_eq!(chain.add_forward_link(link), Ok(()));
    }
    assert_eq!(chain.skip_proof(0, 4).map(|p| p.steps.len()).ok(), Some(1));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn mutated_blocks_and_proofs_never_decode_to_the_original(position in any::<usize>(), flip in 1u8..=255) {
        let (_, chain) = chain_of(6, 2, 13);
        let Ok(proof) = chain.skip_proof(1, 5) else { panic!() };
        let bytes = proof.to_bytes();
        let mut mutated = bytes;
        let at = position % mutated.len();
        mutated[at] ^= flip;
        if let Ok(decoded) = SkipProof::from_bytes(&mutated) {
            prop_assert_ne!(&decoded, &proof);
            let Ok(trusted) = chain.trusted(1) else { panic!() };
            // Whatever decodes must not verify to a different head.
            if let Ok(head) = decoded.verify(&trusted) {
                prop_assert_eq!(head.block(), proof.steps.last().map(|s| &s.block).unwrap_or(trusted.block()));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = SkipBlock::from_bytes(&bytes);
        let _ = SkipProof::from_bytes(&bytes);
        let _ = ForwardLink::from_bytes(&bytes);
    }
}

#[test]
fn a_genesis_certificate_is_signed_by_the_genesis_roster_and_is_no_forward_link() {
    let mut w = Witnesses::new(8, 9);
    let mut chain = new_chain(&w, 2, 0..4);
    let genesis = chain.genesis().clone();
    let Ok(request) = LinkRequest::for_genesis(&genesis) else {
        panic!("a genesis has a certificate request")
    };
    let certificate = |w: &mut Witnesses, roster: &Roster| ForwardLink {
        chain_id: genesis.chain_id(),
        from: request.from,
        to: request.to,
        level: 0,
        signature: w.sign(roster, &request.message),
    };
    let own = w.roster(0..4);
    let good = certificate(&mut w, &own);
    assert_eq!(LinkRequest::check_genesis(&genesis, &good), Ok(()));
    // Signed by another roster (the attacker's own keys): refused.
    let others = w.roster(4..8);
    let foreign = certificate(&mut w, &others);
    assert!(LinkRequest::check_genesis(&genesis, &foreign).is_err());
    // A certificate is for one genesis.
    let other = new_chain(&w, 3, 0..4);
    assert!(LinkRequest::check_genesis(other.genesis(), &good).is_err());
    // A certificate cannot serve as block 1's forward link, and block 1 has no certificate.
    let Ok(first) = chain.propose(None, b"block 1".to_vec()) else {
        panic!()
    };
    assert!(LinkRequest::for_genesis(&first).is_err());
    let Ok(requests) = chain.link_requests(&first) else {
        panic!()
    };
    assert!(
        requests
            .iter()
            .all(|r| r.check(&good, &w.roster(0..4)).is_err())
    );
    assert!(chain.append(first, vec![good.clone()]).is_err());
    let proof = SkipProof {
        steps: vec![ProofStep {
            link: good,
            block: genesis.clone(),
            roster: None,
        }],
    };
    let Ok(trusted) = TrustedBlock::genesis(genesis.clone()) else {
        panic!()
    };
    assert!(
        proof.verify(&trusted).is_err(),
        "a self-link never moves a proof"
    );
}
