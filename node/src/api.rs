//! The local HTTP JSON API (status, chains, blocks, rosters, proofs, projects, timeline,
//! anchors, submit) and the Prometheus metrics endpoint. It listens on 127.0.0.1 by default: it
//! can create chains and lead appends. The JSON bodies are `chainiac_api::types`, shared with
//! every client.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use chainiac_api::types::{
    AnchorAccountJson, AnchorProofJson, AppendRequest, ArtifactStored, BlockBatchJson, BlockJson,
    ChainHeadJson, ChainJson, CreateChainRequest, ErrorJson, LinkedBlockJson, ProjectChainJson,
    ProofJson, ReleaseJson, ReleaseListJson, RosterApprovalRequest, RosterChangeJson, RosterJson,
    StatusJson, TimelineAnchorsJson, TimelineChangeJson, TimelineEntryJson, TimelineJson,
    roster_from_json,
};
use chainiac_net::wire::MAX_ANCHORS;
use chainiac_protocol::Hash;
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::keys::PublicKey;
use chainiac_protocol::project::ChainGenesis;
use chainiac_protocol::skipchain::ChainParams;
use serde::Deserialize;

use crate::append::NodeError;
use crate::artifacts::ArtifactError;
use crate::node::NodeCore;
use crate::rounds::AppendError;
use crate::rules::{chain_kind, policy_in_force, release_at, timeline_at};
use crate::store::{ChainHead, StoreError};

type Core = Arc<NodeCore>;

/// Largest artifact accepted by `PUT /artifacts` (256 MiB; larger ones replicate over libp2p).
pub const MAX_UPLOAD: usize = 256 << 20;

/// Who may use the API: read requests are open, writes need the bearer token; every request
/// must name this node by `localhost`, an IP address or a configured host name (a web page
/// reaching 127.0.0.1 through a rebound DNS name names its own host, and is refused).
#[derive(Clone, Debug)]
pub struct Access {
    /// The token writes need.
    pub token: chainiac_api::ApiToken,
    /// Host names accepted besides `localhost` and IP literals.
    pub hosts: Vec<String>,
}

impl Access {
    /// Whether a request naming `host` (the `Host` header, with or without a port) may be
    /// served.
    pub fn allows_host(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            // [v6]:port or [v6]
            Some(rest) => rest.split(']').next().unwrap_or_default(),
            None => host.rsplit_once(':').map_or(host, |(name, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    name
                } else {
                    host
                }
            }),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        name == "localhost"
            || name.parse::<std::net::IpAddr>().is_ok()
            || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(&name))
    }

    /// Whether the `Authorization` header value carries the token.
    pub fn allows_write(&self, authorization: Option<&str>) -> bool {
        authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|token| self.token.matches(token.trim()))
    }
}

async fn guard(
    State(access): State<Arc<Access>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok());
    if !host.is_some_and(|host| access.allows_host(host)) {
        return ApiError(
            StatusCode::FORBIDDEN,
            "requests must name this node by localhost, an IP address, or a host listed in api.hosts".into(),
        )
        .into_response();
    }
    let writes = !matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if writes {
        let authorization = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok());
        if !access.allows_write(authorization) {
            return ApiError(
                StatusCode::UNAUTHORIZED,
                "this request changes the node: send `Authorization: Bearer TOKEN` with the node's API token (its api.token file; the chainiac command takes --api-token FILE)".into(),
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// The API's routes, behind the access guard.
pub fn router(core: Core, access: Access) -> Router {
    routes(core).layer(axum::middleware::from_fn_with_state(
        Arc::new(access),
        guard,
    ))
}

fn routes(core: Core) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/chains", get(chains).post(create_chain))
        .route("/chains/{id}", get(chain))
        .route("/chains/{id}/blocks", get(blocks).post(append))
        .route("/chains/{id}/blocks/{index}", get(block))
        .route("/chains/{id}/releases", get(releases))
        .route("/chains/{id}/proof", get(proof))
        .route("/rosters/{hash}", get(roster))
        .route(
            "/artifacts",
            put(put_artifact).layer(DefaultBodyLimit::max(MAX_UPLOAD)),
        )
        .route("/artifacts/{hash}", get(get_artifact))
        .route("/projects", get(projects))
        .route("/timeline", get(timeline))
        .route("/timeline/{id}/chains/{chain}", get(timeline_entry))
        .route(
            "/timeline/{id}/roster",
            get(roster_changes).post(approve_roster),
        )
        .route("/anchors", get(anchors))
        .route("/metrics", get(metrics))
        .route("/", get(crate::explorer::page))
        .route("/explorer.js", get(crate::explorer::script))
        .route("/explorer.css", get(crate::explorer::style))
        .with_state(core)
}

/// An API error: status code and message.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorJson { error: self.1 })).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let status = match &error {
            StoreError::UnknownChain(_) => StatusCode::NOT_FOUND,
            StoreError::Rejected(_) | StoreError::ChainExists(_) => StatusCode::CONFLICT,
            StoreError::NotAdmitted(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(status, error.to_string())
    }
}

impl From<NodeError> for ApiError {
    fn from(error: NodeError) -> Self {
        match error {
            NodeError::Store(error) | NodeError::Append(AppendError::Store(error)) => error.into(),
            NodeError::Append(error) => Self(StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
            NodeError::Invalid(message) => Self(StatusCode::BAD_REQUEST, message),
        }
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

fn not_found(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, message.into())
}

/// The `count` of a batch request: `default` when absent, refused outside 1 to `max`.
fn requested_count(count: Option<u64>, default: u64, max: u64) -> Result<u64, ApiError> {
    let count = count.unwrap_or(default);
    if count == 0 || count > max {
        return Err(bad_request(format!("count must be between 1 and {max}")));
    }
    Ok(count)
}

/// Runs a heavy read (many store reads, a tree fold) off the async workers, and serialises its
/// answer there too: a batch's JSON can be megabytes.
async fn off_the_workers<T: serde::Serialize + Send + 'static>(
    read: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    let json = tokio::task::spawn_blocking(move || serde_json::to_vec(&read()?).map_err(internal))
        .await
        .map_err(internal)??;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json,
    )
        .into_response())
}

fn parse_hash(what: &str, text: &str) -> Result<Hash, ApiError> {
    Hash::from_hex(text).map_err(|e| bad_request(format!("{what}: {e}")))
}

fn head_json(head: &ChainHead) -> ChainHeadJson {
    ChainHeadJson {
        chain_id: head.chain_id.to_hex(),
        index: head.index,
        head: head.hash.to_hex(),
    }
}

async fn status(State(core): State<Core>) -> Result<Json<StatusJson>, ApiError> {
    let info = core.net().info().await;
    let chains = core.store().chains(1000)?;
    Ok(Json(StatusJson {
        public_key: core.key().to_hex(),
        peer_id: info.peer_id.map(|p| p.to_string()),
        listen: info.listen.iter().map(ToString::to_string).collect(),
        peers: info.peers.iter().map(ToString::to_string).collect(),
        chains: chains.iter().map(head_json).collect(),
    }))
}

async fn chains(State(core): State<Core>) -> Result<Json<Vec<ChainHeadJson>>, ApiError> {
    let heads = core.store().chains(100_000)?;
    Ok(Json(heads.iter().map(head_json).collect()))
}

async fn chain(
    State(core): State<Core>,
    Path(id): Path<String>,
) -> Result<Json<ChainJson>, ApiError> {
    let chain_id = parse_hash("chain id", &id)?;
    let head = core
        .store()
        .head(&chain_id)?
        .ok_or(StoreError::UnknownChain(chain_id))?;
    let block = core
        .store()
        .block(&head.hash)?
        .ok_or(StoreError::UnknownChain(chain_id))?;
    Ok(Json(ChainJson {
        chain_id: chain_id.to_hex(),
        index: head.index,
        head: BlockJson::from(&block),
    }))
}

async fn block(
    State(core): State<Core>,
    Path((id, index)): Path<(String, u64)>,
) -> Result<Json<BlockJson>, ApiError> {
    let chain_id = parse_hash("chain id", &id)?;
    let block = core
        .store()
        .block_at(&chain_id, index)?
        .ok_or_else(|| not_found(format!("chain {chain_id} has no block {index}")))?;
    Ok(Json(BlockJson::from(&block)))
}

/// Most blocks one `GET /chains/{id}/blocks` answers with.
const MAX_BATCH_BLOCKS: u64 = 256;
/// Most bytes of block encodings in one batch (the JSON, in hex, is about twice that); at
/// least one block is always sent.
const MAX_BATCH_BYTES: usize = 4 << 20;

#[derive(Deserialize)]
struct ReleasesQuery {
    before: Option<u64>,
    count: Option<u64>,
}

/// Most releases `GET /chains/{id}/releases` decodes per request.
const MAX_RELEASES_LISTED: u64 = 64;
/// Release encodings one `GET /chains/{id}/releases` decodes at most (past the first release).
const MAX_RELEASE_LIST_BYTES: usize = 1 << 20;

/// The newest releases of a release chain, decoded for people (the explorer); clients verify
/// blocks, not this.
async fn releases(
    State(core): State<Core>,
    Path(id): Path<String>,
    Query(query): Query<ReleasesQuery>,
) -> Result<Response, ApiError> {
    let chain_id = parse_hash("chain id", &id)?;
    let count = requested_count(query.count, 20, MAX_RELEASES_LISTED)?;
    off_the_workers(move || release_list(&core, chain_id, query.before, count)).await
}

fn release_list(
    core: &NodeCore,
    chain_id: Hash,
    before: Option<u64>,
    count: u64,
) -> Result<ReleaseListJson, ApiError> {
    let store = core.store();
    let head = store
        .head(&chain_id)?
        .ok_or(StoreError::UnknownChain(chain_id))?;
    if !matches!(
        chain_kind(store, &chain_id)?,
        Some(ChainGenesis::Release { .. })
    ) {
        return Err(not_found(format!("{chain_id} is not a release chain")));
    }
    let end = before.unwrap_or(u64::MAX).min(head.index.saturating_add(1));
    let mut releases = Vec::new();
    let mut bytes = 0;
    for index in (1..end)
        .rev()
        .take(usize::try_from(count).unwrap_or(usize::MAX))
    {
        let block = store
            .block_at(&chain_id, index)?
            .ok_or_else(|| internal(format!("block {index} of {chain_id} is missing")))?;
        // A release's JSON is a few times its encoding: stop at a byte budget (at least one
        // release is sent), so `count` bounds the work only together with it.
        bytes += block.payload().len();
        if bytes > MAX_RELEASE_LIST_BYTES && !releases.is_empty() {
            break;
        }
        let release =
            chainiac_protocol::release::Release::from_bytes(block.payload()).map_err(|e| {
                internal(format!(
                    "block {index} of {chain_id} holds an invalid release: {e}"
                ))
            })?;
        releases.push(ReleaseJson::from_release(index, &block.hash(), &release));
    }
    Ok(ReleaseListJson {
        chain_id: chain_id.to_hex(),
        head_index: head.index,
        releases,
    })
}

#[derive(Deserialize)]
struct BatchQuery {
    #[serde(default)]
    from: u64,
    count: Option<u64>,
}

/// Consecutive blocks with the level-0 link into each: a client checks each block from the one
/// before without one proof request per pair.
async fn blocks(
    State(core): State<Core>,
    Path(id): Path<String>,
    Query(query): Query<BatchQuery>,
) -> Result<Response, ApiError> {
    let chain_id = parse_hash("chain id", &id)?;
    let count = requested_count(query.count, 64, MAX_BATCH_BLOCKS)?;
    // Up to 256 store reads.
    off_the_workers(move || block_batch(&core, chain_id, query.from, count)).await
}

fn block_batch(
    core: &NodeCore,
    chain_id: Hash,
    from: u64,
    count: u64,
) -> Result<BlockBatchJson, ApiError> {
    let store = core.store();
    let head = store
        .head(&chain_id)?
        .ok_or(StoreError::UnknownChain(chain_id))?;
    let mut blocks = Vec::new();
    let mut bytes = 0;
    if from <= head.index {
        let last = from.saturating_add(count - 1).min(head.index);
        for index in from..=last {
            let linked = store
                .linked_block(&chain_id, index)?
                .ok_or_else(|| internal(format!("block {index} of {chain_id} is missing")))?;
            let encoding = linked.block.to_bytes();
            bytes += encoding.len();
            if bytes > MAX_BATCH_BYTES && !blocks.is_empty() {
                break;
            }
            let link = (index > 0)
                .then(|| linked.links.iter().find(|link| link.level == 0))
                .flatten()
                .map(|link| hex::encode(link.to_bytes()));
            if index > 0 && link.is_none() {
                return Err(internal(format!(
                    "block {index} of {chain_id} is stored without its level-0 link"
                )));
            }
            blocks.push(LinkedBlockJson {
                block: BlockJson::from(&linked.block),
                link,
            });
        }
    }
    Ok(BlockBatchJson {
        chain_id: chain_id.to_hex(),
        from,
        blocks,
    })
}

async fn roster(
    State(core): State<Core>,
    Path(hash): Path<String>,
) -> Result<Json<RosterJson>, ApiError> {
    let hash = parse_hash("roster hash", &hash)?;
    let roster = core
        .store()
        .roster(&hash)?
        .ok_or_else(|| not_found(format!("no roster {hash} is stored here")))?;
    Ok(Json(RosterJson::from(&roster)))
}

#[derive(Deserialize)]
struct ProofQuery {
    #[serde(default)]
    from: u64,
    to: Option<u64>,
}

async fn proof(
    State(core): State<Core>,
    Path(id): Path<String>,
    Query(query): Query<ProofQuery>,
) -> Result<Json<ProofJson>, ApiError> {
    let chain_id = parse_hash("chain id", &id)?;
    let head = core
        .store()
        .head(&chain_id)?
        .ok_or(StoreError::UnknownChain(chain_id))?;
    let to = query.to.unwrap_or(head.index);
    let proof = core.store().skip_proof(&chain_id, query.from, to)?;
    Ok(Json(ProofJson {
        chain_id: chain_id.to_hex(),
        from: query.from,
        to,
        steps: proof.steps.len(),
        encoding: hex::encode(proof.to_bytes()),
    }))
}

async fn create_chain(
    State(core): State<Core>,
    Json(body): Json<CreateChainRequest>,
) -> Result<Json<ChainHeadJson>, ApiError> {
    let roster =
        roster_from_json(&body.roster, body.threshold).map_err(|e| bad_request(e.to_string()))?;
    let params = ChainParams::new(body.base.unwrap_or(2), body.max_height.unwrap_or(32))
        .map_err(|e| bad_request(e.to_string()))?;
    let payload = hex::decode(&body.payload).map_err(|_| bad_request("payload: hex expected"))?;
    let head = core
        .create_chain(
            roster.members().to_vec(),
            Some(roster.threshold() as u32),
            params,
            payload,
        )
        .await?;
    Ok(Json(head_json(&head)))
}

async fn append(
    State(core): State<Core>,
    Path(id): Path<String>,
    Json(body): Json<AppendRequest>,
) -> Result<Json<ChainHeadJson>, ApiError> {
    let chain_id = parse_hash("chain id", &id)?;
    let payload = hex::decode(&body.payload).map_err(|_| bad_request("payload: hex expected"))?;
    let roster = body
        .roster
        .as_deref()
        .map(|members| roster_from_json(members, body.threshold))
        .transpose()
        .map_err(|e| bad_request(e.to_string()))?;
    let head = core.append(chain_id, payload, roster).await?;
    Ok(Json(head_json(&head)))
}

/// The node's operator approves moving a timeline to another roster.
async fn approve_roster(
    State(core): State<Core>,
    Path(id): Path<String>,
    Json(body): Json<RosterApprovalRequest>,
) -> Result<Json<RosterChangeJson>, ApiError> {
    let timeline = parse_hash("timeline id", &id)?;
    let roster =
        roster_from_json(&body.roster, body.threshold).map_err(|e| bad_request(e.to_string()))?;
    let (change, unreached) = core.approve_roster(timeline, roster).await?;
    Ok(Json(RosterChangeJson {
        timeline: timeline.to_hex(),
        roster: change.roster.to_hex(),
        approvals: change.approvals,
        threshold: change.threshold,
        unreached: unreached.iter().map(PublicKey::to_hex).collect(),
    }))
}

/// The moves of a timeline to another roster this node holds approvals for.
async fn roster_changes(
    State(core): State<Core>,
    Path(id): Path<String>,
) -> Result<Json<Vec<RosterChangeJson>>, ApiError> {
    let timeline = parse_hash("timeline id", &id)?;
    let current = crate::rules::timeline_roster(core.store(), &timeline).map_err(not_found)?;
    Ok(Json(
        core.roster_changes()
            .pending(&timeline, &current)
            .into_iter()
            .map(|change| RosterChangeJson {
                timeline: timeline.to_hex(),
                roster: change.roster.to_hex(),
                approvals: change.approvals,
                threshold: change.threshold,
                unreached: Vec::new(),
            })
            .collect(),
    ))
}

async fn metrics(State(core): State<Core>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        core.metrics().render(),
    )
}

async fn put_artifact(
    State(core): State<Core>,
    body: Bytes,
) -> Result<Json<ArtifactStored>, ApiError> {
    let store = core.artifacts().clone();
    let size = body.len();
    let hash = tokio::task::spawn_blocking(move || store.put(&body))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    Ok(Json(ArtifactStored {
        hash: hash.to_hex(),
        size,
    }))
}

async fn get_artifact(
    State(core): State<Core>,
    Path(hash): Path<String>,
) -> Result<Vec<u8>, ApiError> {
    let hash = parse_hash("artifact hash", &hash)?;
    let store = core.artifacts().clone();
    tokio::task::spawn_blocking(move || store.read(&hash))
        .await
        .map_err(internal)?
        .map_err(|e| match e {
            ArtifactError::Missing(_) => not_found(e.to_string()),
            _ => internal(e),
        })
}

/// Every project chain this node holds: policy chains with their policy in force, release
/// chains with their latest release.
async fn projects(State(core): State<Core>) -> Result<Json<Vec<ProjectChainJson>>, ApiError> {
    let store = core.store();
    let mut out = Vec::new();
    for head in store.chains(100_000)? {
        let Some(kind) = chain_kind(store, &head.chain_id)? else {
            continue;
        };
        let mut entry = ProjectChainJson {
            chain_id: head.chain_id.to_hex(),
            project: kind.project().map(str::to_owned),
            index: head.index,
            head: head.hash.to_hex(),
            kind: None,
            developer_threshold: None,
            developers: None,
            attestations_required: None,
            verifiers: None,
            timeline: None,
            policy_chain: None,
            version: None,
            sequence: None,
        };
        match kind {
            ChainGenesis::Timeline { .. } | ChainGenesis::Data(_) => continue,
            ChainGenesis::Policy(_) => {
                entry.kind = Some("policy".into());
                if let Ok((signed, _)) = policy_in_force(store, &head.chain_id) {
                    let policy = signed.policy;
                    entry.developer_threshold = Some(policy.developer_threshold);
                    entry.timeline = policy.timeline.map(|t| t.to_hex());
                    entry.developers = Some(
                        policy
                            .developer_keys
                            .iter()
                            .map(PublicKey::to_hex)
                            .collect(),
                    );
                    entry.attestations_required = Some(policy.attestations_required);
                    entry.verifiers = Some(
                        policy
                            .build_verifiers
                            .iter()
                            .map(PublicKey::to_hex)
                            .collect(),
                    );
                }
            }
            ChainGenesis::Release { policy_chain, .. } => {
                entry.kind = Some("release".into());
                entry.policy_chain = Some(policy_chain.to_hex());
                if let Ok(Some(manifest)) = release_at(store, &head.chain_id, head.index) {
                    entry.version = Some(manifest.version);
                    entry.sequence = Some(manifest.sequence);
                }
            }
        }
        out.push(entry);
    }
    Ok(Json(out))
}

/// Every timeline chain this node holds, with its latest epoch.
async fn timeline(State(core): State<Core>) -> Result<Json<Vec<TimelineJson>>, ApiError> {
    let store = core.store();
    let mut out = Vec::new();
    for head in store.chains(100_000)? {
        let Some(ChainGenesis::Timeline { epoch_seconds, .. }) = chain_kind(store, &head.chain_id)?
        else {
            continue;
        };
        let latest = timeline_at(store, &head.chain_id, head.index).map_err(internal)?;
        out.push(TimelineJson {
            chain_id: head.chain_id.to_hex(),
            epoch_seconds,
            index: head.index,
            head: head.hash.to_hex(),
            epoch: latest.as_ref().map(|t| t.commit.epoch),
            timestamp: latest.as_ref().map(|t| t.commit.timestamp),
            chain_count: latest.as_ref().map(|t| t.commit.chain_count),
            root: latest.as_ref().map(|t| t.commit.root.to_hex()),
            changes: latest.as_ref().map(|t| {
                t.changes
                    .iter()
                    .map(|e| TimelineChangeJson {
                        chain_id: e.chain_id.to_hex(),
                        head: e.head.to_hex(),
                    })
                    .collect()
            }),
        });
    }
    Ok(Json(out))
}

/// The head the newest block of timeline `id` records for `chain`, with its inclusion proof.
#[derive(Deserialize)]
struct TimelineEntryQuery {
    index: Option<u64>,
}

async fn timeline_entry(
    State(core): State<Core>,
    Path((id, chain)): Path<(String, String)>,
    Query(query): Query<TimelineEntryQuery>,
) -> Result<Response, ApiError> {
    let timeline = parse_hash("timeline id", &id)?;
    let chain = parse_hash("chain id", &chain)?;
    // An old block's tree is folded from a checkpoint.
    off_the_workers(move || timeline_entry_of(&core, timeline, query.index, chain)).await
}

fn timeline_entry_of(
    core: &NodeCore,
    timeline: Hash,
    index: Option<u64>,
    chain: Hash,
) -> Result<TimelineEntryJson, ApiError> {
    let store = core.store();
    let head = store
        .head(&timeline)?
        .ok_or_else(|| not_found(format!("no timeline chain {timeline}")))?;
    let genesis = chain_kind(store, &timeline)?;
    if !matches!(genesis, Some(ChainGenesis::Timeline { .. })) {
        return Err(not_found(format!("chain {timeline} is not a timeline")));
    }
    let index = index.unwrap_or(head.index);
    if index > head.index {
        return Err(not_found(format!(
            "timeline {timeline} has no block {index} yet (its head is block {})",
            head.index
        )));
    }
    let block = timeline_at(store, &timeline, index)
        .map_err(internal)?
        .ok_or_else(|| {
            not_found(format!(
                "timeline block {index} has no epoch (the genesis); ask for a later block"
            ))
        })?;
    // The tree is built in memory: only up to the size this node keeps for the creator, as
    // for the same request over p2p.
    core.syncer()
        .admission()
        .admit_timeline_tree(
            genesis.and_then(|genesis| genesis.creator()).as_ref(),
            block.commit.chain_count,
        )
        .map_err(bad_request)?;
    let tree = store.timeline_tree(&timeline, index).map_err(internal)?;
    let (entry, proof) = tree
        .prove(&chain)
        .ok_or_else(|| not_found(format!("chain {chain} is not in timeline block {index}")))?;
    let head_index = store
        .block(&entry.head)?
        .map(|block| block.index())
        .ok_or_else(|| {
            internal(format!(
                "timeline block {index} names head {} of {chain}, which this node does not hold",
                entry.head
            ))
        })?;
    Ok(TimelineEntryJson {
        timeline: timeline.to_hex(),
        index,
        epoch: block.commit.epoch,
        timestamp: block.commit.timestamp,
        root: block.commit.root.to_hex(),
        chain_count: block.commit.chain_count,
        chain_id: entry.chain_id.to_hex(),
        head: entry.head.to_hex(),
        head_index,
        proof: hex::encode(proof.to_bytes()),
    })
}

/// The anchor proofs this node recorded, per timeline, newest first.
async fn anchors(State(core): State<Core>) -> Result<Json<Vec<TimelineAnchorsJson>>, ApiError> {
    let store = core.store();
    let account = core
        .anchoring()
        .and_then(|anchoring| anchoring.account())
        .map(|status| AnchorAccountJson {
            address: status.address,
            balance_wei: status.balance_wei.to_string(),
            spent_today_wei: status.spent_today_wei.to_string(),
            daily_cap_wei: status.daily_cap_wei.to_string(),
            max_fee_per_gas_wei: status.max_fee_per_gas.to_string(),
        });
    let mut out = Vec::new();
    for head in store.chains(100_000)? {
        if !matches!(
            chain_kind(store, &head.chain_id)?,
            Some(ChainGenesis::Timeline { .. })
        ) {
            continue;
        }
        let proofs = store.anchors(&head.chain_id, MAX_ANCHORS)?;
        out.push(TimelineAnchorsJson {
            timeline: head.chain_id.to_hex(),
            anchors: proofs.iter().map(AnchorProofJson::from).collect(),
            account: account.clone(),
        });
    }
    Ok(Json(out))
}
