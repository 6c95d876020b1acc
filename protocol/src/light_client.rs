//! The light client's core: what a client trusts about a project and a timeline, and every
//! check it makes before trusting more. No I/O: the caller fetches blocks and proofs from any
//! peer (none is trusted) and hands them over; a method either verifies them and moves the
//! state forward, or leaves the state as it was and says what was wrong.
//!
//! What a client trusts at first is chosen by its user: a project's release chain id, and
//! optionally a timeline chain id. Everything else follows from those ids:
//! 1. **start**: the genesis blocks must hash to the ids (the release genesis names the policy
//!    chain; the policy genesis must verify and be for the same project);
//! 2. **policy chain**, block by block: each block is reached through its level-0 forward link
//!    signed by the roster of the block before it, and each policy change is signed as the
//!    previous policy requires (developer threshold, root threshold for root changes);
//! 3. **release chain**, with one skip proof to the head a peer offers (or the timeline names):
//!    no rollback, no split view, the proof ends at that head, the head release carries the
//!    developer threshold and build attestations of the policy it names (a policy of the
//!    project's policy chain), and its sequence is above the release trusted before;
//! 4. **timeline** (freshness): a skip proof to the newest timeline block, which must be younger
//!    than the freshness bound, and the release head a peer offers must be in that block's tree.

use std::collections::BTreeMap;

use crate::encoding::Decode;
use crate::policy::Policy;
use crate::project::{ChainGenesis, check_policy_change, policy_of_block};
use crate::release::Release;
use crate::skipchain::{ProofStep, SkipBlock, SkipProof, TrustedBlock};
use crate::timeline::{Freshness, InclusionProof, TimelineBlock, TimelineEntry};
use crate::{Error, Hash, Result};

/// What a client trusts about one project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowedProject {
    /// The project's name.
    pub name: String,
    /// Its release chain (pinned by the user).
    pub release_chain: Hash,
    /// Its policy chain (named by the release chain's genesis).
    pub policy_chain: Hash,
    /// Last verified release-chain block.
    pub release: TrustedBlock,
    /// Last verified policy-chain block.
    pub policy: TrustedBlock,
    /// Every policy verified so far, by the hash of the policy-chain block holding it.
    pub policies: BTreeMap<Hash, Policy>,
}

/// What a client makes of a head a peer offers for a chain it follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// The head the client already trusts: nothing to do.
    Current,
    /// A later block: ask for a skip proof to it.
    Ahead,
}

/// A block a peer says is the head of a chain the client follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OfferedHead {
    /// Its index.
    pub index: u64,
    /// Its hash.
    pub hash: Hash,
}

/// A genesis block fetched for `chain_id`, which it must hash to.
fn check_genesis(chain_id: Hash, genesis: &SkipBlock) -> Result<()> {
    if genesis.index() != 0 || genesis.hash() != chain_id {
        return Err(Error::GenesisMismatch { chain: chain_id });
    }
    Ok(())
}

/// The project and policy chain a release chain's genesis names, once it is checked to be that
/// chain's genesis.
fn release_genesis(release_chain: Hash, genesis: &SkipBlock) -> Result<(String, Hash)> {
    check_genesis(release_chain, genesis)?;
    match ChainGenesis::of_payload(genesis.payload()) {
        Some(ChainGenesis::Release {
            project,
            policy_chain,
            ..
        }) => Ok((project, policy_chain)),
        _ => Err(Error::WrongChainKind {
            chain: release_chain,
            expected: "a release chain",
        }),
    }
}

impl FollowedProject {
    /// The policy chain the genesis of `release_chain` names (the next block to fetch when a
    /// client starts following a project).
    pub fn policy_chain_of(release_chain: Hash, genesis: &SkipBlock) -> Result<Hash> {
        release_genesis(release_chain, genesis).map(|(_, policy_chain)| policy_chain)
    }

    /// Starts following the project whose release chain is `release_chain`, from the genesis
    /// blocks of its release chain and of the policy chain that one names.
    pub fn start(
        release_chain: Hash,
        release_genesis_block: SkipBlock,
        policy_genesis: SkipBlock,
    ) -> Result<Self> {
        let (project, policy_chain) = release_genesis(release_chain, &release_genesis_block)?;
        let release_genesis = release_genesis_block;
        check_genesis(policy_chain, &policy_genesis)?;
        let signed = policy_of_block(0, policy_genesis.payload())?;
        ChainGenesis::Policy(signed.clone()).check(policy_genesis.roster().hash())?;
        if signed.policy.project != project {
            return Err(Error::WrongProject {
                expected: project,
                found: signed.policy.project,
            });
        }
        let mut policies = BTreeMap::new();
        policies.insert(policy_genesis.hash(), signed.policy);
        Ok(Self {
            name: project,
            release_chain,
            policy_chain,
            release: TrustedBlock::genesis(release_genesis)?,
            policy: TrustedBlock::genesis(policy_genesis)?,
            policies,
        })
    }

    /// The policy in force at the trusted policy block.
    pub fn current_policy(&self) -> Result<&Policy> {
        self.policies
            .get(&self.policy.block().hash())
            .ok_or(Error::MissingBlock {
                index: self.policy.block().index(),
            })
    }

    /// Moves the policy chain forward by the blocks that follow the trusted one, each given
    /// with its level-0 forward link (a [`ProofStep`] of level 0): each link must be signed by
    /// the roster of the block before it, and each policy change signed as the policy before it
    /// requires. Returns how many blocks were verified. Nothing changes on an error.
    pub fn advance_policy(&mut self, steps: &[ProofStep]) -> Result<usize> {
        let mut trusted = self.policy.clone();
        let mut policy = self.current_policy()?.clone();
        let mut verified = Vec::with_capacity(steps.len());
        for (position, step) in steps.iter().enumerate() {
            if step.link.level != 0 {
                return Err(Error::LinkMismatch {
                    reason: "policy-chain blocks are followed one by one (level-0 links)",
                });
            }
            let from = trusted.block().index();
            trusted = SkipProof {
                steps: vec![step.clone()],
            }
            .verify(&trusted)
            .map_err(|error| Error::InvalidProofStep {
                step: position,
                from,
                error: Box::new(error),
            })?;
            policy =
                check_policy_change(&policy, step.block.payload(), trusted.roster().hash())?.policy;
            verified.push((step.block.hash(), policy.clone()));
        }
        self.policy = trusted;
        self.policies.extend(verified);
        Ok(steps.len())
    }

    /// The timeline the project's newest verified policy commits it to, if any (protocol §6.1,
    /// §10 step 2).
    pub fn committed_timeline(&self) -> Result<Option<Hash>> {
        Ok(self.current_policy()?.timeline)
    }

    /// Which timeline to check the project's heads against: the one its policy names (chosen
    /// by the project's roots), whatever the user pinned; without one in the policy, the one the
    /// user pinned (if any).
    pub fn timeline_to_check(&self, pinned: Option<Hash>) -> Result<Option<Hash>> {
        Ok(self.committed_timeline()?.or(pinned))
    }

    /// Checks the policy-chain head a timeline commits to (protocol §10 step 4): it must be
    /// a policy block the client verified. A peer that served fewer policy blocks than the
    /// timeline records withholds a policy change (a rotated-out key, a new timeline).
    pub fn check_policy_head(&self, committed: OfferedHead) -> Result<()> {
        if self.policies.contains_key(&committed.hash) {
            return Ok(());
        }
        Err(Error::PolicyWithheld {
            committed: committed.index,
            trusted: self.policy.block().index(),
        })
    }

    /// What to make of `offered` as the release chain's head: refused if it is older than the
    /// trusted block (rollback) or another block at the same index (split view).
    pub fn check_offered_head(&self, offered: OfferedHead) -> Result<Offer> {
        let trusted = self.release.block();
        if offered.index < trusted.index() {
            return Err(Error::Rollback {
                offered: offered.index,
                trusted: trusted.index(),
            });
        }
        if offered.index == trusted.index() {
            if offered.hash != trusted.hash() {
                return Err(Error::SplitView {
                    index: offered.index,
                });
            }
            return Ok(Offer::Current);
        }
        Ok(Offer::Ahead)
    }

    /// Moves the release chain to `head` with `proof` from the trusted block: the proof must
    /// verify and end at `head`, the release there must be approved under the policy it names,
    /// and its sequence must be above the one trusted before. Returns the new latest release.
    /// Nothing changes on an error.
    pub fn advance_release(&mut self, proof: &SkipProof, head: Hash) -> Result<Option<Release>> {
        let reached = proof.verify(&self.release)?;
        if reached.block().hash() != head {
            return Err(Error::ProofTarget {
                expected: head,
                reached: reached.block().hash(),
            });
        }
        let previous = self.latest_release()?;
        let mut candidate = self.clone();
        candidate.release = reached;
        let latest = candidate.verify_latest()?;
        if let (Some(previous), Some(latest)) = (&previous, &latest) {
            if latest.manifest.sequence <= previous.manifest.sequence {
                return Err(Error::ReleaseRollback {
                    version: latest.manifest.version.clone(),
                    sequence: latest.manifest.sequence,
                    trusted_version: previous.manifest.version.clone(),
                    trusted_sequence: previous.manifest.sequence,
                });
            }
            let policy_of = |release: &Release| {
                self.policies
                    .get(&release.manifest.policy)
                    .map(|policy| policy.sequence)
            };
            if let (Some(sequence), Some(trusted)) = (policy_of(latest), policy_of(previous))
                && sequence < trusted
            {
                return Err(Error::PolicyRollback { sequence, trusted });
            }
        }
        *self = candidate;
        Ok(latest)
    }

    /// The latest trusted release, if a release was logged yet.
    pub fn latest_release(&self) -> Result<Option<Release>> {
        if self.release.block().index() == 0 {
            return Ok(None);
        }
        Release::from_bytes(self.release.block().payload()).map(Some)
    }

    /// Re-checks the latest release against the policy in force at its position: it names a
    /// policy of the project's policy chain the client verified, that policy's witnesses are
    /// the roster that logged the release, and the release is approved under it (developer
    /// threshold, attestations). [`FollowedProject::advance_release`] adds that the policy is
    /// no older than the one the previously trusted release named.
    pub fn verify_latest(&self) -> Result<Option<Release>> {
        let Some(release) = self.latest_release()? else {
            return Ok(None);
        };
        let manifest = &release.manifest;
        let index = self.release.block().index();
        if manifest.sequence != index {
            return Err(Error::SequenceNotIndex {
                sequence: manifest.sequence,
                index,
            });
        }
        if manifest.project != self.name {
            return Err(Error::WrongProject {
                expected: self.name.clone(),
                found: manifest.project.clone(),
            });
        }
        let policy = self
            .policies
            .get(&manifest.policy)
            .ok_or(Error::UnknownPolicy {
                policy: manifest.policy,
            })?;
        crate::project::check_witnesses(policy, self.release.roster().hash())?;
        release.check_approvals(policy)?;
        Ok(Some(release))
    }
}

/// The timeline a client follows: pinned by its chain id, with the last verified block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinnedTimeline {
    /// The timeline chain id.
    pub chain: Hash,
    /// Last verified timeline block.
    pub trusted: TrustedBlock,
}

/// A verified, fresh timeline block, against which heads are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineView {
    /// The timeline chain.
    pub chain: Hash,
    /// The block's index.
    pub index: u64,
    /// Its payload.
    pub block: TimelineBlock,
    /// Its age when checked, in seconds.
    pub age: u64,
    /// The freshness bound it was checked against (and heads are checked against).
    pub freshness: Freshness,
}

impl PinnedTimeline {
    /// Pins the timeline chain `chain` from its genesis, which must hash to the id and declare a
    /// timeline.
    pub fn start(chain: Hash, genesis: SkipBlock) -> Result<Self> {
        check_genesis(chain, &genesis)?;
        if !matches!(
            ChainGenesis::of_payload(genesis.payload()),
            Some(ChainGenesis::Timeline { .. })
        ) {
            return Err(Error::WrongChainKind {
                chain,
                expected: "a timeline chain",
            });
        }
        Ok(Self {
            chain,
            trusted: TrustedBlock::genesis(genesis)?,
        })
    }

    /// Moves to the timeline block `head` with `proof` from the trusted block. Nothing changes
    /// on an error.
    pub fn advance(&mut self, proof: &SkipProof, head: Hash) -> Result<()> {
        let reached = proof.verify(&self.trusted)?;
        if reached.block().hash() != head {
            return Err(Error::ProofTarget {
                expected: head,
                reached: reached.block().hash(),
            });
        }
        self.trusted = reached;
        Ok(())
    }

    /// The trusted timeline block, if it is fresh at `now`: it must be an epoch block (not the
    /// genesis) younger than the freshness bound.
    pub fn view(&self, now: u64, freshness: Freshness) -> Result<TimelineView> {
        if self.trusted.block().index() == 0 {
            return Err(Error::InvalidTimeline {
                reason: "the timeline has no epoch yet; wait for its first block".into(),
            });
        }
        let block = TimelineBlock::from_bytes(self.trusted.block().payload())?;
        freshness.check(block.commit.timestamp, now)?;
        Ok(TimelineView {
            chain: self.chain,
            index: self.trusted.block().index(),
            age: now.saturating_sub(block.commit.timestamp),
            block,
            freshness,
        })
    }
}

impl TimelineView {
    /// Checks that the timeline commits to `entry` as the head of `chain_id`, with `proof`, and
    /// is still fresh at `now`. Returns the head to which the client may move that chain.
    pub fn check_head(
        &self,
        chain_id: &Hash,
        entry: &TimelineEntry,
        proof: &InclusionProof,
        now: u64,
    ) -> Result<Hash> {
        if entry.chain_id != *chain_id {
            return Err(Error::NotInTimeline {
                chain_id: *chain_id,
                head: entry.head,
            });
        }
        self.block
            .commit
            .check_head(entry, proof, now, self.freshness)?;
        Ok(entry.head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosi::{Roster, RosterMember, local_round};
    use crate::encoding::Encode;
    use crate::keys::{KeySignature, SecretKey};
    use crate::policy::SignedPolicy;
    use crate::release::{ArtifactRef, BinaryArtifact, BuildRecipe, ReleaseManifest};
    use crate::skipchain::{ChainParams, ForwardLink, LinkRequest, SkipChain};
    use crate::timeline::TimelineTree;

    /// Witnesses, developers and the two chains of a project, kept in memory.
    struct World {
        witnesses: Vec<SecretKey>,
        root: SecretKey,
        developers: Vec<SecretKey>,
        policy: Policy,
        policy_chain: SkipChain,
        release_chain: SkipChain,
    }

    impl World {
        fn new() -> Self {
            let witnesses: Vec<SecretKey> =
                (1..=4u8).map(|i| SecretKey::from_seed(&[i; 32])).collect();
            let roster = Roster::with_default_threshold(
                witnesses.iter().map(RosterMember::from_secret).collect(),
            )
            .expect("roster");
            let root = SecretKey::from_seed(&[20; 32]);
            let developers: Vec<SecretKey> = (21..=23u8)
                .map(|i| SecretKey::from_seed(&[i; 32]))
                .collect();
            let policy = Policy {
                project: "hello".into(),
                sequence: 0,
                previous: None,
                root_keys: vec![root.public_key()],
                root_threshold: 1,
                developer_keys: developers.iter().map(SecretKey::public_key).collect(),
                developer_threshold: 2,
                build_verifiers: Vec::new(),
                attestations_required: 0,
                witnesses: roster.hash(),
                timeline: None,
            };
            let genesis = ChainGenesis::Policy(SignedPolicy {
                signatures: vec![KeySignature::sign(&root, &policy.digest())],
                policy: policy.clone(),
            });
            let params = ChainParams::new(2, 8).expect("params");
            let policy_chain = SkipChain::new(
                SkipBlock::genesis(params, roster.clone(), genesis.to_bytes()).expect("genesis"),
            )
            .expect("chain");
            let release_genesis = ChainGenesis::release("hello", policy_chain.id(), &[&root]);
            let release_chain = SkipChain::new(
                SkipBlock::genesis(params, roster, release_genesis.to_bytes()).expect("genesis"),
            )
            .expect("chain");
            Self {
                witnesses,
                root,
                developers,
                policy,
                policy_chain,
                release_chain,
            }
        }

        fn sign_links(&self, chain: &SkipChain, block: &SkipBlock) -> Vec<ForwardLink> {
            let secrets: Vec<&SecretKey> = self.witnesses.iter().collect();
            chain
                .link_requests(block)
                .expect("requests")
                .iter()
                .map(|request: &LinkRequest| {
                    let roster = chain.roster(request.from_index).expect("roster");
                    ForwardLink {
                        chain_id: chain.id(),
                        from: request.from,
                        to: request.to,
                        level: request.level,
                        signature: local_round(
                            roster,
                            &secrets,
                            request.message.as_bytes(),
                            &[0, 1, 2, 3],
                            &mut rand::rng(),
                        )
                        .expect("signature"),
                    }
                })
                .collect()
        }

        fn append(&mut self, release: bool, payload: Vec<u8>) -> SkipBlock {
            let chain = if release {
                &self.release_chain
            } else {
                &self.policy_chain
            };
            let block = chain.propose(None, payload).expect("block");
            let links = self.sign_links(chain, &block);
            let chain = if release {
                &mut self.release_chain
            } else {
                &mut self.policy_chain
            };
            chain.append(block.clone(), links).expect("append");
            block
        }

        /// A policy change rotating developer 0, signed by the developers `signers` of the
        /// current policy (and by the root key if `root`).
        fn rotate(&mut self, signers: &[usize], root: bool) -> SkipBlock {
            let mut next = self.policy.clone();
            next.sequence += 1;
            next.previous = Some(self.policy.digest());
            next.developer_keys[0] = SecretKey::from_seed(&[30; 32]).public_key();
            let mut keys: Vec<&SecretKey> = signers.iter().map(|&i| &self.developers[i]).collect();
            if root {
                keys.push(&self.root);
            }
            let signed = SignedPolicy {
                signatures: keys
                    .iter()
                    .map(|k| KeySignature::sign(k, &next.digest()))
                    .collect(),
                policy: next.clone(),
            };
            self.policy = next;
            self.append(false, signed.to_bytes())
        }

        fn release(&mut self, version: &str, sequence: u64, signers: &[usize]) -> SkipBlock {
            let source = ArtifactRef::of("hello.tar", b"source");
            let manifest = ReleaseManifest {
                project: "hello".into(),
                version: version.into(),
                sequence,
                source,
                recipe: BuildRecipe {
                    script: "make".into(),
                    outputs: vec![("linux".into(), "hello".into())],
                },
                binaries: vec![BinaryArtifact {
                    platform: "linux".into(),
                    artifact: ArtifactRef::of("hello", b"binary"),
                }],
                policy: self.policy_chain.head().hash(),
                timestamp: 1_000,
            };
            let release = Release {
                signatures: signers
                    .iter()
                    .map(|&i| KeySignature::sign(&self.developers[i], &manifest.digest()))
                    .collect(),
                manifest,
                attestations: Vec::new(),
            };
            self.append(true, release.to_bytes())
        }

        fn follow(&self) -> FollowedProject {
            FollowedProject::start(
                self.release_chain.id(),
                self.release_chain.genesis().clone(),
                self.policy_chain.genesis().clone(),
            )
            .expect("start")
        }

        fn policy_steps(&self, from: u64) -> Vec<ProofStep> {
            (from + 1..self.policy_chain.len())
                .map(|index| ProofStep {
                    link: self
                        .policy_chain
                        .forward_link(index - 1, 0)
                        .expect("link")
                        .clone(),
                    block: self.policy_chain.block(index).expect("block").clone(),
                    roster: None,
                })
                .collect()
        }
    }

    #[test]
    fn the_policy_head_a_timeline_commits_to_must_have_been_verified() {
        let mut world = World::new();
        let mut client = world.follow();
        world.rotate(&[0, 1], false);
        let committed = world.policy_chain.head().clone();
        let offered = OfferedHead {
            index: committed.index(),
            hash: committed.hash(),
        };
        // A peer that served only the genesis withholds the change the timeline records.
        assert_eq!(
            client.check_policy_head(offered),
            Err(Error::PolicyWithheld {
                committed: 1,
                trusted: 0
            })
        );
        client
            .advance_policy(&world.policy_steps(0))
            .expect("policy");
        assert_eq!(client.check_policy_head(offered), Ok(()));
        // An older committed head is one the client verified too.
        let genesis = world.policy_chain.block(0).expect("genesis");
        assert_eq!(
            client.check_policy_head(OfferedHead {
                index: 0,
                hash: genesis.hash()
            }),
            Ok(())
        );
    }

    #[test]
    fn a_release_whose_sequence_is_not_its_block_index_is_refused() {
        let mut world = World::new();
        let mut client = world.follow();
        world.release("1.0.0", 2, &[0, 1]);
        let head = world.release_chain.head().clone();
        let proof = world.release_chain.skip_proof(0, 1).expect("proof");
        assert_eq!(
            client.advance_release(&proof, head.hash()),
            Err(Error::SequenceNotIndex {
                sequence: 2,
                index: 1
            })
        );
    }

    #[test]
    fn the_timeline_to_check_is_the_one_the_policy_names() {
        let world = World::new();
        let mut client = world.follow();
        let (named, other) = (Hash([0x71; 32]), Hash([0x72; 32]));
        // A policy that names no timeline leaves the choice to the user.
        assert_eq!(client.timeline_to_check(None), Ok(None));
        assert_eq!(client.timeline_to_check(Some(other)), Ok(Some(other)));
        let key = client.policy.block().hash();
        client.policies.get_mut(&key).expect("policy").timeline = Some(named);
        assert_eq!(client.committed_timeline(), Ok(Some(named)));
        assert_eq!(client.timeline_to_check(None), Ok(Some(named)));
        assert_eq!(client.timeline_to_check(Some(named)), Ok(Some(named)));
        assert_eq!(client.timeline_to_check(Some(other)), Ok(Some(named)));
    }

    #[test]
    fn a_client_follows_policy_changes_and_releases() {
        let mut world = World::new();
        let mut client = world.follow();
        assert_eq!(client.name, "hello");
        assert_eq!(client.latest_release().expect("none"), None);
        world.release("1.0.0", 1, &[0, 1]);
        world.rotate(&[0, 1], false);
        world.release("1.1.0", 2, &[1, 2]);
        assert_eq!(
            client
                .advance_policy(&world.policy_steps(0))
                .expect("policy"),
            1
        );
        assert_eq!(client.current_policy().expect("policy"), &world.policy);
        let head = world.release_chain.head().clone();
        assert_eq!(
            client.check_offered_head(OfferedHead {
                index: head.index(),
                hash: head.hash()
            }),
            Ok(Offer::Ahead)
        );
        let proof = world.release_chain.skip_proof(0, 2).expect("proof");
        let latest = client
            .advance_release(&proof, head.hash())
            .expect("release")
            .expect("a release");
        assert_eq!(latest.manifest.version, "1.1.0");
        assert_eq!(
            client.check_offered_head(OfferedHead {
                index: 2,
                hash: head.hash()
            }),
            Ok(Offer::Current)
        );
        // An older head, and another block at the trusted index.
        assert!(matches!(
            client.check_offered_head(OfferedHead {
                index: 1,
                hash: head.hash()
            }),
            Err(Error::Rollback { .. })
        ));
        assert!(matches!(
            client.check_offered_head(OfferedHead {
                index: 2,
                hash: Hash([7; 32])
            }),
            Err(Error::SplitView { .. })
        ));
    }

    #[test]
    fn a_policy_change_below_the_threshold_is_refused_even_if_the_witnesses_logged_it() {
        let mut world = World::new();
        let mut client = world.follow();
        // Witnesses that ignore the rules log a change signed by one developer of two required.
        world.rotate(&[0], false);
        let before = client.clone();
        let error = client
            .advance_policy(&world.policy_steps(0))
            .expect_err("one signature");
        assert!(
            matches!(error, Error::NotEnoughSignatures { .. }),
            "{error}"
        );
        assert_eq!(client, before, "nothing changed");
        // The root threshold approves any change.
        let mut world = World::new();
        world.rotate(&[], true);
        let mut client = world.follow();
        assert_eq!(client.advance_policy(&world.policy_steps(0)), Ok(1));
    }

    /// Item 5 of the authority issue: a release counts only under the policy in force at its
    /// position. Colluding witnesses that moved the release chain to a roster of their own,
    /// or a release naming a policy the developers already replaced, are refused.
    #[test]
    fn a_release_is_accepted_only_under_the_policy_in_force_at_its_position() {
        // The release chain moved to witnesses the policy does not name.
        let mut world = World::new();
        let mut client = world.follow();
        let rogue = Roster::with_default_threshold(
            world.witnesses[..3]
                .iter()
                .map(RosterMember::from_secret)
                .collect(),
        )
        .expect("roster");
        world.release("1.0.0", 1, &[0, 1]);
        let release = Release::from_bytes(world.release_chain.head().payload()).expect("release");
        let mut hijacked = world.release_chain.clone();
        let block = hijacked
            .propose(Some(rogue), {
                let mut next = release;
                next.manifest.sequence = 2;
                next.manifest.version = "1.0.1".into();
                next.signatures = [0, 1]
                    .iter()
                    .map(|&i| KeySignature::sign(&world.developers[i], &next.manifest.digest()))
                    .collect();
                next.to_bytes()
            })
            .expect("block");
        let links = world.sign_links(&hijacked, &block);
        hijacked.append(block.clone(), links).expect("append");
        let proof = hijacked.skip_proof(0, 2).expect("proof");
        let before = client.clone();
        assert!(matches!(
            client.advance_release(&proof, block.hash()),
            Err(Error::WitnessesMismatch { .. })
        ));
        assert_eq!(client, before);

        // Developer 0's key is replaced at policy 1; a release naming policy 0 after the
        // client trusted one naming policy 1 is a rollback of the policy.
        let mut world = World::new();
        let mut client = world.follow();
        let old_policy = world.policy_chain.head().hash();
        world.rotate(&[0, 1], false);
        world.release("1.0.0", 1, &[1, 2]);
        client
            .advance_policy(&world.policy_steps(0))
            .expect("policy");
        let proof = world.release_chain.skip_proof(0, 1).expect("proof");
        client
            .advance_release(&proof, world.release_chain.head().hash())
            .expect("release under policy 1");
        // The stolen, retired key of developer 0 signs a release naming the old policy.
        let mut manifest = Release::from_bytes(world.release_chain.head().payload())
            .expect("release")
            .manifest;
        manifest.sequence = 2;
        manifest.version = "1.0.1".into();
        manifest.policy = old_policy;
        let stale = Release {
            signatures: [0, 1]
                .iter()
                .map(|&i| KeySignature::sign(&world.developers[i], &manifest.digest()))
                .collect(),
            manifest,
            attestations: Vec::new(),
        };
        world.append(true, stale.to_bytes());
        let proof = world.release_chain.skip_proof(1, 2).expect("proof");
        assert!(matches!(
            client.advance_release(&proof, world.release_chain.head().hash()),
            Err(Error::PolicyRollback {
                sequence: 0,
                trusted: 1
            })
        ));
    }

    #[test]
    fn releases_must_be_approved_and_move_forward() {
        let mut world = World::new();
        let mut client = world.follow();
        world.release("1.0.0", 1, &[0]);
        let head = world.release_chain.head().hash();
        let proof = world.release_chain.skip_proof(0, 1).expect("proof");
        let before = client.clone();
        assert!(matches!(
            client.advance_release(&proof, head),
            Err(Error::NotEnoughSignatures { .. })
        ));
        assert_eq!(client, before);
        // A proof that ends elsewhere than the head announced.
        let mut world = World::new();
        let mut client = world.follow();
        world.release("1.0.0", 1, &[0, 1]);
        world.release("1.0.1", 2, &[0, 1]);
        let proof = world.release_chain.skip_proof(0, 1).expect("proof");
        assert!(matches!(
            client.advance_release(&proof, world.release_chain.head().hash()),
            Err(Error::ProofTarget { .. })
        ));
        let proof = world.release_chain.skip_proof(0, 2).expect("proof");
        assert!(
            client
                .advance_release(&proof, world.release_chain.head().hash())
                .is_ok()
        );
    }

    #[test]
    fn genesis_blocks_must_hash_to_their_ids_and_match() {
        let world = World::new();
        let other = World::new();
        assert!(matches!(
            FollowedProject::start(
                Hash([1; 32]),
                world.release_chain.genesis().clone(),
                world.policy_chain.genesis().clone()
            ),
            Err(Error::GenesisMismatch { .. })
        ));
        assert!(matches!(
            FollowedProject::start(
                world.policy_chain.id(),
                world.policy_chain.genesis().clone(),
                world.policy_chain.genesis().clone()
            ),
            Err(Error::WrongChainKind { .. })
        ));
        // The policy genesis of another chain than the one the release genesis names.
        let mut swapped = other.policy_chain.genesis().clone();
        if swapped.hash() == world.policy_chain.id() {
            swapped = world.release_chain.genesis().clone();
        }
        assert!(
            FollowedProject::start(
                world.release_chain.id(),
                world.release_chain.genesis().clone(),
                swapped
            )
            .is_err()
        );
    }

    #[test]
    fn a_timeline_must_be_fresh_and_commit_to_the_head() {
        let witnesses: Vec<SecretKey> = (1..=4u8).map(|i| SecretKey::from_seed(&[i; 32])).collect();
        let roster = Roster::with_default_threshold(
            witnesses.iter().map(RosterMember::from_secret).collect(),
        )
        .expect("roster");
        let genesis = SkipBlock::genesis(
            ChainParams::new(2, 8).expect("params"),
            roster.clone(),
            ChainGenesis::timeline(10, &roster.hash(), &witnesses[0]).to_bytes(),
        )
        .expect("genesis");
        let mut chain = SkipChain::new(genesis.clone()).expect("chain");
        let entry = TimelineEntry {
            chain_id: Hash([5; 32]),
            head: Hash([6; 32]),
        };
        let (block, tree) =
            TimelineBlock::new(Some(&TimelineTree::empty()), 100, 1_000, vec![entry])
                .expect("timeline block");
        let next = chain.propose(None, block.to_bytes()).expect("block");
        let secrets: Vec<&SecretKey> = witnesses.iter().collect();
        let request = chain.link_requests(&next).expect("requests")[0].clone();
        let link = ForwardLink {
            chain_id: chain.id(),
            from: request.from,
            to: request.to,
            level: 0,
            signature: local_round(
                &roster,
                &secrets,
                request.message.as_bytes(),
                &[0, 1, 2],
                &mut rand::rng(),
            )
            .expect("signature"),
        };
        chain.append(next.clone(), vec![link]).expect("append");

        let mut pinned = PinnedTimeline::start(chain.id(), genesis).expect("pin");
        assert!(
            pinned.view(1_000, Freshness::default()).is_err(),
            "no epoch yet"
        );
        pinned
            .advance(&chain.skip_proof(0, 1).expect("proof"), next.hash())
            .expect("advance");
        let freshness = Freshness::default();
        assert!(matches!(
            pinned.view(1_000 + 3_601, freshness),
            Err(Error::StaleTimeline { .. })
        ));
        let view = pinned.view(1_010, freshness).expect("fresh");
        assert_eq!(view.age, 10);
        let (proved, proof) = tree.prove(&entry.chain_id).expect("proof");
        assert_eq!(
            view.check_head(&entry.chain_id, &proved, &proof, 1_010),
            Ok(entry.head)
        );
        let other = TimelineEntry {
            head: Hash([7; 32]),
            ..entry
        };
        assert!(
            view.check_head(&entry.chain_id, &other, &proof, 1_010)
                .is_err()
        );
        assert!(
            view.check_head(&Hash([8; 32]), &proved, &proof, 1_010)
                .is_err()
        );
    }
}
