// The node explorer: reads this node's API and shows it. Every string comes from the network,
// so nothing here sets HTML: elements are built and given text only.
"use strict";

const REFRESH_MS = 2000;
const RELEASES_SHOWN = 10;
// Bounds on what one refresh draws and asks, whatever the node holds.
const PROJECTS_SHOWN = 50;
const CHAINS_SHOWN = 200;
const KEYS_SHOWN = 32;
const ITEMS_SHOWN = 16;
const ROSTER_LOOKUPS_PER_REFRESH = 10;
// How old a timeline block light clients accept by default (`client --max-age`).
const CLIENT_MAX_AGE_S = 3600;

const cache = {
  rosters: new Map(), // roster hash -> roster JSON
  headRoster: new Map(), // chain id -> { head, roster_hash }
  releases: new Map(), // release chain id -> { head, list }
};

function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A hash or key: shortened, the whole of it in the tooltip.
function hex(value) {
  const node = el("span", "hex", value ? value.slice(0, 12) + "…" : "—");
  if (value) node.title = value;
  return node;
}

function time(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  return new Date(seconds * 1000).toISOString().replace("T", " ").replace(".000Z", " UTC");
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const age = Math.max(0, Math.round(Date.now() / 1000 - seconds));
  if (age < 120) return `${age} s ago`;
  if (age < 7200) return `${Math.round(age / 60)} min ago`;
  if (age < 172800) return `${Math.round(age / 3600)} h ago`;
  return `${Math.round(age / 86400)} days ago`;
}

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1 << 20) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
}

function table(headers, rows) {
  const head = el("tr", null, ...headers.map((h) => el("th", null, h)));
  const body = rows.map((cells) => el("tr", null, ...cells.map((c) => el("td", null, c))));
  return el("table", null, el("thead", null, head), el("tbody", null, ...body));
}

function list(items) {
  return el("ul", "plain", ...items.map((item) => el("li", null, item)));
}

function replace(id, content) {
  const target = document.getElementById(id);
  target.className = "";
  target.replaceChildren(content);
}

function empty(id, text) {
  const target = document.getElementById(id);
  target.className = "muted";
  target.replaceChildren(text);
}

async function get(path) {
  const answer = await fetch(path, { cache: "no-store" });
  if (!answer.ok) {
    let reason = `${answer.status}`;
    try {
      reason += `: ${(await answer.json()).error}`;
    } catch (_) {
      // not JSON: the status says enough
    }
    throw new Error(`GET ${path} answered ${reason}`);
  }
  return answer.json();
}

async function rosterOf(hash) {
  if (!cache.rosters.has(hash)) {
    cache.rosters.set(hash, await get(`/rosters/${hash}`));
  }
  return cache.rosters.get(hash);
}

// The newest releases of a release chain, fetched again only when its head moved.
async function releasesOf(chain) {
  const known = cache.releases.get(chain.chain_id);
  if (known && known.head === chain.head) return known.list;
  const answer = await get(`/chains/${chain.chain_id}/releases?count=${RELEASES_SHOWN}`);
  cache.releases.set(chain.chain_id, { head: chain.head, list: answer.releases });
  return answer.releases;
}

function artifactLine(platform, artifact) {
  return el("span", null, el("b", null, platform), " ", artifact.name, " ", hex(artifact.hash), ` ${size(artifact.size)}`);
}

function releaseRows(releases) {
  return releases.map((r) => [
    el("span", "version", r.version),
    `${r.sequence}`,
    el("span", null, time(r.timestamp), el("br"), el("span", "muted", ago(r.timestamp))),
    el("span", null, `${r.signers.length}: `, ...r.signers.slice(0, KEYS_SHOWN).flatMap((k) => [hex(k), " "])),
    r.attestations.length === 0
      ? el("span", "muted", "none")
      : list([
        ...r.attestations.slice(0, ITEMS_SHOWN).map((a) => el("span", null, hex(a.verifier), ` ${a.outcome}`, ...a.outputs.slice(0, ITEMS_SHOWN).map((o) => el("span", null, ` ${o.platform} `, hex(o.hash))))),
        ...(r.attestations.length > ITEMS_SHOWN ? [`and ${r.attestations.length - ITEMS_SHOWN} more`] : []),
      ]),
    list([
      ...r.binaries.slice(0, ITEMS_SHOWN).map((b) => artifactLine(b.platform, b.artifact)),
      artifactLine("source", r.source),
    ]),
  ]);
}

// Projects are told apart by their policy chain, not their name: names are not unique, and
// anyone can create chains under a famous one.
async function renderProjects(projects) {
  const byPolicy = new Map();
  const entry = (id) => {
    if (!byPolicy.has(id)) byPolicy.set(id, {});
    return byPolicy.get(id);
  };
  for (const chain of projects) {
    if (chain.kind === "policy") entry(chain.chain_id).policy = chain;
    else if (chain.kind === "release") entry(chain.policy_chain ?? chain.chain_id).release = chain;
  }
  if (byPolicy.size === 0) return empty("projects", "none yet");
  const nameCount = new Map();
  for (const { policy, release } of byPolicy.values()) {
    const name = policy?.project ?? release?.project ?? "(unnamed)";
    nameCount.set(name, (nameCount.get(name) ?? 0) + 1);
  }
  const sorted = [...byPolicy].sort((a, b) => {
    const name = (p) => p[1].policy?.project ?? p[1].release?.project ?? "";
    return name(a).localeCompare(name(b)) || a[0].localeCompare(b[0]);
  });
  const cards = [];
  for (const [policyChain, { policy, release }] of sorted.slice(0, PROJECTS_SHOWN)) {
    const name = policy?.project ?? release?.project ?? "(unnamed)";
    const card = el("article", "project");
    card.dataset.project = name;
    const latest = release?.version ? `latest ${release.version}` : "no release yet";
    card.append(el("h3", null, name, " ", el("span", "badge", latest), " ", el("span", "muted", "policy chain "), hex(policyChain)));
    if (nameCount.get(name) > 1) {
      card.append(el("div", "stale", `${nameCount.get(name)} projects use the name "${name}": follow a project by its release chain id, never by its name`));
    }
    if (policy) {
      const developers = policy.developers ?? [];
      const verifiers = policy.verifiers ?? [];
      card.append(
        el("div", "policy",
          el("div", null, el("b", null, "Policy "), `block ${policy.index}`),
          el("div", null, el("b", null, "Developers "), `${policy.developer_threshold ?? "?"} of ${developers.length} must sign: `, ...developers.slice(0, KEYS_SHOWN).flatMap((k) => [hex(k), " "])),
          el("div", null, el("b", null, "Build verifiers "),
            verifiers.length === 0 ? "none" : `${policy.attestations_required ?? 0} matching attestation(s) of ${verifiers.length}: `,
            ...verifiers.slice(0, KEYS_SHOWN).flatMap((k) => [hex(k), " "])),
          el("div", null, el("b", null, "Timeline "), policy.timeline ? hex(policy.timeline) : "none named")));
    }
    if (release) {
      card.append(el("div", null, el("b", null, "Release chain "), hex(release.chain_id), ` head block ${release.index}`));
      const releases = await releasesOf(release);
      card.append(
        releases.length === 0
          ? el("div", "muted", "no release yet")
          : table(["version", "seq", "made", "developer signatures", "attestations", "artifacts (BLAKE3)"], releaseRows(releases)));
    }
    cards.push(card);
  }
  if (sorted.length > PROJECTS_SHOWN) cards.push(el("div", "muted", `and ${sorted.length - PROJECTS_SHOWN} more projects`));
  replace("projects", el("div", null, ...cards));
}

function renderTimelines(timelines) {
  if (timelines.length === 0) return empty("timelines", "none");
  replace("timelines", table(
    ["timeline", "epoch (length)", "block", "made", "freshness", "chains", "root", "heads moved"],
    timelines.map((t) => {
      const age = t.timestamp === null || t.timestamp === undefined ? null : Date.now() / 1000 - t.timestamp;
      const fresh = age !== null && age <= CLIENT_MAX_AGE_S;
      return [
        hex(t.chain_id),
        `${t.epoch ?? "genesis"} (${t.epoch_seconds} s)`,
        `${t.index}`,
        ago(t.timestamp),
        el("span", fresh ? "ok" : "stale", age === null ? "no epoch yet" : fresh ? `fresh (clients accept up to 1 h)` : "stale: older than the 1 h clients accept"),
        t.chain_count ?? "—",
        hex(t.root),
        (t.changes ?? []).length,
      ];
    })));
}

function renderAnchors(anchors) {
  const rows = anchors.flatMap((a) => a.anchors.map((p) => [hex(a.timeline), `${p.timeline_index}`, `${p.chain_id}`, `${p.block_number}`, hex(p.transaction)]));
  if (rows.length === 0) return empty("anchors", "no anchor yet (a node anchors timelines when it has an Ethereum RPC)");
  replace("anchors", table(["timeline", "timeline block", "Ethereum chain", "Ethereum block", "transaction"], rows));
}

async function renderRosters(chains) {
  let lookups = 0;
  for (const chain of chains.slice(0, CHAINS_SHOWN)) {
    const known = cache.headRoster.get(chain.chain_id);
    if (known && known.head === chain.head) continue;
    if (lookups++ >= ROSTER_LOOKUPS_PER_REFRESH) break;
    const answer = await get(`/chains/${chain.chain_id}`);
    cache.headRoster.set(chain.chain_id, { head: chain.head, roster: answer.head.roster_hash });
  }
  const users = new Map();
  for (const { roster } of cache.headRoster.values()) users.set(roster, (users.get(roster) ?? 0) + 1);
  if (users.size === 0) return empty("rosters", "none");
  const rows = [];
  for (const [hash, count] of users) {
    const roster = await rosterOf(hash);
    rows.push([hex(hash), `${roster.threshold} of ${roster.members.length}`, `${count}`, el("span", null, ...roster.members.flatMap((m) => [hex(m.public_key), " "]))]);
  }
  replace("rosters", table(["roster", "threshold", "chains", "witnesses"], rows));
}

function renderChains(chains, kinds) {
  if (chains.length === 0) return empty("chains", "none");
  const rows = chains.slice(0, CHAINS_SHOWN).map((c) => [hex(c.chain_id), kinds.get(c.chain_id) ?? "data", `${c.index}`, hex(c.head)]);
  const shown = table(["chain", "kind", "head block", "head hash"], rows);
  replace("chains", chains.length > CHAINS_SHOWN ? el("div", null, shown, el("div", "muted", `and ${chains.length - CHAINS_SHOWN} more chains`)) : shown);
}

let running = false;

async function refresh() {
  if (running) return;
  running = true;
  const problem = document.getElementById("problem");
  try {
    const [status, chains, projects, timelines, anchors] = await Promise.all([
      get("/status"), get("/chains"), get("/projects"), get("/timeline"), get("/anchors"),
    ]);
    document.getElementById("node").replaceChildren(
      "node ", hex(status.public_key), " · peer id ", el("span", "hex", status.peer_id ?? "—"),
      ` · ${status.peers.length} peer(s) · ${chains.length} chain(s)`);
    if (status.peers.length === 0) empty("peers", "no peer connected");
    else replace("peers", list(status.peers.map((p) => el("span", "hex", p))));
    const kinds = new Map();
    for (const p of projects) kinds.set(p.chain_id, p.kind);
    for (const t of timelines) kinds.set(t.chain_id, "timeline");
    // One section failing (a roster the node lost, a release it cannot decode) leaves the
    // others drawn.
    const failures = [];
    const section = async (name, draw) => {
      try {
        await draw();
      } catch (error) {
        failures.push(`${name}: ${error.message}`);
      }
    };
    await section("projects", () => renderProjects(projects));
    await section("timelines", () => renderTimelines(timelines));
    await section("anchors", () => renderAnchors(anchors));
    await section("rosters", () => renderRosters(chains));
    await section("chains", () => renderChains(chains, kinds));
    if (failures.length > 0) throw new Error(failures.join("; "));
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    problem.hidden = true;
  } catch (error) {
    problem.textContent = `cannot read the node's API: ${error.message}; retrying every ${REFRESH_MS / 1000} s`;
    problem.hidden = false;
  } finally {
    running = false;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
