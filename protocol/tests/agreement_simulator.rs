//! A seeded, deterministic simulator of agreement (`chainiac_protocol::agreement`): rosters of
//! 4, 7 and 10 members of which `f` are Byzantine (silent, equivocating, replaying, or talking
//! to half the roster only), random delays, drops and reorders, a partition, and crashes with
//! restarts from the durable state, all until a random moment when the network heals.
//!
//! Checked on every schedule:
//! * **safety**: no two honest members decide different blocks at one index, and for no index
//!   do honest commit votes (plus every Byzantine member) suffice to certify two blocks;
//! * **liveness**: once the network healed, every honest publisher's proposal is decided at
//!   every honest member, and positions begun after the heal decide within a bounded number
//!   of views.
//!
//! A failing schedule prints its seed; `AGREEMENT_SEED=<seed> cargo test --workspace --
//! agreement_simulator` runs that one alone (with `AGREEMENT_MEMBERS=<n>`);
//! `AGREEMENT_TRACE=1` prints its messages; `AGREEMENT_ROUND=k` runs the k-th range of seeds
//! instead of the first (for longer runs than CI's).

// A test harness: a broken invariant of the simulation itself is a test failure.
#![allow(clippy::expect_used)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};

use chainiac_protocol::Hash;
use chainiac_protocol::agreement::{
    Action, Agreement, Certificate, Durable, Event, Member, Message, Phase, Quorum, Statement,
    Timing, View,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Honest publishers and the proposals each submits.
const PUBLISHERS: u64 = 3;
const PROPOSALS_PER_PUBLISHER: u64 = 2;
/// Simulated time after the heal within which every honest proposal must be decided.
const LIVENESS_WINDOW_MS: u64 = 180_000;
/// Events per schedule beyond which the simulation counts as running away.
const MAX_EVENTS: u64 = 3_000_000;
/// Payload ids of Byzantine blocks start here.
const JUNK: u64 = 1 << 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Byzantine {
    /// Never says anything.
    Silent,
    /// As a leader proposes different blocks to the two halves of the roster; votes for
    /// every block it sees; forms and shows certificates from whatever votes reach it.
    Equivocating,
    /// Follows the protocol, and re-sends old messages to random members.
    Replaying,
    /// Follows the protocol towards half of the roster only.
    HalfRoster,
    /// Follows the protocol, and announces far-future views (up to `View::MAX`).
    Racing,
}

#[derive(Clone, Debug)]
enum Wire {
    Agreement { index: u64, message: Message },
    Candidate(u64),
    SyncRequest(u64),
    SyncReply(Vec<(u64, Certificate)>),
}

#[derive(Clone, Debug)]
enum Occurrence {
    Deliver {
        from: Member,
        to: Member,
        wire: Wire,
    },
    Tick {
        member: Member,
        at: u64,
    },
    Crash(Member),
    Restart(Member),
    Submit(u64),
    /// A member compares its chain with a random member's (a node's anti-entropy).
    AntiEntropy(Member),
}

/// How often a member runs anti-entropy.
const ANTI_ENTROPY_MS: u64 = 1_000;

struct Host {
    byzantine: Option<Byzantine>,
    /// The index the member works on (durable, as its chain is).
    index: u64,
    /// `None` while crashed.
    machine: Option<Agreement>,
    durable: Durable,
    chain: Vec<Certificate>,
    /// Payloads the member was asked to get logged (durable: a node keeps its pending
    /// proposals on disk).
    pool: Vec<u64>,
    early: Vec<(Member, u64, Message)>,
    tick_at: Option<u64>,
    replayable: Vec<Wire>,
    /// The half of the roster a `HalfRoster` member talks to.
    audience: Vec<bool>,
}

struct Config {
    members: u32,
    seed: u64,
}

struct World {
    rng: StdRng,
    seed: u64,
    quorum: Quorum,
    timing: Timing,
    now: u64,
    sequence: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    occurrences: HashMap<u64, Occurrence>,
    hosts: Vec<Host>,
    heal_at: u64,
    drop_rate: f64,
    side: Option<Vec<bool>>,
    /// Honest votes that left a member: (member, index, statement).
    signed: HashSet<(Member, u64, Statement)>,
    /// Votes that reached a Byzantine member (they collude), per (index, statement).
    seen_by_byzantine: HashMap<(u64, Statement), BTreeSet<Member>>,
    payloads: HashMap<Hash, u64>,
    honest_payloads: BTreeSet<u64>,
    decided: BTreeMap<u64, Hash>,
    /// Index at which some honest member started working after the heal, per index: the view
    /// each such position was decided in.
    /// (when the position was first started, the view it was decided in), for positions
    /// started after the heal; judged at the end against the last restart after the heal.
    views_after_heal: Vec<(u64, View)>,
    /// The network healed and every member crashed after the heal is back: from then on
    /// positions must decide within the view bound.
    calm_since: u64,
    /// Members that were answered about an old index (the host answers once; anti-entropy
    /// repairs the rest), so that no one can make honest members amplify its messages.
    answered_old: HashSet<(Member, Member, u64)>,
    /// When an honest member first started working on each index.
    first_started: BTreeMap<u64, u64>,
    events: u64,
    /// Whether something was decided since everything was last checked for being logged.
    progress: bool,
}

fn block_of(index: u64, payload: u64) -> Hash {
    Hash::of(
        "chainiac simulator block",
        &[&index.to_le_bytes(), &payload.to_le_bytes()],
    )
}

impl World {
    fn new(config: &Config) -> Self {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let n = config.members;
        let f = (n - 1) / 3;
        let quorum = Quorum::new(n, n - f).expect("3f+1 members with threshold 2f+1");
        assert_eq!(quorum.faults_tolerated(), f);
        let mut order: Vec<Member> = (0..n).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let byzantine: BTreeSet<Member> = order[..f as usize].iter().copied().collect();
        let kinds = [
            Byzantine::Silent,
            Byzantine::Equivocating,
            Byzantine::Replaying,
            Byzantine::HalfRoster,
            Byzantine::Racing,
        ];
        let hosts = (0..n)
            .map(|member| Host {
                byzantine: byzantine
                    .contains(&member)
                    .then(|| kinds[rng.random_range(0..kinds.len())]),
                index: 0,
                machine: None,
                durable: Durable::default(),
                chain: Vec::new(),
                pool: Vec::new(),
                early: Vec::new(),
                tick_at: None,
                replayable: Vec::new(),
                audience: (0..n).map(|_| rng.random_bool(0.5)).collect(),
            })
            .collect();
        let heal_at = rng.random_range(1_000..12_000);
        let drop_rate = [0.0, 0.05, 0.2, 0.4][rng.random_range(0..4usize)];
        let side = rng
            .random_bool(0.5)
            .then(|| (0..n).map(|_| rng.random_bool(0.5)).collect());
        let mut world = Self {
            rng,
            seed: config.seed,
            quorum,
            timing: Timing {
                base_ms: 200,
                max_doublings: 5,
            },
            now: 0,
            sequence: 0,
            queue: BinaryHeap::new(),
            occurrences: HashMap::new(),
            hosts,
            heal_at,
            drop_rate,
            side,
            signed: HashSet::new(),
            seen_by_byzantine: HashMap::new(),
            payloads: HashMap::new(),
            honest_payloads: BTreeSet::new(),
            decided: BTreeMap::new(),
            views_after_heal: Vec::new(),
            calm_since: heal_at,
            answered_old: HashSet::new(),
            first_started: BTreeMap::new(),
            events: 0,
            progress: false,
        };
        for member in 0..n {
            world.start_machine(member);
        }
        for payload in 1..=PUBLISHERS * PROPOSALS_PER_PUBLISHER {
            world.honest_payloads.insert(payload);
            let at = world.rng.random_range(0..world.heal_at);
            world.schedule(at, Occurrence::Submit(payload));
        }
        for member in 0..n {
            let first = world.rng.random_range(0..ANTI_ENTROPY_MS);
            world.schedule(first, Occurrence::AntiEntropy(member));
            if world.hosts[member as usize].byzantine.is_none() && world.rng.random_bool(0.3) {
                let crash = world.rng.random_range(0..world.heal_at);
                let restart = world.rng.random_range(crash..world.heal_at);
                world.schedule(crash, Occurrence::Crash(member));
                world.schedule(restart, Occurrence::Restart(member));
            } else if world.hosts[member as usize].byzantine.is_none() && world.rng.random_bool(0.1)
            {
                // A crash after the heal, restarting within 3 s.
                let crash = world.heal_at + world.rng.random_range(0..3_000);
                let restart = crash + world.rng.random_range(1..3_000);
                world.schedule(crash, Occurrence::Crash(member));
                world.schedule(restart, Occurrence::Restart(member));
            }
        }
        world
    }

    fn f(&self) -> usize {
        self.quorum.faults_tolerated() as usize
    }

    fn schedule(&mut self, at: u64, occurrence: Occurrence) {
        self.sequence += 1;
        self.queue.push(Reverse((at, self.sequence)));
        self.occurrences.insert(self.sequence, occurrence);
    }

    fn healed(&self) -> bool {
        self.now >= self.heal_at
    }

    fn send(&mut self, from: Member, to: Member, wire: Wire) {
        if from == to {
            return;
        }
        if !self.healed() {
            if self.rng.random_bool(self.drop_rate) {
                return;
            }
            if let Some(side) = &self.side
                && side[from as usize] != side[to as usize]
            {
                return;
            }
        }
        let max_delay = if self.healed() { 60 } else { 120 };
        let delay = self.rng.random_range(1..=max_delay);
        self.schedule(self.now + delay, Occurrence::Deliver { from, to, wire });
    }

    fn start_machine(&mut self, member: Member) {
        let index = self.hosts[member as usize].index;
        let seed = Quorum::position_seed(&Hash::of("chainiac simulator chain", &[]), index);
        let host = &mut self.hosts[member as usize];
        let durable = host.durable.clone();
        if host.byzantine.is_none() {
            self.first_started.entry(index).or_insert(self.now);
        }
        let host = &mut self.hosts[member as usize];
        let mut machine = Agreement::restore(self.quorum, seed, member, self.timing, durable);
        let mut actions = machine.resume(self.now);
        for payload in host.pool.clone() {
            let block = block_of(index, payload);
            actions.extend(machine.handle(Event::Candidate(block), self.now));
        }
        host.machine = Some(machine);
        host.tick_at = None;
        // Pending proposals are forwarded again at every position (a node's gossip repairs
        // what the network lost), so that a proposal held by one member alone is not left
        // waiting for that member's turn to lead.
        let forward = self.hosts[member as usize].byzantine.is_none();
        for payload in self.hosts[member as usize].pool.clone() {
            self.payloads.insert(block_of(index, payload), payload);
            if forward {
                for to in 0..self.quorum.members() {
                    self.send(member, to, Wire::Candidate(payload));
                }
            }
        }
        self.perform(member, index, actions);
        let early = std::mem::take(&mut self.hosts[member as usize].early);
        for (from, message_index, message) in early {
            self.on_agreement(member, from, message_index, message);
        }
    }

    /// Whether every signer of `certificate` signed it (the host's signature check): honest
    /// members only what they voted, Byzantine ones anything.
    fn authentic(&self, index: u64, certificate: &Certificate) -> bool {
        certificate.signers.iter().all(|&signer| {
            self.hosts
                .get(signer as usize)
                .is_some_and(|host| host.byzantine.is_some())
                || self
                    .signed
                    .contains(&(signer, index, certificate.statement))
        })
    }

    fn message_authentic(&self, index: u64, message: &Message) -> bool {
        match message {
            Message::Propose {
                justification: Some(certificate),
                ..
            }
            | Message::Certified(certificate)
            | Message::ViewChange {
                prepared: Some(certificate),
                ..
            } => self.authentic(index, certificate),
            _ => true,
        }
    }

    fn perform(&mut self, member: Member, index: u64, actions: Vec<Action>) {
        for action in actions {
            if self.hosts[member as usize].index != index {
                // Decided and moved on: the rest belonged to the old position.
                if let Action::Broadcast(message) = action {
                    self.broadcast(member, index, &message);
                }
                continue;
            }
            match action {
                Action::Persist(durable) => {
                    for phase in [Phase::Prepare, Phase::Commit] {
                        if let Some((view, block)) = durable.vote(phase) {
                            let statement = Statement { phase, view, block };
                            self.signed.insert((member, index, statement));
                        }
                    }
                    self.hosts[member as usize].durable = *durable;
                }
                Action::Send { to, message } => self.output(member, to, index, message),
                Action::Broadcast(message) => self.broadcast(member, index, &message),
                Action::Decided(certificate) => self.on_decided(member, index, certificate),
            }
        }
        self.reschedule(member);
    }

    fn broadcast(&mut self, member: Member, index: u64, message: &Message) {
        let host = &self.hosts[member as usize];
        if let (Some(Byzantine::Equivocating), Message::Certified(certificate)) =
            (host.byzantine, message)
            && certificate.statement.phase == Phase::Prepare
        {
            // Its own prepare certificate reaches one member only: a lock the next leaders
            // have to learn of.
            let to = self.rng.random_range(0..self.quorum.members());
            self.output(member, to, index, message.clone());
            return;
        }
        if let (Some(Byzantine::Equivocating), Message::Propose { view, block, .. }) =
            (host.byzantine, message)
        {
            // The second proposal: the block of an older certificate it holds (a stale but
            // valid justification), else a block of its own.
            let second = match &host.durable.lock {
                Some(lock) if lock.statement.block != *block => Message::Propose {
                    view: *view,
                    block: lock.statement.block,
                    justification: Some(lock.clone()),
                },
                _ => {
                    let junk = JUNK + self.rng.random_range(0..1_000_000);
                    let other = block_of(index, junk);
                    self.payloads.insert(other, junk);
                    Message::Propose {
                        view: *view,
                        block: other,
                        justification: None,
                    }
                }
            };
            // Each member gets one of the two proposals, or both in either order.
            for to in 0..self.quorum.members() {
                let (a, b) = (message.clone(), second.clone());
                let sent = match self.rng.random_range(0..4) {
                    0 => vec![a],
                    1 => vec![b],
                    2 => vec![a, b],
                    _ => vec![b, a],
                };
                for proposal in sent {
                    self.output(member, to, index, proposal);
                }
            }
            return;
        }
        for to in 0..self.quorum.members() {
            self.output(member, to, index, message.clone());
        }
    }

    /// A member's message leaves it, as its behaviour allows.
    fn output(&mut self, member: Member, to: Member, index: u64, message: Message) {
        let host = &self.hosts[member as usize];
        match host.byzantine {
            Some(Byzantine::Silent) => return,
            Some(Byzantine::HalfRoster) if !host.audience[to as usize] => return,
            _ => {}
        }
        self.send(member, to, Wire::Agreement { index, message });
    }

    fn on_decided(&mut self, member: Member, index: u64, certificate: Certificate) {
        let block = certificate.statement.block;
        let host = &mut self.hosts[member as usize];
        if host.byzantine.is_none() {
            assert!(
                self.payloads.contains_key(&block),
                "seed {}: decided block {block:?} at index {index} was nobody's proposal",
                self.seed
            );
            if let Some(earlier) = self.decided.get(&index) {
                assert_eq!(
                    *earlier, block,
                    "seed {}: two blocks decided at index {index}",
                    self.seed
                );
            }
            self.decided.insert(index, block);
            self.progress = true;
            if let Some(&started) = self.first_started.get(&index)
                && started >= self.heal_at
            {
                if std::env::var_os("AGREEMENT_TRACE").is_some() {
                    eprintln!(
                        "{} decided index {index} in view {}",
                        self.now, certificate.statement.view
                    );
                }
                self.views_after_heal
                    .push((started, certificate.statement.view));
            }
        }
        let host = &mut self.hosts[member as usize];
        host.chain.push(certificate);
        if let Some(payload) = self.payloads.get(&block) {
            host.pool.retain(|pending| pending != payload);
        }
        host.index = index + 1;
        host.durable = Durable::default();
        self.start_machine(member);
    }

    fn reschedule(&mut self, member: Member) {
        let host = &mut self.hosts[member as usize];
        let deadline = host.machine.as_ref().and_then(Agreement::next_deadline);
        if deadline != host.tick_at {
            host.tick_at = deadline;
            if let Some(at) = deadline {
                let at = at.max(self.now);
                self.hosts[member as usize].tick_at = Some(at);
                self.schedule(at, Occurrence::Tick { member, at });
            }
        }
    }

    fn on_agreement(&mut self, member: Member, from: Member, index: u64, message: Message) {
        if !self.message_authentic(index, &message) {
            return;
        }
        let host = &self.hosts[member as usize];
        if host.machine.is_none() {
            return;
        }
        if index < host.index {
            let certificate = host.chain[index as usize].clone();
            let commit =
                matches!(&message, Message::Certified(c) if c.statement.phase == Phase::Commit);
            if !commit && self.answered_old.insert((member, from, index)) {
                self.output(member, from, index, Message::Certified(certificate));
            }
            return;
        }
        if index > host.index {
            let current = host.index;
            let host = &mut self.hosts[member as usize];
            if host.early.len() < 512 {
                host.early.push((from, index, message));
            }
            self.send(member, from, Wire::SyncRequest(current));
            return;
        }
        if self.hosts[member as usize].byzantine == Some(Byzantine::Equivocating) {
            self.equivocate(member, from, index, &message);
        }
        let machine = self.hosts[member as usize]
            .machine
            .as_mut()
            .expect("running");
        if std::env::var_os("AGREEMENT_TRACE").is_some() {
            eprintln!(
                "{} {from}->{member} [{index}] in view {}: {message:?}",
                self.now,
                machine.view()
            );
        }
        let actions = machine.handle(Event::Received { from, message }, self.now);
        self.perform(member, index, actions);
    }

    /// The extra moves of an equivocating member on top of the protocol: vote for every
    /// proposal it sees (also a second one in a view), and certify whatever the votes that
    /// reached Byzantine members allow, showing it to half the roster.
    fn equivocate(&mut self, member: Member, from: Member, index: u64, message: &Message) {
        match message {
            Message::Propose { view, block, .. } => {
                let statement = Statement {
                    phase: Phase::Prepare,
                    view: *view,
                    block: *block,
                };
                self.send(
                    member,
                    from,
                    Wire::Agreement {
                        index,
                        message: Message::Vote(statement),
                    },
                );
                let commit = Statement {
                    phase: Phase::Commit,
                    ..statement
                };
                self.send(
                    member,
                    from,
                    Wire::Agreement {
                        index,
                        message: Message::Vote(commit),
                    },
                );
            }
            Message::Vote(statement) => {
                let byzantine: Vec<Member> = (0..self.quorum.members())
                    .filter(|&m| self.hosts[m as usize].byzantine.is_some())
                    .collect();
                let voters = self
                    .seen_by_byzantine
                    .entry((index, *statement))
                    .or_default();
                voters.insert(from);
                voters.extend(byzantine);
                if voters.len() >= self.quorum.threshold() as usize {
                    let certificate = Certificate {
                        statement: *statement,
                        signers: voters.iter().copied().collect(),
                    };
                    for to in 0..self.quorum.members() {
                        if self.rng.random_bool(0.5) {
                            self.send(
                                member,
                                to,
                                Wire::Agreement {
                                    index,
                                    message: Message::Certified(certificate.clone()),
                                },
                            );
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn deliver(&mut self, from: Member, to: Member, wire: Wire) {
        let host = &mut self.hosts[to as usize];
        if host.machine.is_none() || host.byzantine == Some(Byzantine::Silent) {
            return;
        }
        if host.byzantine == Some(Byzantine::Replaying) {
            if host.replayable.len() < 64 {
                host.replayable.push(wire.clone());
            } else {
                let slot = self.rng.random_range(0..64);
                self.hosts[to as usize].replayable[slot] = wire.clone();
            }
            if self.rng.random_bool(0.3) {
                let host = &self.hosts[to as usize];
                let old = host.replayable[self.rng.random_range(0..host.replayable.len())].clone();
                let target = self.rng.random_range(0..self.quorum.members());
                self.send(to, target, old);
            }
        }
        if self.hosts[to as usize].byzantine == Some(Byzantine::Racing)
            && let Wire::Agreement { index, .. } = &wire
            && self.rng.random_bool(0.2)
        {
            let view = if self.rng.random_bool(0.1) {
                View::MAX
            } else {
                self.rng.random_range(1..100_000)
            };
            let index = *index;
            for target in 0..self.quorum.members() {
                self.send(
                    to,
                    target,
                    Wire::Agreement {
                        index,
                        message: Message::ViewChange {
                            view,
                            prepared: None,
                        },
                    },
                );
            }
        }
        match wire {
            Wire::Agreement { index, message } => self.on_agreement(to, from, index, message),
            Wire::Candidate(payload) => self.add_candidate(to, payload),
            Wire::SyncRequest(start) => {
                let chain = &self.hosts[to as usize].chain;
                let reply: Vec<(u64, Certificate)> = chain
                    .iter()
                    .enumerate()
                    .skip(start as usize)
                    .map(|(index, certificate)| (index as u64, certificate.clone()))
                    .collect();
                if !reply.is_empty() {
                    self.send(to, from, Wire::SyncReply(reply));
                }
            }
            Wire::SyncReply(certificates) => {
                for (index, certificate) in certificates {
                    if index == self.hosts[to as usize].index
                        && certificate.statement.phase == Phase::Commit
                    {
                        self.on_agreement(to, from, index, Message::Certified(certificate));
                    }
                }
            }
        }
    }

    fn add_candidate(&mut self, member: Member, payload: u64) {
        let host = &mut self.hosts[member as usize];
        let logged = host
            .chain
            .iter()
            .any(|c| self.payloads.get(&c.statement.block) == Some(&payload));
        if logged || host.pool.contains(&payload) {
            return;
        }
        host.pool.push(payload);
        let index = host.index;
        let block = block_of(index, payload);
        self.payloads.insert(block, payload);
        if let Some(machine) = self.hosts[member as usize].machine.as_mut() {
            let actions = machine.handle(Event::Candidate(block), self.now);
            self.perform(member, index, actions);
        }
    }

    fn honest(&self) -> impl Iterator<Item = Member> + '_ {
        (0..self.quorum.members()).filter(|&m| self.hosts[m as usize].byzantine.is_none())
    }

    fn everything_logged(&self) -> bool {
        self.honest().all(|member| {
            let host = &self.hosts[member as usize];
            host.machine.is_some()
                && self.honest_payloads.iter().all(|payload| {
                    host.chain
                        .iter()
                        .any(|c| self.payloads.get(&c.statement.block) == Some(payload))
                })
        })
    }

    fn run(&mut self) -> Outcome {
        while let Some(Reverse((at, sequence))) = self.queue.pop() {
            self.now = at;
            self.events += 1;
            assert!(
                self.events < MAX_EVENTS,
                "seed {}: more than {MAX_EVENTS} events (a message storm?)",
                self.seed
            );
            if self.healed() && std::mem::take(&mut self.progress) && self.everything_logged() {
                break;
            }
            if self.now > self.heal_at + LIVENESS_WINDOW_MS {
                break;
            }
            let occurrence = self.occurrences.remove(&sequence).expect("scheduled");
            match occurrence {
                Occurrence::Deliver { from, to, wire } => self.deliver(from, to, wire),
                Occurrence::Tick { member, at } => {
                    let host = &mut self.hosts[member as usize];
                    if host.tick_at == Some(at)
                        && let Some(machine) = host.machine.as_mut()
                    {
                        host.tick_at = None;
                        let index = host.index;
                        if std::env::var_os("AGREEMENT_TRACE").is_some() {
                            eprintln!("{} tick {member} in view {}", self.now, machine.view());
                        }
                        let actions = machine.handle(Event::Tick, self.now);
                        assert!(
                            machine.next_deadline().is_none_or(|next| next > self.now),
                            "seed {}: after a tick at {} the next deadline is not later: {machine:#?}",
                            self.seed,
                            self.now
                        );
                        self.perform(member, index, actions);
                    }
                }
                Occurrence::Crash(member) => {
                    let host = &mut self.hosts[member as usize];
                    host.machine = None;
                    host.early.clear();
                    host.tick_at = None;
                }
                Occurrence::AntiEntropy(member) => {
                    let host = &self.hosts[member as usize];
                    if host.byzantine.is_none() && host.machine.is_some() {
                        let peer = self.rng.random_range(0..self.quorum.members());
                        let index = host.index;
                        let pool = host.pool.clone();
                        self.send(member, peer, Wire::SyncRequest(index));
                        for payload in pool {
                            self.send(member, peer, Wire::Candidate(payload));
                        }
                    }
                    self.schedule(self.now + ANTI_ENTROPY_MS, Occurrence::AntiEntropy(member));
                }
                Occurrence::Restart(member) => {
                    self.progress = true;
                    if self.healed() {
                        self.calm_since = self.calm_since.max(self.now);
                    }
                    self.start_machine(member);
                }
                Occurrence::Submit(payload) => {
                    let running: Vec<Member> = self
                        .honest()
                        .filter(|&m| self.hosts[m as usize].machine.is_some())
                        .collect();
                    if running.is_empty() {
                        self.schedule(self.now + 50, Occurrence::Submit(payload));
                        continue;
                    }
                    let member = running[self.rng.random_range(0..running.len())];
                    self.add_candidate(member, payload);
                    for to in 0..self.quorum.members() {
                        self.send(member, to, Wire::Candidate(payload));
                    }
                }
            }
        }
        self.check_votes();
        let state = (0..self.quorum.members())
            .map(|member| {
                let host = &self.hosts[member as usize];
                let machine = host.machine.as_ref();
                format!(
                    "  member {member} {:?}: index {} view {:?} deadline {:?} pool {:?} chain {:?} durable {:?}\n",
                    host.byzantine,
                    host.index,
                    machine.map(Agreement::view),
                    machine.and_then(Agreement::next_deadline),
                    host.pool,
                    host.chain
                        .iter()
                        .map(|c| self.payloads.get(&c.statement.block).copied().unwrap_or(0) % JUNK)
                        .collect::<Vec<_>>(),
                    host.durable,
                )
            })
            .collect();
        Outcome {
            state,
            logged: self.everything_logged(),
            max_view_after_heal: self
                .views_after_heal
                .iter()
                .filter(|(started, _)| *started >= self.calm_since)
                .map(|(_, view)| *view)
                .max()
                .unwrap_or(0),
            events: self.events,
            now: self.now,
        }
    }

    /// No index where honest commit votes, with every Byzantine member's, certify two blocks.
    fn check_votes(&self) {
        let mut commits: HashMap<(u64, View, Hash), usize> = HashMap::new();
        for (member, index, statement) in &self.signed {
            if statement.phase == Phase::Commit && self.hosts[*member as usize].byzantine.is_none()
            {
                *commits
                    .entry((*index, statement.view, statement.block))
                    .or_default() += 1;
            }
        }
        let mut certifiable: HashMap<u64, BTreeSet<Hash>> = HashMap::new();
        for ((index, _, block), honest) in commits {
            if honest + self.f() >= self.quorum.threshold() as usize {
                certifiable.entry(index).or_default().insert(block);
            }
        }
        for (index, blocks) in certifiable {
            assert!(
                blocks.len() <= 1,
                "seed {}: honest commit votes certify {} blocks at index {index}",
                self.seed,
                blocks.len()
            );
        }
    }
}

struct Outcome {
    /// Each honest member's state at the end, for a failure report.
    state: String,
    logged: bool,
    max_view_after_heal: View,
    events: u64,
    now: u64,
}

/// Most views a position begun after the heal may take: `f` faulty leaders in a row, the view
/// whose leader was still catching up, and one more for a lock its leader had not heard of.
fn view_bound(members: u32) -> View {
    let f = (members - 1) / 3;
    f + 3
}

fn run_schedules(members: u32, schedules: u64) {
    let only: Option<u64> = std::env::var("AGREEMENT_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok());
    if let Ok(n) = std::env::var("AGREEMENT_MEMBERS")
        && n.parse() != Ok(members)
        && only.is_some()
    {
        return;
    }
    // Another range of seeds for longer local runs (`AGREEMENT_ROUND=1`, 2, ...).
    let round: u64 = std::env::var("AGREEMENT_ROUND")
        .ok()
        .and_then(|round| round.parse().ok())
        .unwrap_or(0);
    let seeds: Vec<u64> = match only {
        Some(seed) => vec![seed],
        None => (0..schedules)
            .map(|i| u64::from(members) << 32 | (round * schedules + i))
            .collect(),
    };
    let (mut events, mut worst_view, mut longest) = (0, 0, 0);
    for seed in seeds {
        let mut world = World::new(&Config { members, seed });
        let heal_at = world.heal_at;
        let outcome = world.run();
        assert!(
            outcome.logged,
            "seed {seed} (AGREEMENT_MEMBERS={members} AGREEMENT_SEED={seed}): not every honest proposal was logged within {LIVENESS_WINDOW_MS} ms of the heal at {heal_at} ms (now {}):\n{}",
            outcome.now, outcome.state
        );
        assert!(
            outcome.max_view_after_heal <= view_bound(members),
            "seed {seed} (AGREEMENT_MEMBERS={members} AGREEMENT_SEED={seed}): a position begun after the heal was decided in view {}",
            outcome.max_view_after_heal
        );
        events += outcome.events;
        worst_view = worst_view.max(outcome.max_view_after_heal);
        longest = longest.max(outcome.now - heal_at.min(outcome.now));
    }
    eprintln!(
        "{members} members: {schedules} schedules, {events} events, highest view after a heal {worst_view}, longest time to log everything after the heal {longest} ms"
    );
}

#[test]
fn agreement_simulator_4_members_one_byzantine() {
    run_schedules(4, 16_000);
}

#[test]
fn agreement_simulator_7_members_two_byzantine() {
    run_schedules(7, 15_000);
}

#[test]
fn agreement_simulator_10_members_three_byzantine() {
    run_schedules(10, 14_000);
}
