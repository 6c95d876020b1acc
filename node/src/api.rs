//! The local HTTP JSON API (status, chains, blocks, heads, proofs, submit) and the Prometheus
//! metrics endpoint. It listens on 127.0.0.1 by default: it can create chains and lead appends.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chainiac_protocol::Hash;
use chainiac_protocol::cosi::{Roster, RosterMember};
use chainiac_protocol::encoding::Encode;
use chainiac_protocol::keys::{ProofOfPossession, PublicKey, Signature};
use chainiac_protocol::skipchain::{ChainParams, SkipBlock};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::artifacts::ArtifactError;
use crate::leader::AppendError;
use crate::node::{NodeCore, NodeError};
use crate::rules::{chain_kind, policy_in_force, release_at, timeline_at};
use crate::store::StoreError;
use chainiac_protocol::project::ChainGenesis;

type Core = Arc<NodeCore>;

/// Largest artifact accepted by `PUT /artifacts` (256 MiB; larger ones replicate over libp2p).
pub const MAX_UPLOAD: usize = 256 << 20;

/// The API's routes.
pub fn router(core: Core) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/chains", get(chains).post(create_chain))
        .route("/chains/{id}", get(chain))
        .route("/chains/{id}/blocks", axum::routing::post(append))
        .route("/chains/{id}/blocks/{index}", get(block))
        .route("/chains/{id}/proof", get(proof))
        .route(
            "/artifacts",
            axum::routing::put(put_artifact).layer(DefaultBodyLimit::max(MAX_UPLOAD)),
        )
        .route("/artifacts/{hash}", get(get_artifact))
        .route("/projects", get(projects))
        .route("/timeline", get(timeline))
        .route("/timeline/{id}/chains/{chain}", get(timeline_entry))
        .route("/anchors", get(anchors))
        .route("/metrics", get(metrics))
        .with_state(core)
}

/// An API error: status code and message.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let status = match &error {
            StoreError::UnknownChain(_) => StatusCode::NOT_FOUND,
            StoreError::Rejected(_) | StoreError::ChainExists(_) => StatusCode::CONFLICT,
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

fn parse_hash(text: &str) -> Result<Hash, ApiError> {
    Hash::from_hex(text).map_err(|e| bad_request(format!("chain id: {e}")))
}

fn block_json(block: &SkipBlock) -> Value {
    json!({
        "chain_id": block.chain_id().to_hex(),
        "index": block.index(),
        "height": block.height(),
        "hash": block.hash().to_hex(),
        "roster_hash": block.roster().hash().to_hex(),
        "payload": hex::encode(block.payload()),
        "encoding": hex::encode(block.to_bytes()),
    })
}

async fn status(State(core): State<Core>) -> Result<Json<Value>, ApiError> {
    let info = core.net.info().await;
    let chains = core.store.chains(1000)?;
    Ok(Json(json!({
        "public_key": core.key().to_hex(),
        "peer_id": info.peer_id.map(|p| p.to_string()),
        "listen": info.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "peers": info.peers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "chains": chains.iter().map(|h| json!({"chain_id": h.chain_id.to_hex(), "index": h.index, "head": h.hash.to_hex()})).collect::<Vec<_>>(),
    })))
}

async fn chains(State(core): State<Core>) -> Result<Json<Value>, ApiError> {
    let heads = core.store.chains(100_000)?;
    Ok(Json(json!(heads.iter().map(|h| json!({"chain_id": h.chain_id.to_hex(), "index": h.index, "head": h.hash.to_hex()})).collect::<Vec<_>>())))
}

async fn chain(State(core): State<Core>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let chain_id = parse_hash(&id)?;
    let head = core
        .store
        .head(&chain_id)?
        .ok_or(StoreError::UnknownChain(chain_id))?;
    let block = core
        .store
        .block(&head.hash)?
        .ok_or(StoreError::UnknownChain(chain_id))?;
    Ok(Json(
        json!({"chain_id": chain_id.to_hex(), "index": head.index, "head": block_json(&block)}),
    ))
}

async fn block(
    State(core): State<Core>,
    Path((id, index)): Path<(String, u64)>,
) -> Result<Json<Value>, ApiError> {
    let chain_id = parse_hash(&id)?;
    let block = core.store.block_at(&chain_id, index)?.ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("chain {chain_id} has no block {index}"),
        )
    })?;
    Ok(Json(block_json(&block)))
}

#[derive(Deserialize)]
struct ProofQuery {
    from: u64,
    to: Option<u64>,
}

async fn proof(
    State(core): State<Core>,
    Path(id): Path<String>,
    Query(query): Query<ProofQuery>,
) -> Result<Json<Value>, ApiError> {
    let chain_id = parse_hash(&id)?;
    let head = core
        .store
        .head(&chain_id)?
        .ok_or(StoreError::UnknownChain(chain_id))?;
    let to = query.to.unwrap_or(head.index);
    let proof = core.store.skip_proof(&chain_id, query.from, to)?;
    Ok(Json(
        json!({"chain_id": chain_id.to_hex(), "from": query.from, "to": to, "steps": proof.steps.len(), "encoding": hex::encode(proof.to_bytes())}),
    ))
}

/// A roster entry as `node init` writes it to `node.pub.json`.
#[derive(Deserialize)]
struct MemberJson {
    public_key: String,
    proof_of_possession: String,
}

fn parse_roster(members: &[MemberJson], threshold: Option<u32>) -> Result<Roster, ApiError> {
    let members = members
        .iter()
        .map(|m| {
            let key = PublicKey::from_hex(&m.public_key).map_err(|e| bad_request(e.to_string()))?;
            let mut pop = [0u8; 64];
            hex::decode_to_slice(&m.proof_of_possession, &mut pop)
                .map_err(|_| bad_request("proof_of_possession: 128 hex characters expected"))?;
            Ok(RosterMember {
                key,
                possession: ProofOfPossession(Signature(pop)),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    match threshold {
        Some(t) => Roster::new(members, t),
        None => Roster::with_default_threshold(members),
    }
    .map_err(|e| bad_request(e.to_string()))
}

#[derive(Deserialize)]
struct CreateChain {
    roster: Vec<MemberJson>,
    threshold: Option<u32>,
    base: Option<u32>,
    max_height: Option<u32>,
    #[serde(default)]
    payload: String,
}

async fn create_chain(
    State(core): State<Core>,
    Json(body): Json<CreateChain>,
) -> Result<Json<Value>, ApiError> {
    let roster = parse_roster(&body.roster, body.threshold)?;
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
    Ok(Json(
        json!({"chain_id": head.chain_id.to_hex(), "index": head.index, "head": head.hash.to_hex()}),
    ))
}

#[derive(Deserialize)]
struct Append {
    #[serde(default)]
    payload: String,
    roster: Option<Vec<MemberJson>>,
    threshold: Option<u32>,
}

async fn append(
    State(core): State<Core>,
    Path(id): Path<String>,
    Json(body): Json<Append>,
) -> Result<Json<Value>, ApiError> {
    let chain_id = parse_hash(&id)?;
    let payload = hex::decode(&body.payload).map_err(|_| bad_request("payload: hex expected"))?;
    let roster = body
        .roster
        .as_deref()
        .map(|members| parse_roster(members, body.threshold))
        .transpose()?;
    let head = core.append(chain_id, payload, roster).await?;
    Ok(Json(
        json!({"chain_id": head.chain_id.to_hex(), "index": head.index, "head": head.hash.to_hex()}),
    ))
}

async fn metrics(State(core): State<Core>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        core.metrics.render(),
    )
}

async fn put_artifact(State(core): State<Core>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let store = core.artifacts.clone();
    let size = body.len();
    let hash = tokio::task::spawn_blocking(move || store.put(&body))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json!({"hash": hash.to_hex(), "size": size})))
}

async fn get_artifact(
    State(core): State<Core>,
    Path(hash): Path<String>,
) -> Result<Vec<u8>, ApiError> {
    let hash = Hash::from_hex(&hash).map_err(|e| bad_request(format!("artifact hash: {e}")))?;
    let store = core.artifacts.clone();
    tokio::task::spawn_blocking(move || store.read(&hash))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| match e {
            ArtifactError::Missing(_) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            _ => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        })
}

/// Every project chain this node holds: policy chains with their policy in force, release
/// chains with their latest release.
async fn projects(State(core): State<Core>) -> Result<Json<Value>, ApiError> {
    let heads = core.store.chains(100_000)?;
    let mut out = Vec::new();
    for head in heads {
        let Some(kind) = chain_kind(&core.store, &head.chain_id)? else {
            continue;
        };
        if matches!(kind, ChainGenesis::Timeline { .. }) {
            continue;
        }
        let mut entry = json!({
            "chain_id": head.chain_id.to_hex(),
            "project": kind.project(),
            "index": head.index,
            "head": head.hash.to_hex(),
        });
        match kind {
            ChainGenesis::Policy(_) => {
                entry["kind"] = json!("policy");
                if let Ok((policy, _)) = policy_in_force(&core.store, &head.chain_id) {
                    entry["developer_threshold"] = json!(policy.policy.developer_threshold);
                    entry["developers"] = json!(
                        policy
                            .policy
                            .developer_keys
                            .iter()
                            .map(PublicKey::to_hex)
                            .collect::<Vec<_>>()
                    );
                    entry["attestations_required"] = json!(policy.policy.attestations_required);
                }
            }
            ChainGenesis::Timeline { .. } => {}
            ChainGenesis::Release { policy_chain, .. } => {
                entry["kind"] = json!("release");
                entry["policy_chain"] = json!(policy_chain.to_hex());
                if let Ok(Some(manifest)) = release_at(&core.store, &head.chain_id, head.index) {
                    entry["version"] = json!(manifest.version);
                    entry["sequence"] = json!(manifest.sequence);
                }
            }
        }
        out.push(entry);
    }
    Ok(Json(json!(out)))
}

/// Every timeline chain this node holds, with its latest epoch.
async fn timeline(State(core): State<Core>) -> Result<Json<Value>, ApiError> {
    let heads = core.store.chains(100_000)?;
    let mut out = Vec::new();
    for head in heads {
        let Some(ChainGenesis::Timeline { epoch_seconds }) =
            chain_kind(&core.store, &head.chain_id)?
        else {
            continue;
        };
        let latest = timeline_at(&core.store, &head.chain_id, head.index)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        out.push(json!({
            "chain_id": head.chain_id.to_hex(),
            "epoch_seconds": epoch_seconds,
            "index": head.index,
            "head": head.hash.to_hex(),
            "epoch": latest.as_ref().map(|t| t.commit.epoch),
            "timestamp": latest.as_ref().map(|t| t.commit.timestamp),
            "chain_count": latest.as_ref().map(|t| t.commit.chain_count),
            "root": latest.as_ref().map(|t| t.commit.root.to_hex()),
            "changes": latest.as_ref().map(|t| t.changes.iter().map(|e| json!({"chain_id": e.chain_id.to_hex(), "head": e.head.to_hex()})).collect::<Vec<_>>()),
        }));
    }
    Ok(Json(json!(out)))
}

/// The head the newest block of timeline `id` records for `chain`, with its inclusion proof.
async fn timeline_entry(
    State(core): State<Core>,
    Path((id, chain)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let timeline = parse_hash(&id)?;
    let chain = parse_hash(&chain)?;
    let head = core.store.head(&timeline)?.ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no timeline chain {timeline}"),
        )
    })?;
    let latest = timeline_at(&core.store, &timeline, head.index)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                "the timeline has no epoch yet; wait for its first block".into(),
            )
        })?;
    let tree = core
        .store
        .timeline_tree(&timeline, head.index)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let (entry, proof) = tree.prove(&chain).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("chain {chain} is not in timeline block {}", head.index),
        )
    })?;
    Ok(Json(json!({
        "timeline": timeline.to_hex(),
        "index": head.index,
        "epoch": latest.commit.epoch,
        "timestamp": latest.commit.timestamp,
        "root": latest.commit.root.to_hex(),
        "chain_count": latest.commit.chain_count,
        "chain_id": entry.chain_id.to_hex(),
        "head": entry.head.to_hex(),
        "proof": hex::encode(proof.to_bytes()),
    })))
}

/// The anchor proofs this node recorded, per timeline, newest first.
async fn anchors(State(core): State<Core>) -> Result<Json<Value>, ApiError> {
    let heads = core.store.chains(100_000)?;
    let mut out = Vec::new();
    for head in heads {
        if !matches!(
            chain_kind(&core.store, &head.chain_id)?,
            Some(ChainGenesis::Timeline { .. })
        ) {
            continue;
        }
        let proofs = core
            .store
            .anchors(&head.chain_id, crate::wire::MAX_ANCHORS)?;
        out.push(json!({"timeline": head.chain_id.to_hex(), "anchors": proofs}));
    }
    Ok(Json(json!(out)))
}
