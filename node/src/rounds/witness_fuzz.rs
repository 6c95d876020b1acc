//! Fuzzing the witness's round logic (`fuzz/engine.rs` drives it): each input is a script of
//! `Commit`, `Respond` and abandon steps from three askers, with four round ids, over two
//! competing candidates for one position, a block ahead of the head, a level the block has no
//! link at and another chain's genesis. A model of what the witness may do is checked after
//! every step:
//! * nothing panics;
//! * never two different blocks signed at one position (the equivocation guard);
//! * a round's nonces answer only the asker that committed, once; a round id an asker has
//!   in progress is refused, never overwritten.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use chainiac_protocol::Hash;
use chainiac_protocol::cosi::{Aggregator, Contribution, Roster, RosterMember};
use chainiac_protocol::skipchain::{ChainParams, ForwardLink, LinkRequest, SkipBlock};
use libp2p::PeerId;

use super::witness::{AnyPayload, Asker, Committed, Refusal, Witness};
use crate::config::Identity;
use crate::store::Store;

/// What every script starts from.
struct World {
    identity: Arc<Identity>,
    roster: Roster,
    genesis: SkipBlock,
    certificate: ForwardLink,
    /// Candidates a script proposes: two for block 1, one for block 2, another chain's genesis.
    candidates: Vec<SkipBlock>,
    askers: [Asker; 3],
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let identity = Arc::new(Identity::generate());
        let roster =
            Roster::with_default_threshold(vec![RosterMember::from_secret(identity.secret())])
                .expect("roster");
        let genesis_of = |payload: &[u8]| {
            SkipBlock::genesis(
                ChainParams::new(2, 8).expect("params"),
                roster.clone(),
                payload.to_vec(),
            )
            .expect("genesis")
        };
        let genesis = genesis_of(b"fuzzed chain");
        let certificate = LinkRequest::for_genesis(&genesis)
            .expect("genesis")
            .sign_locally(
                genesis.chain_id(),
                &roster,
                &[identity.secret()],
                &mut rand::rng(),
            )
            .expect("certificate");
        let successor = |previous: &SkipBlock, payload: &[u8]| {
            SkipBlock::successor(previous, &roster, None, payload.to_vec(), |_| {
                Some(genesis.hash())
            })
            .expect("successor")
        };
        let a = successor(&genesis, b"a");
        let b = successor(&genesis, b"b");
        let ahead = successor(&a, b"ahead");
        let other = genesis_of(b"another chain");
        World {
            identity,
            roster,
            genesis,
            certificate,
            candidates: vec![a, b, ahead, other],
            askers: [
                Asker::OwnNode,
                Asker::Peer(PeerId::random()),
                Asker::Peer(PeerId::random()),
            ],
        }
    })
}

/// Runs the script in `bytes`; an error names the property a step broke.
pub(crate) fn run_script(bytes: &[u8]) -> Result<bool, String> {
    let world = world();
    let store = Store::in_memory();
    store
        .create_chain(&world.genesis, &world.certificate)
        .map_err(|e| format!("world: {e}"))?;
    let witness = Witness::new(world.identity.clone(), store, Arc::new(AnyPayload));
    // The model: rounds in progress per (asker, round), and what was signed per position.
    let mut pending: HashMap<(usize, u8), (Committed, Hash)> = HashMap::new();
    let mut signed: HashMap<(Hash, u64, u32), Hash> = HashMap::new();
    let mut steps = bytes.chunks_exact(3);
    for step in &mut steps {
        let (op, who, arg) = (step[0] % 4, step[1], step[2]);
        let asker_index = usize::from(who % 3);
        let asker = world.askers[asker_index];
        let round_byte = (who >> 2) % 4;
        let round = Hash([round_byte; 32]);
        match op {
            0 => {
                let block = &world.candidates[usize::from(arg) % world.candidates.len()];
                let level = u32::from((arg >> 4) % 2);
                // The guard beneath agreement is what is exercised: whichever block is asked
                // for is taken as decided (in a node only one ever is).
                witness.record_decision(block.chain_id(), block.index(), block.hash());
                let result = witness.commit_round(asker, round, block, level);
                let key = (asker_index, round_byte);
                match result {
                    Ok(committed) => {
                        if pending.contains_key(&key) {
                            return Err("a round id in progress was committed again".into());
                        }
                        let position = (block.chain_id(), block.index(), level);
                        if signed
                            .get(&position)
                            .is_some_and(|hash| *hash != block.hash())
                        {
                            return Err(format!(
                                "committed to block {} at a position signed for another",
                                block.index()
                            ));
                        }
                        pending.insert(key, (committed, block.hash()));
                    }
                    Err(Refusal::RepeatedRound) if !pending.contains_key(&key) => {
                        return Err("a fresh round id was refused as repeated".into());
                    }
                    Err(_) => {}
                }
            }
            1 | 2 => {
                let key = (asker_index, round_byte);
                // 1: the challenge of this round's own commitment; 2: of another round's (a
                // replayed or mismatched challenge), or of nothing known.
                let source = if op == 1 {
                    pending.get(&key)
                } else {
                    pending
                        .values()
                        .nth(usize::from(arg) % pending.len().max(1))
                };
                let Some((committed, _)) = source else {
                    let Some(challenge) = unrelated_challenge(world) else {
                        continue;
                    };
                    if witness.respond(asker, round, &challenge).is_ok() {
                        return Err("a share was given for a round never committed".into());
                    }
                    continue;
                };
                let mut aggregator =
                    Aggregator::new(&committed.roster, committed.message.as_bytes());
                aggregator
                    .add_commitment(&Contribution::single(
                        &committed.roster,
                        committed.index,
                        &committed.commitment,
                    ))
                    .map_err(|e| format!("model: {e}"))?;
                let challenge = aggregator.challenge().map_err(|e| format!("model: {e}"))?;
                let result = witness.respond(asker, round, &challenge);
                let expected = pending.remove(&key);
                match (result, expected) {
                    (Ok(_), None) => {
                        return Err("a share was given to an asker that did not commit".into());
                    }
                    (Ok(_), Some((_, block))) => {
                        let position = signed_position(world, &block)?;
                        if let Some(earlier) = signed.insert(position, block)
                            && earlier != block
                        {
                            return Err("two different blocks were signed at one position".into());
                        }
                    }
                    (Err(Refusal::UnknownRound), Some(_)) => {
                        return Err("the committing asker's round was lost".into());
                    }
                    (Err(_), _) => {}
                }
            }
            _ => {
                witness.abandon(asker, &round);
                pending.remove(&(asker_index, round_byte));
            }
        }
    }
    Ok(steps.remainder().is_empty())
}

/// The position a candidate block's link signs (level 0: the only level a share is given at
/// here, since the candidates have no other link).
fn signed_position(world: &World, block: &Hash) -> Result<(Hash, u64, u32), String> {
    let candidate = world
        .candidates
        .iter()
        .find(|candidate| candidate.hash() == *block)
        .ok_or("model: unknown block")?;
    Ok((candidate.chain_id(), candidate.index(), 0))
}

/// A challenge for a round the model knows nothing of.
fn unrelated_challenge(world: &World) -> Option<chainiac_protocol::cosi::Challenge> {
    let (_, commitment) =
        chainiac_protocol::cosi::commit(world.identity.secret(), b"nothing", &mut rand::rng());
    let mut aggregator = Aggregator::new(&world.roster, b"nothing");
    aggregator
        .add_commitment(&Contribution::single(&world.roster, 0, &commitment))
        .ok()?;
    aggregator.challenge().ok()
}

#[test]
fn fuzz_witness_rounds() {
    crate::fuzz_engine::fuzz("witness_rounds", &["witness_rounds"], run_script);
}
