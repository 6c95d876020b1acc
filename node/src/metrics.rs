//! Prometheus metrics, named and documented in one place.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Every metric the node exports (prefix `chainiac_`).
#[derive(Debug, Default)]
pub struct Metrics {
    registry: Registry,
    /// Blocks this node appended as leader.
    pub blocks_led: Counter,
    /// Blocks stored from gossip or sync.
    pub blocks_received: Counter,
    /// Signing rounds that produced a forward link.
    pub rounds_completed: Counter,
    /// Signing rounds that produced a forward link along an aggregation tree.
    pub rounds_tree: Counter,
    /// Appends that failed for lack of witnesses.
    pub appends_failed: Counter,
    /// Witnesses excluded from a round for a wrong share.
    pub witnesses_excluded: Counter,
    /// Gossip messages accepted and relayed.
    pub gossip_accepted: Counter,
    /// Gossip messages rejected (their sender is penalised).
    pub gossip_rejected: Counter,
    /// New chains from peers not kept: their creator is not admitted here.
    pub chains_not_admitted: Counter,
    /// Blocks from peers not kept: their chain or its creator is over its storage quota.
    pub blocks_over_quota: Counter,
    /// Requests answered.
    pub requests_served: Counter,
    /// Requests refused (invalid, rate-limited, or out of bounds).
    pub requests_refused: Counter,
    /// Connected peers.
    pub peers: Gauge,
    /// Release artifacts fetched from peers and stored.
    pub artifacts_replicated: Counter,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("chainiac"),
            ..Self::default()
        };
        let registry = &mut metrics.registry;
        registry.register(
            "blocks_led",
            "Blocks this node appended as leader",
            metrics.blocks_led.clone(),
        );
        registry.register(
            "blocks_received",
            "Blocks stored from gossip or sync",
            metrics.blocks_received.clone(),
        );
        registry.register(
            "rounds_completed",
            "Signing rounds that produced a forward link",
            metrics.rounds_completed.clone(),
        );
        registry.register(
            "rounds_tree",
            "Signing rounds that produced a forward link along an aggregation tree",
            metrics.rounds_tree.clone(),
        );
        registry.register(
            "appends_failed",
            "Appends that failed for lack of witnesses",
            metrics.appends_failed.clone(),
        );
        registry.register(
            "witnesses_excluded",
            "Witnesses excluded from a round for a wrong share",
            metrics.witnesses_excluded.clone(),
        );
        registry.register(
            "gossip_accepted",
            "Gossip messages accepted and relayed",
            metrics.gossip_accepted.clone(),
        );
        registry.register(
            "gossip_rejected",
            "Gossip messages rejected",
            metrics.gossip_rejected.clone(),
        );
        registry.register(
            "chains_not_admitted",
            "New chains from peers not kept because this node does not admit their creator",
            metrics.chains_not_admitted.clone(),
        );
        registry.register(
            "blocks_over_quota",
            "Blocks from peers not kept because their chain or its creator is over its storage quota",
            metrics.blocks_over_quota.clone(),
        );
        registry.register(
            "requests_served",
            "Requests answered",
            metrics.requests_served.clone(),
        );
        registry.register(
            "requests_refused",
            "Requests refused",
            metrics.requests_refused.clone(),
        );
        registry.register("peers", "Connected peers", metrics.peers.clone());
        registry.register(
            "artifacts_replicated",
            "Release artifacts fetched from peers and stored",
            metrics.artifacts_replicated.clone(),
        );
        metrics
    }

    /// Where the network layer registers its own metrics (gossip messages and bytes sent and
    /// received per topic), under the prefix `chainiac_gossipsub_`.
    pub fn network_registry(&mut self) -> &mut Registry {
        self.registry.sub_registry_with_prefix("gossipsub")
    }

    /// Registers the anchoring metrics (`chainiac_anchor_*`), when anchoring is on.
    pub fn register_anchoring(&mut self, anchor: &crate::anchoring::AnchorMetrics) {
        let registry = self.registry.sub_registry_with_prefix("anchor");
        registry.register("mined", "Timeline anchors mined", anchor.anchored.clone());
        registry.register(
            "spent_gwei",
            "Gwei spent on mined anchors (gas used times effective gas price)",
            anchor.spent_gwei.clone(),
        );
        registry.register(
            "last_cost_gwei",
            "Cost of the last mined anchor, gwei",
            anchor.last_cost_gwei.clone(),
        );
        registry.register(
            "balance_gwei",
            "Balance of the anchoring account, gwei",
            anchor.balance_gwei.clone(),
        );
        registry.register(
            "held_by_fees",
            "Anchors not sent because of the fee ceiling or the daily cap",
            anchor.held_by_fees.clone(),
        );
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
