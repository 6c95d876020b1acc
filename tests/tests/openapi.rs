//! docs/openapi.json is checked against the node that serves the API: every route the router
//! registers is documented (and nothing else is), and every documented operation, called on a
//! live 4-node testnet holding a project, a release, a timeline and a data chain, answers with
//! the documented shape.
#![allow(clippy::expect_used)]

use std::collections::BTreeSet;

use chainiac_api::types::members_json;
use chainiac_protocol::Hash;
use chainiac_tests::schema::check;
use chainiac_tests::{Cluster, DataChain, Project, TestResult, http, http_with_token, wait_for};
use serde_json::{Value, json};

const DOCUMENT: &str = include_str!("../../docs/openapi.json");
const API_SOURCE: &str = include_str!("../../node/src/api.rs");

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("docs/openapi.json is JSON")
}

/// `(METHOD, path)` of every operation the document describes.
fn documented(document: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// `(METHOD, path)` of every route `node/src/api.rs` registers, read from its `routes`
/// function (each `.route("PATH", get(..).post(..))`).
fn served() -> BTreeSet<(String, String)> {
    let start = API_SOURCE.find("fn routes(").expect("fn routes in api.rs");
    let body = &API_SOURCE[start..];
    let end = body
        .find(".with_state(")
        .expect("routes end with .with_state");
    let method = regex::Regex::new(r"\b(get|post|put|delete|patch)\(").expect("regex");
    let mut out = BTreeSet::new();
    for chunk in body[..end].split(".route(").skip(1) {
        let path = chunk.split('"').nth(1).expect("a route path literal");
        for found in method.captures_iter(chunk) {
            out.insert((found[1].to_uppercase(), path.to_owned()));
        }
    }
    out
}

#[test]
fn every_route_the_node_serves_is_documented_and_nothing_else() {
    let document = document();
    let documented = documented(&document);
    let served = served();
    assert!(served.len() >= 18, "the route scan found {served:?}");
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "routes served but not in docs/openapi.json: {undocumented:?}; documented but not served: {unserved:?}"
    );
    assert_eq!(document["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
}

/// The documented schema of `METHOD path`'s answer with `status` and `content`.
const DASHBOARD: &str = include_str!("../../node/deploy/grafana-dashboard.json");

/// The metric families the Grafana dashboard (node/deploy/grafana-dashboard.json) queries that
/// `metrics` (a /metrics answer) does not export: a renamed metric would otherwise leave an
/// operator's panel silently empty.
fn dashboard_families_missing_from(metrics: &str) -> Vec<String> {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let name = regex::Regex::new(r"\bchainiac_[a-z_]+").expect("regex");
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        assert!(panel["title"].is_string(), "{panel}");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for found in name.find_iter(expr) {
                // Counters are exported as FAMILY_total; `# TYPE` names the family.
                let family = found.as_str().trim_end_matches("_total");
                queried.insert(family.to_owned());
            }
        }
    }
    assert!(queried.len() >= 14, "{queried:?}");
    queried
        .into_iter()
        .filter(|family| !metrics.contains(&format!("# TYPE {family} ")))
        .collect()
}

fn answer_schema(document: &Value, method: &str, path: &str, status: &str) -> Value {
    document["paths"][path][method.to_lowercase()]["responses"][status]["content"]
        ["application/json"]["schema"]
        .clone()
}

fn assert_shape(document: &Value, method: &str, path: &str, status: u16, answer: &Value) {
    let schema = answer_schema(document, method, path, &status.to_string());
    assert!(
        !schema.is_null(),
        "{method} {path} answered {status}, which the document does not describe: {answer}"
    );
    let errors = check(document, &schema, answer);
    assert!(
        errors.is_empty(),
        "{method} {path} ({status}) does not match docs/openapi.json: {errors:#?}\nanswer: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_documented_route_answers_with_the_documented_shape() -> TestResult {
    let document = document();
    let cluster = Cluster::start(4, &[]).await?;
    let leader = cluster.core(0);
    let roster = cluster.roster(&[0, 1, 2, 3])?;
    let timeline = cluster.create_timeline(0, &[0, 1, 2, 3], 1).await?;
    let project = Project::create_on_timeline(&leader, "described", &roster, timeline).await?;
    let release = project.next_release("1.0.0");
    let artifact = release.files[0].0.hash;
    release
        .publish(&leader, project.release_chain, None)
        .await?;
    let release_chain = project.release_chain;
    wait_for("the timeline to commit to the release", || async {
        let store = leader.store().clone();
        let Ok(Some(head)) = store.head(&timeline) else {
            return false;
        };
        // The release's block (index 1), not the genesis an earlier epoch recorded.
        let Ok(Some(release)) = store.head(&release_chain) else {
            return false;
        };
        release.index == 1
            && store
                .timeline_tree(&timeline, head.index)
                .is_ok_and(|tree| tree.head_of(&release_chain) == Some(release.hash))
    })
    .await?;
    let timeline_index = leader
        .store()
        .head(&timeline)?
        .ok_or("timeline head")?
        .index;

    let api = cluster.api(0)?;
    let token = cluster.api_token(0)?;
    let mut exercised = BTreeSet::new();
    let mut get = |path: &str, concrete: String| -> TestResult<Value> {
        let (status, answer) = http(api, "GET", &concrete, None)?;
        assert_eq!(status, 200, "GET {concrete}: {answer}");
        assert_shape(&document, "GET", path, status, &answer);
        exercised.insert(("GET".to_owned(), path.to_owned()));
        Ok(answer)
    };
    let chain = release_chain.to_hex();
    let tl = timeline.to_hex();
    get("/status", "/status".into())?;
    get("/chains", "/chains".into())?;
    get("/chains/{id}", format!("/chains/{chain}"))?;
    let batch = get(
        "/chains/{id}/blocks",
        format!("/chains/{chain}/blocks?from=0&count=5"),
    )?;
    let blocks = batch["blocks"].as_array().ok_or("blocks")?;
    assert_eq!(blocks.len(), 2, "the genesis and the release: {batch}");
    assert!(blocks[0]["link"].is_null() && blocks[1]["link"].is_string());
    get(
        "/chains/{id}/blocks/{index}",
        format!("/chains/{chain}/blocks/1"),
    )?;
    get(
        "/chains/{id}/proof",
        format!("/chains/{chain}/proof?from=0&to=1"),
    )?;
    let listed = get(
        "/chains/{id}/releases",
        format!("/chains/{chain}/releases?count=5"),
    )?;
    let releases = listed["releases"].as_array().ok_or("releases")?;
    assert_eq!(releases.len(), 1, "{listed}");
    assert_eq!(releases[0]["version"], json!("1.0.0"));
    assert_eq!(releases[0]["index"], json!(1));
    assert!(
        !releases[0]["signers"]
            .as_array()
            .ok_or("signers")?
            .is_empty(),
        "{listed}"
    );
    let hashes = releases[0]["binaries"]
        .as_array()
        .ok_or("binaries")?
        .iter()
        .map(|b| b["artifact"]["hash"].clone())
        .chain([releases[0]["source"]["hash"].clone()])
        .collect::<Vec<_>>();
    assert!(hashes.contains(&json!(artifact.to_hex())), "{listed}");
    let none_before = get(
        "/chains/{id}/releases",
        format!("/chains/{chain}/releases?before=1"),
    )?;
    assert_eq!(none_before["releases"], json!([]));
    get("/rosters/{hash}", format!("/rosters/{}", roster.hash()))?;
    let projects = get("/projects", "/projects".into())?;
    assert!(
        projects
            .as_array()
            .ok_or("projects")?
            .iter()
            .any(|p| p["timeline"] == json!(tl)),
        "the policy chain shows its timeline: {projects}"
    );
    get("/timeline", "/timeline".into())?;
    let entry = get(
        "/timeline/{id}/chains/{chain}",
        format!("/timeline/{tl}/chains/{chain}?index={timeline_index}"),
    )?;
    assert_eq!(entry["head_index"], json!(1));
    assert_eq!(entry["index"], json!(timeline_index));
    get(
        "/timeline/{id}/chains/{chain}",
        format!("/timeline/{tl}/chains/{chain}"),
    )?;
    get("/timeline/{id}/roster", format!("/timeline/{tl}/roster"))?;
    get("/anchors", "/anchors".into())?;

    // Writes, with the node's token.
    let stored = chainiac_api::http::call(
        api,
        "PUT",
        "/artifacts",
        "application/octet-stream",
        b"described bytes",
        Some(&token),
    )?;
    assert_shape(
        &document,
        "PUT",
        "/artifacts",
        200,
        &serde_json::from_slice(&stored)?,
    );
    exercised.insert(("PUT".into(), "/artifacts".into()));
    let (owner, payload) = DataChain::genesis_payload(&roster);
    let (status, created) = http_with_token(
        api,
        "POST",
        "/chains",
        Some(&json!({"roster": members_json(&roster), "payload": hex::encode(payload)})),
        Some(&token),
    )?;
    assert_shape(&document, "POST", "/chains", status, &created);
    exercised.insert(("POST".into(), "/chains".into()));
    let data = DataChain::new(
        Hash::from_hex(created["chain_id"].as_str().ok_or("chain id")?)?,
        owner,
        roster.hash(),
    );
    let (status, appended) = data.append_over_http(api, &token, b"described")?;
    assert_shape(&document, "POST", "/chains/{id}/blocks", status, &appended);
    exercised.insert(("POST".into(), "/chains/{id}/blocks".into()));
    let smaller = cluster.roster(&[0, 1, 2])?;
    let (status, approval) = http_with_token(
        api,
        "POST",
        &format!("/timeline/{tl}/roster"),
        Some(&json!({"roster": members_json(&smaller)})),
        Some(&token),
    )?;
    assert_shape(
        &document,
        "POST",
        "/timeline/{id}/roster",
        status,
        &approval,
    );
    exercised.insert(("POST".into(), "/timeline/{id}/roster".into()));

    // The two answers that are not JSON.
    let bytes =
        chainiac_api::http::call(api, "GET", &format!("/artifacts/{artifact}"), "", b"", None)?;
    assert_eq!(Hash::of_artifact(&bytes), artifact);
    exercised.insert(("GET".into(), "/artifacts/{hash}".into()));
    let metrics = String::from_utf8(chainiac_api::http::call(
        api, "GET", "/metrics", "", b"", None,
    )?)?;
    assert!(metrics.contains("# TYPE"));
    // A labelled family (gossipsub's bytes per topic) is left out of /metrics until it has a
    // first sample, and the leader may not have received a gossip message from anyone yet; a
    // follower receives the leader's blocks, so once it has, it exports every family.
    let follower = cluster.api(1)?;
    let mut missing = Vec::new();
    let exported = wait_for(
        "a follower exports every family the dashboard queries",
        || {
            missing = chainiac_api::http::call(follower, "GET", "/metrics", "", b"", None)
                .map(|body| dashboard_families_missing_from(&String::from_utf8_lossy(&body)))
                .unwrap_or_else(|error| vec![format!("(no /metrics: {error})")]);
            let done = missing.is_empty();
            async move { done }
        },
    )
    .await;
    assert!(
        exported.is_ok(),
        "the dashboard queries metrics the node does not export: {missing:?}"
    );
    exercised.insert(("GET".into(), "/metrics".into()));

    // The explorer's page and assets.
    for (path, marker) in [
        ("/", "chainiac node explorer"),
        ("/explorer.js", "setInterval(refresh"),
        ("/explorer.css", ".hex"),
    ] {
        let body = chainiac_api::http::call(api, "GET", path, "", b"", None)?;
        assert!(String::from_utf8(body)?.contains(marker), "GET {path}");
        exercised.insert(("GET".into(), path.into()));
    }

    // Errors have the documented shape too.
    let missing = "0".repeat(64);
    let (status, error) = http(api, "GET", &format!("/chains/{missing}"), None)?;
    assert_eq!(status, 404);
    assert_shape(&document, "GET", "/chains/{id}", status, &error);
    let (status, error) = http(api, "GET", &format!("/chains/{chain}/blocks?count=0"), None)?;
    assert_eq!(status, 400);
    assert_shape(&document, "GET", "/chains/{id}/blocks", status, &error);
    let (status, error) = http(
        api,
        "GET",
        &format!(
            "/timeline/{tl}/chains/{chain}?index={}",
            timeline_index + 1000
        ),
        None,
    )?;
    assert_eq!(status, 404);
    assert_shape(
        &document,
        "GET",
        "/timeline/{id}/chains/{chain}",
        status,
        &error,
    );

    let (status, error) = http(api, "GET", &format!("/chains/{tl}/releases"), None)?;
    assert_eq!(status, 404, "a timeline is not a release chain: {error}");
    assert_shape(&document, "GET", "/chains/{id}/releases", status, &error);
    let (status, error) = http(
        api,
        "GET",
        &format!("/chains/{chain}/releases?count=65"),
        None,
    )?;
    assert_eq!(status, 400);
    assert_shape(&document, "GET", "/chains/{id}/releases", status, &error);

    let missed: Vec<_> = documented(&document)
        .difference(&exercised)
        .cloned()
        .collect();
    assert!(missed.is_empty(), "documented but not checked: {missed:?}");
    cluster.shutdown().await;
    Ok(())
}
