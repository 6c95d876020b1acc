//! The state machine of one member at one position.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::{
    Action, Certificate, Event, MAX_CANDIDATES, MAX_VIEWS_AHEAD, Member, Message, Phase, Quorum,
    Statement, Timing, View,
};
use crate::Hash;

/// What a member must keep across crashes: the votes it gave (it never contradicts them) and
/// the certificate it is locked on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Durable {
    /// The latest view the member entered (written before it announces it) or voted in.
    pub view: View,
    /// The prepare certificate the member is locked on.
    pub lock: Option<Certificate>,
    /// The last prepare vote: (view, block).
    pub prepared: Option<(View, Hash)>,
    /// The last commit vote: (view, block).
    pub committed: Option<(View, Hash)>,
    /// What this member proposed as the leader of `view`, with its justification, so that a
    /// restarted leader repeats its proposal instead of making another.
    pub proposal: Option<(View, Hash, Option<Certificate>)>,
    /// The commit certificate, once the position is decided.
    pub decided: Option<Certificate>,
}

impl Durable {
    /// The member's last vote of `phase`: (view, block).
    pub fn vote(&self, phase: Phase) -> Option<(View, Hash)> {
        match phase {
            Phase::Prepare => self.prepared,
            Phase::Commit => self.committed,
        }
    }

    /// Whether the member already voted `phase` in `view` or a later view.
    fn voted_since(&self, phase: Phase, view: View) -> bool {
        self.vote(phase).is_some_and(|(voted, _)| voted >= view)
    }
}

/// The leader's collection of votes in its current view.
#[derive(Debug, Default)]
struct Collection {
    prepare: BTreeSet<Member>,
    commit: BTreeSet<Member>,
    prepare_certified: bool,
}

impl Collection {
    fn voters(&mut self, phase: Phase) -> &mut BTreeSet<Member> {
        match phase {
            Phase::Prepare => &mut self.prepare,
            Phase::Commit => &mut self.commit,
        }
    }

    /// The certificate of `statement`, once `threshold` members voted it.
    fn certificate(&self, statement: Statement, threshold: usize) -> Option<Certificate> {
        let voters = match statement.phase {
            Phase::Prepare => &self.prepare,
            Phase::Commit => &self.commit,
        };
        (voters.len() >= threshold).then(|| Certificate {
            statement,
            signers: voters.iter().copied().collect(),
        })
    }
}

/// One member's agreement on one position. See the module documentation.
#[derive(Debug)]
pub struct Agreement {
    quorum: Quorum,
    seed: Hash,
    me: Member,
    timing: Timing,
    durable: Durable,
    view: View,
    /// Whether there is anything to agree on yet (a candidate, its leader's proposal, a valid
    /// certificate, or more than `f` members speaking of it): an idle position runs no timer.
    active: bool,
    view_deadline: Option<u64>,
    /// While the view's clock waits for a threshold of members: when to announce the view
    /// again (announcements may have been lost, or their receivers restarted).
    announce_deadline: Option<u64>,
    /// When a threshold of members were known to be in the current view (the leader's grace
    /// for the others' certificates starts then).
    quorum_in_view_since: Option<u64>,
    candidates: VecDeque<Hash>,
    /// The highest prepare certificate this member saw (at least its lock).
    highest_prepared: Option<Certificate>,
    /// Each member's highest announced view.
    views_of: BTreeMap<Member, View>,
    /// Proposals for views this member has not reached, by view (from their leaders).
    early_proposals: BTreeMap<View, (Hash, Option<Certificate>)>,
    collection: Collection,
    /// The view each member spoke of when it was last sent the commit certificate: a member
    /// is told again when it speaks of a later view (the first answer may have been lost).
    told_decision: BTreeMap<Member, View>,
}

impl Agreement {
    /// A member `me` of a roster shaped `quorum` at the position with `seed`
    /// ([`Quorum::position_seed`]), starting afresh.
    pub fn new(quorum: Quorum, seed: Hash, me: Member, timing: Timing) -> Self {
        Self::restore(quorum, seed, me, timing, Durable::default())
    }

    /// A member restarting from what it persisted; call [`Agreement::resume`] next.
    pub fn restore(
        quorum: Quorum,
        seed: Hash,
        me: Member,
        timing: Timing,
        durable: Durable,
    ) -> Self {
        let voted = [durable.prepared, durable.committed]
            .into_iter()
            .flatten()
            .map(|(view, _)| view);
        let view = voted
            .chain(durable.lock.iter().map(|lock| lock.statement.view))
            .fold(durable.view, View::max);
        let highest_prepared = durable.lock.clone();
        let active = durable != Durable::default();
        Self {
            quorum,
            seed,
            me,
            timing,
            durable,
            view,
            active,
            view_deadline: None,
            announce_deadline: None,
            quorum_in_view_since: None,
            candidates: VecDeque::new(),
            highest_prepared,
            views_of: BTreeMap::new(),
            early_proposals: BTreeMap::new(),
            collection: Collection::default(),
            told_decision: BTreeMap::new(),
        }
    }

    /// After [`Agreement::restore`]: re-enters the view the member was in (telling the others)
    /// and, as its leader, repeats its proposal.
    pub fn resume(&mut self, now: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.active && self.durable.decided.is_none() {
            self.enter_view(self.view, now, &mut actions);
        }
        actions
    }

    /// The view this member is in.
    pub fn view(&self) -> View {
        self.view
    }

    /// The commit certificate, once decided.
    pub fn decided(&self) -> Option<&Certificate> {
        self.durable.decided.as_ref()
    }

    /// The durable state (what the last [`Action::Persist`] carried).
    pub fn durable(&self) -> &Durable {
        &self.durable
    }

    /// When the host must call `handle(Event::Tick, ..)` next, if at all.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.durable.decided.is_some() || !self.active {
            return None;
        }
        let grace = self.waiting_to_propose().then(|| {
            self.quorum_in_view_since
                .map(|since| since.saturating_add(self.timing.proposal_grace(self.view)))
        });
        let announce = self
            .view_deadline
            .is_none()
            .then_some(self.announce_deadline);
        [self.view_deadline, grace.flatten(), announce.flatten()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Handles one event at time `now` (milliseconds of the host's monotonic clock).
    pub fn handle(&mut self, event: Event, now: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Candidate(block) => self.on_candidate(block, now, &mut actions),
            Event::Received { from, message } => {
                if from < self.quorum.members() && from != self.me {
                    self.on_message(from, message, now, &mut actions);
                }
            }
            Event::Tick => self.on_tick(now, &mut actions),
        }
        actions
    }

    fn leader(&self, view: View) -> Member {
        self.quorum.leader(&self.seed, view)
    }

    fn activate(&mut self, now: u64) {
        self.active = true;
        self.arm_timer(now);
    }

    fn on_candidate(&mut self, block: Hash, now: u64, actions: &mut Vec<Action>) {
        if self.durable.decided.is_some() || self.candidates.contains(&block) {
            return;
        }
        if self.candidates.len() >= MAX_CANDIDATES {
            return;
        }
        self.candidates.push_back(block);
        self.activate(now);
        self.try_propose(now, actions);
    }

    fn on_tick(&mut self, now: u64, actions: &mut Vec<Action>) {
        if self.durable.decided.is_some() || !self.active {
            return;
        }
        if self.view_deadline.is_some_and(|deadline| now >= deadline) {
            self.enter_view(self.view.saturating_add(1), now, actions);
        } else if self.view_deadline.is_none()
            && self
                .announce_deadline
                .is_some_and(|deadline| now >= deadline)
        {
            self.announce(now, actions);
        } else {
            self.try_propose(now, actions);
        }
    }

    fn on_message(&mut self, from: Member, message: Message, now: u64, actions: &mut Vec<Action>) {
        if let Some(decision) = &self.durable.decided {
            // A member still working on a decided position learns the decision, once per view
            // it speaks of.
            let view = message.view();
            if self
                .told_decision
                .get(&from)
                .is_none_or(|told| view > *told)
            {
                self.told_decision.insert(from, view);
                actions.push(Action::Send {
                    to: from,
                    message: Message::Certified(decision.clone()),
                });
            }
            return;
        }
        match message {
            Message::Propose {
                view,
                block,
                justification,
            } => self.on_proposal(from, view, block, justification, now, actions),
            Message::Vote(statement) => self.on_vote(from, statement, now, actions),
            Message::Certified(certificate) => self.on_certificate(certificate, now, actions),
            Message::ViewChange { view, prepared } => {
                self.on_view_change(from, view, prepared.as_ref(), now, actions);
            }
        }
    }

    /// A prepare certificate is usable as evidence if it certifies and names its block.
    fn valid_prepare(&self, certificate: &Certificate) -> bool {
        certificate.statement.phase == Phase::Prepare && self.quorum.certifies(certificate)
    }

    /// Learns a prepare certificate; one from a later view also moves this member there (it
    /// shows that members holding a threshold of votes were in that view).
    fn learn_and_follow(&mut self, certificate: &Certificate, now: u64, actions: &mut Vec<Action>) {
        self.learn_prepared(certificate);
        if certificate.statement.view > self.view {
            // Evidence of a running position: it wakes this member up too.
            self.activate(now);
            self.enter_view(certificate.statement.view, now, actions);
        }
    }

    fn learn_prepared(&mut self, certificate: &Certificate) {
        let higher = self
            .highest_prepared
            .as_ref()
            .is_none_or(|known| certificate.statement.view > known.statement.view);
        if higher {
            self.highest_prepared = Some(certificate.clone());
        }
    }

    fn on_proposal(
        &mut self,
        from: Member,
        view: View,
        block: Hash,
        justification: Option<Certificate>,
        now: u64,
        actions: &mut Vec<Action>,
    ) {
        if from != self.leader(view) || view < self.view {
            return;
        }
        self.activate(now);
        if let Some(certificate) = &justification {
            let fits = self.valid_prepare(certificate)
                && certificate.statement.block == block
                && certificate.statement.view < view;
            if !fits {
                return;
            }
            self.learn_and_follow(certificate, now, actions);
        }
        if view > self.view {
            if view - self.view <= MAX_VIEWS_AHEAD {
                self.early_proposals.insert(view, (block, justification));
            }
            return;
        }
        self.vote_prepare(block, justification.as_ref(), actions);
    }

    /// Votes for the current view's proposal if the vote contradicts neither an earlier vote
    /// of this view nor the lock.
    fn vote_prepare(
        &mut self,
        block: Hash,
        justification: Option<&Certificate>,
        actions: &mut Vec<Action>,
    ) {
        let view = self.view;
        if self.durable.voted_since(Phase::Prepare, view) {
            return;
        }
        let allowed = match &self.durable.lock {
            None => true,
            Some(lock) if lock.statement.block == block => true,
            Some(lock) => justification.is_some_and(|j| j.statement.view >= lock.statement.view),
        };
        if !allowed {
            // Show the leader the lock: its next proposal (or the next leader's) can carry it.
            if let Some(lock) = &self.durable.lock {
                actions.push(Action::Send {
                    to: self.leader(view),
                    message: Message::Certified(lock.clone()),
                });
            }
            return;
        }
        self.durable.view = view;
        self.durable.prepared = Some((view, block));
        actions.push(Action::Persist(Box::new(self.durable.clone())));
        self.cast(
            Statement {
                phase: Phase::Prepare,
                view,
                block,
            },
            actions,
        );
    }

    /// Gives a vote (already persisted) to the view's leader: counted at once when this member
    /// leads.
    fn cast(&mut self, statement: Statement, actions: &mut Vec<Action>) {
        let leader = self.leader(statement.view);
        if leader == self.me {
            self.collection.voters(statement.phase).insert(self.me);
        } else {
            actions.push(Action::Send {
                to: leader,
                message: Message::Vote(statement),
            });
        }
    }

    fn on_vote(&mut self, from: Member, statement: Statement, now: u64, actions: &mut Vec<Action>) {
        if statement.view != self.view || self.leader(self.view) != self.me {
            return;
        }
        let Some((proposed_view, block, _)) = &self.durable.proposal else {
            return;
        };
        if *proposed_view != self.view || *block != statement.block {
            return;
        }
        self.collection.voters(statement.phase).insert(from);
        self.certify(now, actions);
    }

    /// Forms the certificates the leader's collection allows.
    fn certify(&mut self, now: u64, actions: &mut Vec<Action>) {
        let Some((view, block, _)) = self.durable.proposal.clone() else {
            return;
        };
        if view != self.view {
            return;
        }
        let threshold = self.quorum.threshold() as usize;
        let statement = |phase| Statement { phase, view, block };
        if !self.collection.prepare_certified
            && let Some(prepared) = self
                .collection
                .certificate(statement(Phase::Prepare), threshold)
        {
            self.collection.prepare_certified = true;
            actions.push(Action::Broadcast(Message::Certified(prepared.clone())));
            self.on_certificate(prepared, now, actions);
        }
        if self.durable.decided.is_none()
            && let Some(committed) = self
                .collection
                .certificate(statement(Phase::Commit), threshold)
        {
            actions.push(Action::Broadcast(Message::Certified(committed.clone())));
            self.decide(committed, actions);
        }
    }

    fn decide(&mut self, certificate: Certificate, actions: &mut Vec<Action>) {
        self.durable.decided = Some(certificate.clone());
        self.view_deadline = None;
        actions.push(Action::Persist(Box::new(self.durable.clone())));
        actions.push(Action::Decided(certificate));
    }

    fn on_certificate(&mut self, certificate: Certificate, now: u64, actions: &mut Vec<Action>) {
        if !self.quorum.certifies(&certificate) || self.durable.decided.is_some() {
            return;
        }
        self.activate(now);
        let Statement { phase, view, block } = certificate.statement;
        if phase == Phase::Commit {
            self.decide(certificate, actions);
            return;
        }
        self.learn_and_follow(&certificate, now, actions);
        if view != self.view || self.durable.voted_since(Phase::Commit, view) {
            return;
        }
        self.durable.view = view;
        self.durable.lock = Some(certificate);
        self.durable.committed = Some((view, block));
        actions.push(Action::Persist(Box::new(self.durable.clone())));
        self.cast(
            Statement {
                phase: Phase::Commit,
                view,
                block,
            },
            actions,
        );
        self.certify(now, actions);
    }

    fn on_view_change(
        &mut self,
        from: Member,
        view: View,
        prepared: Option<&Certificate>,
        now: u64,
        actions: &mut Vec<Action>,
    ) {
        if let Some(certificate) = prepared {
            if !self.valid_prepare(certificate) || certificate.statement.view > view {
                return;
            }
            self.learn_and_follow(certificate, now, actions);
        }
        let known = self.views_of.entry(from).or_insert(view);
        *known = (*known).max(view);
        // A position wakes up when more members speak of it than can be faulty: one faulty
        // member alone cannot set a whole roster changing views on a position with nothing to
        // decide.
        if self.views_of.len() > self.quorum.faults_tolerated() as usize {
            self.activate(now);
        }
        // Follow the others once more members are ahead than can be faulty: at least one
        // honest member timed out there.
        let mut ahead: Vec<View> = self.views_of.values().copied().collect();
        ahead.sort_unstable_by(|a, b| b.cmp(a));
        let witnesses = self.quorum.faults_tolerated() as usize + 1;
        if let Some(&target) = ahead.get(witnesses - 1)
            && target > self.view
        {
            self.enter_view(target, now, actions);
            return;
        }
        self.arm_timer(now);
        self.try_propose(now, actions);
    }

    /// Members known to be in the current view or beyond, this member included (everyone is
    /// in view 0).
    fn members_in_view(&self) -> usize {
        if self.view == 0 {
            return self.quorum.members() as usize;
        }
        1 + self
            .views_of
            .iter()
            .filter(|&(&member, &view)| member != self.me && view >= self.view)
            .count()
    }

    /// Starts the view's clock once a threshold of members is known to be in it. A member that
    /// ran ahead alone waits for the others instead of timing out view after view on its own,
    /// which would keep it a view ahead of every proposal.
    fn arm_timer(&mut self, now: u64) {
        if !self.active
            || self.view_deadline.is_some()
            || self.durable.decided.is_some()
            || self.members_in_view() < self.quorum.threshold() as usize
        {
            return;
        }
        let since = *self.quorum_in_view_since.get_or_insert(now);
        self.view_deadline = Some(since.saturating_add(self.timing.view_timeout(self.view)));
    }

    fn enter_view(&mut self, view: View, now: u64, actions: &mut Vec<Action>) {
        self.view = view;
        self.view_deadline = None;
        self.collection = Collection::default();
        self.quorum_in_view_since = None;
        self.announce_deadline = None;
        if view > 0 {
            // Written before it is announced: a restarted member comes back to a view at least
            // as late as the one the others count it in.
            self.durable.view = view;
            actions.push(Action::Persist(Box::new(self.durable.clone())));
            self.announce(now, actions);
        }
        self.arm_timer(now);
        self.early_proposals = self.early_proposals.split_off(&view);
        if let Some((block, justification)) = self.early_proposals.remove(&view) {
            self.vote_prepare(block, justification.as_ref(), actions);
        }
        self.try_propose(now, actions);
    }

    /// Tells every member this member is in the current view, with its highest certificate.
    fn announce(&mut self, now: u64, actions: &mut Vec<Action>) {
        self.announce_deadline = Some(now.saturating_add(self.timing.view_timeout(self.view)));
        actions.push(Action::Broadcast(Message::ViewChange {
            view: self.view,
            prepared: self.highest_prepared.clone(),
        }));
    }

    /// Whether this member leads the current view, has not proposed in it yet, and has
    /// something it could propose.
    fn waiting_to_propose(&self) -> bool {
        self.active
            && self.durable.decided.is_none()
            && self.leader(self.view) == self.me
            && self
                .durable
                .proposal
                .as_ref()
                .is_none_or(|(view, _, _)| *view != self.view)
            && self.proposal_choice().is_some()
    }

    /// When the leader of the current view may propose: once a threshold of members entered the
    /// view, at once if every member did (as in view 0), else after the grace for the others'
    /// certificates.
    fn proposal_due(&self) -> Option<u64> {
        let since = self.quorum_in_view_since?;
        if self.members_in_view() >= self.quorum.members() as usize {
            Some(since)
        } else {
            Some(since.saturating_add(self.timing.proposal_grace(self.view)))
        }
    }

    /// What the leader of the current view proposes: the block of the highest prepare
    /// certificate it knows (which every honest lock allows), else its oldest candidate.
    fn proposal_choice(&self) -> Option<(Hash, Option<Certificate>)> {
        match &self.highest_prepared {
            // A certificate of this view or a later one cannot justify a proposal of this view
            // (and this member leaves for its view as soon as it learns of it).
            Some(certificate) if certificate.statement.view >= self.view => None,
            Some(certificate) => Some((certificate.statement.block, Some(certificate.clone()))),
            None => self.candidates.front().map(|block| (*block, None)),
        }
    }

    /// As the leader of the current view, proposes once it may ([`Self::proposal_due`]).
    fn try_propose(&mut self, now: u64, actions: &mut Vec<Action>) {
        if self.durable.decided.is_some() || self.leader(self.view) != self.me {
            return;
        }
        if let Some((view, block, justification)) = self.durable.proposal.clone()
            && view == self.view
        {
            // A restarted leader repeats what it proposed (its votes already count it).
            if self.collection.prepare.is_empty() && self.durable.prepared == Some((view, block)) {
                self.collection.prepare.insert(self.me);
                if self.durable.committed == Some((view, block)) {
                    self.collection.commit.insert(self.me);
                }
                actions.push(Action::Broadcast(Message::Propose {
                    view,
                    block,
                    justification,
                }));
            }
            return;
        }
        if self.proposal_due().is_none_or(|due| now < due) {
            return;
        }
        let Some((block, justification)) = self.proposal_choice() else {
            return;
        };
        let view = self.view;
        self.durable.proposal = Some((view, block, justification.clone()));
        self.vote_prepare(block, justification.as_ref(), actions);
        if self.durable.prepared != Some((view, block)) {
            // Cannot happen: the highest certificate is at least the lock. Propose nothing
            // rather than a block this member would not vote for, and wait for the view to
            // time out (no grace deadline left to spin on).
            self.durable.proposal = None;
            self.quorum_in_view_since = None;
            return;
        }
        actions.push(Action::Broadcast(Message::Propose {
            view,
            block,
            justification,
        }));
        self.certify(now, actions);
    }
}
