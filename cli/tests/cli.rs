//! The `chainiac` command as users run it: the testnet demo, and each command of the release
//! story (testnet, project, release, client) against real node processes, including a leader
//! that dies and another node taking over.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

mod support;
use support::{TestResult, http, wait_for};

fn chainiac(args: &[&str]) -> Result<Output, Box<dyn std::error::Error>> {
    Ok(Command::new(env!("CARGO_BIN_EXE_chainiac"))
        .args(args)
        .env_remove("CHAINIAC_NODES")
        .env_remove("CHAINIAC_PEERS")
        .env_remove("CHAINIAC_CLIENT_DIR")
        .env_remove("CHAINIAC_KEY_PASSPHRASE")
        .output()?)
}

/// Runs a command that must succeed; returns its standard output.
fn ok(args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let output = chainiac(args)?;
    let stdout = String::from_utf8(output.stdout)?;
    let stderr = String::from_utf8(output.stderr)?;
    if !output.status.success() {
        return Err(format!("chainiac {args:?} failed:\n{stdout}\n{stderr}").into());
    }
    Ok(stdout)
}

/// Runs a command that must fail; returns its standard error.
fn fails(args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let output = chainiac(args)?;
    if output.status.success() {
        return Err(format!("chainiac {args:?} succeeded but must fail").into());
    }
    Ok(String::from_utf8(output.stderr)?)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

#[test]
fn the_demo_runs_the_whole_story() -> TestResult {
    let dir = tempfile::tempdir()?;
    let demo = dir.path().join("demo");
    let out = ok(&["testnet", "demo", "--dir", path(&demo)])?;
    // The set-up (testnet/setup.sh) installs bubblewrap and anvil, so every part runs.
    assert!(!out.contains("no build verifier in this demo"), "{out}");
    assert!(!out.contains("no anchoring in this demo"), "{out}");
    assert_eq!(out.matches("refused, as it must be").count(), 4, "{out}");
    assert!(out.contains("rebuilt it from source and attested"), "{out}");
    assert!(out.contains("(the same bytes)"), "{out}");
    assert!(
        out.contains("0 build verifiers reproduced the binaries but 1 are required"),
        "{out}"
    );
    assert!(out.contains("is in Ethereum chain"), "{out}");
    assert!(
        out.contains("a skip proof from the timeline's genesis leads to exactly that block"),
        "{out}"
    );
    assert!(out.contains("sequence 2 was already used"), "{out}");
    assert!(
        out.contains("1 valid developer signatures but 2 are required"),
        "{out}"
    );
    assert!(
        out.contains("not one of the developer keys entitled to sign"),
        "{out}"
    );
    assert!(
        out.contains("caught up from release-chain block 1 to 3"),
        "{out}"
    );
    assert!(out.contains("latest release 1.2.0"), "{out}");
    assert!(out.contains("Done in"), "{out}");
    let fetched = std::fs::read(demo.join("hello-1.2.0-linux-x86_64"))?;
    let published = std::fs::read(demo.join("work").join("hello-1.2.0-linux-x86_64"))?;
    assert_eq!(fetched, published);
    // The testnet is down: no node answers any more, and the status says so with its exit code.
    let output = chainiac(&["testnet", "status", "--dir", path(&demo)])?;
    let status = String::from_utf8(output.stdout)?;
    assert_eq!(output.status.code(), Some(1), "{status}");
    assert_eq!(status.matches("stopped").count(), 4, "{status}");
    Ok(())
}

#[test]
fn every_command_of_the_release_story_with_a_leader_failing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let net = dir.path().join("net");
    let up = ok(&[
        "testnet",
        "up",
        "--nodes",
        "4",
        "--dir",
        path(&net),
        "--epoch-seconds",
        "1",
        "--anvil",
    ])?;
    assert!(
        up.contains("testnet of 4 nodes is up and connected"),
        "{up}"
    );
    let result = story(dir.path(), &net);
    let down = ok(&["testnet", "down", "--dir", path(&net)])?;
    result?;
    assert!(down.contains("stopped"), "{down}");
    Ok(())
}

fn story(dir: &Path, net: &Path) -> TestResult {
    let testnet: Value = serde_json::from_str(&std::fs::read_to_string(net.join("testnet.json"))?)?;
    let nodes = testnet["nodes"].as_array().ok_or("nodes")?;
    let api = |i: usize| nodes[i]["api"].as_str().unwrap_or_default().to_owned();
    let p2p = |i: usize| nodes[i]["p2p"].as_str().unwrap_or_default().to_owned();
    let all_apis = (0..4).map(api).collect::<Vec<_>>().join(",");
    let roster = net.join("roster.json");

    let project = dir.join("project");
    let created = ok(&[
        "project",
        "create",
        "tool",
        "--dir",
        path(&project),
        "--developers",
        "3",
        "--threshold",
        "2",
        "--roster",
        path(&roster),
        "--node",
        &all_apis,
        "--api-token",
        path(&net.join("api.token")),
    ])?;
    let release_chain = created
        .lines()
        .find_map(|l| l.trim().strip_prefix("release chain"))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or("no release chain id printed")?
        .to_owned();

    let files = dir.join("files");
    std::fs::create_dir_all(&files)?;
    let source = files.join("tool-0.1.0.tar");
    let binary = files.join("tool");
    std::fs::write(&source, b"source of tool 0.1.0")?;
    std::fs::write(&binary, vec![42u8; 2_500_000])?;
    let bundle = dir.join("tool-0.1.0.json");
    let binary_arg = format!("linux-x86_64={}", path(&binary));
    ok(&[
        "release",
        "create",
        "--project-dir",
        path(&project),
        "--version",
        "0.1.0",
        "--source",
        path(&source),
        "--binary",
        &binary_arg,
        "--out",
        path(&bundle),
    ])?;
    ok(&[
        "release",
        "sign",
        "--bundle",
        path(&bundle),
        "--key",
        "dev-1",
        "--project-dir",
        path(&project),
    ])?;
    let refused = fails(&[
        "release",
        "publish",
        "--bundle",
        path(&bundle),
        "--project-dir",
        path(&project),
    ])?;
    assert!(
        refused.contains("1 valid developer signatures but 2 are required"),
        "{refused}"
    );
    ok(&[
        "release",
        "sign",
        "--bundle",
        path(&bundle),
        "--key",
        "dev-2",
        "--project-dir",
        path(&project),
    ])?;

    // A build verifier rebuilds a copy of the bundle in the sandbox: the recipe (`make`, the
    // default) has nothing to build here, so it attests a failed build, and says so.
    let attested = dir.join("tool-0.1.0-attested.json");
    std::fs::copy(&bundle, &attested)?;
    let verifier_key = net.join("node-1").join("node.key");
    let failed = fails(&[
        "release",
        "attest",
        "--bundle",
        path(&attested),
        "--key",
        path(&verifier_key),
        "--timeout",
        "60",
    ])?;
    assert!(failed.contains("the build failed"), "{failed}");
    let attested: Value = serde_json::from_str(&std::fs::read_to_string(&attested)?)?;
    assert_eq!(
        attested["attestations"].as_array().map(Vec::len),
        Some(1),
        "{attested}"
    );

    // The first node (the default leader) dies; the next one takes over.
    let pid = testnet["nodes"][0]["pid"].as_u64().ok_or("pid")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid)?),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let published = chainiac(&[
        "release",
        "publish",
        "--bundle",
        path(&bundle),
        "--project-dir",
        path(&project),
    ])?;
    let stdout = String::from_utf8(published.stdout)?;
    let stderr = String::from_utf8(published.stderr)?;
    assert!(published.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("trying the next node"), "{stderr}");
    assert!(stdout.contains("logged as block 1"), "{stdout}");

    // A client follows it through the surviving nodes, syncs, verifies and fetches.
    let client = dir.join("client");
    let client_args = |rest: &[&str]| -> Vec<String> {
        let mut args = vec!["client".to_owned(), "--dir".into(), path(&client).into()];
        args.extend(rest.iter().map(|s| s.to_string()));
        args
    };
    let run = |rest: &[&str]| -> Result<String, Box<dyn std::error::Error>> {
        let args = client_args(rest);
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let followed = run(&[
        "--peer",
        &p2p(2),
        "--peer",
        &p2p(3),
        "follow",
        &release_chain,
    ])?;
    assert!(followed.contains("following tool"), "{followed}");
    // The client asks nodes 2 and 3, which store the release and mirror its binary a moment
    // after the leader logged it.
    let binary_hash = chainiac_protocol::Hash::of_artifact(&std::fs::read(&binary)?).to_hex();
    for node in [2, 3] {
        let address = api(node).parse()?;
        wait_for(&format!("node {node} holds release 0.1.0"), || {
            http(address, "GET", &format!("/chains/{release_chain}"), None)
                .is_ok_and(|(status, chain)| status == 200 && chain["index"] == 1)
        })?;
        wait_for(&format!("node {node} mirrors the binary"), || {
            // HEAD: the answer's status, without reading megabytes of (non-UTF-8) body.
            http(address, "HEAD", &format!("/artifacts/{binary_hash}"), None)
                .is_ok_and(|(status, _)| status == 200)
        })?;
    }
    // The project's policy names the testnet's timeline, so the client accepts the release
    // once a timeline block commits to it.
    let timeline = testnet["timeline"]
        .as_str()
        .ok_or("no timeline")?
        .to_owned();
    let address = api(2).parse()?;
    wait_for("the timeline to commit to release 0.1.0", || {
        http(
            address,
            "GET",
            &format!("/timeline/{timeline}/chains/{release_chain}"),
            None,
        )
        .is_ok_and(|(status, entry)| status == 200 && entry["head_index"] == 1)
    })?;
    let synced = run(&["sync"])?;
    assert!(
        synced.contains("tool: 0 -> block 1 (release 0.1.0)"),
        "{synced}"
    );
    // The timeline is anchored in the testnet's anvil: the client checks the newest anchor
    // (its block is the timeline's own; anvil shows the transaction, confirmed).
    let rpc = testnet["anvil"]["url"].as_str().ok_or("no anvil")?;
    let mut checked = String::new();
    wait_for("an anchor the client can check", || {
        let output = chainiac(
            &client_args(&["sync", "--ethereum-rpc", rpc])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        match output {
            Ok(output) if output.status.success() => {
                checked = String::from_utf8_lossy(&output.stderr).into_owned();
                true
            }
            _ => false,
        }
    })?;
    assert!(
        checked.contains("confirmations; checked against"),
        "{checked}"
    );
    // The sync itself was reported and kept before the anchor check.
    assert!(checked.contains("timeline epoch"), "{checked}");
    // An Ethereum node that cannot be reached fails the sync, saying so.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let output = chainiac(
        &client_args(&["sync", "--ethereum-rpc", &format!("http://{closed}")])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )?;
    assert!(!output.status.success());
    let refused = String::from_utf8(output.stderr)?;
    assert!(
        refused.contains("cannot reach the Ethereum node"),
        "{refused}"
    );
    let verified = run(&["verify"])?;
    assert!(verified.contains("release 0.1.0"), "{verified}");
    let verified: Value = serde_json::from_str(&run(&["verify", "--json"])?)?;
    assert_eq!(verified[0]["project"], "tool");
    assert_eq!(verified[0]["release"]["version"], "0.1.0");
    assert_eq!(verified[0]["release"]["block"], 1);
    let out = dir.join("fetched-tool");
    let fetched = run(&["fetch", "tool", "--out", path(&out)])?;
    assert!(fetched.contains("verified"), "{fetched}");
    assert_eq!(std::fs::read(&out)?, std::fs::read(&binary)?);

    // Installing: into a directory it creates, as an executable; a second time changes nothing.
    let bin = dir.join("bin");
    let installed = run(&["install", "tool", "--to", path(&bin)])?;
    assert!(installed.contains("tool 0.1.0"), "{installed}");
    assert!(installed.contains("installed at"), "{installed}");
    let target = bin.join("tool");
    assert_eq!(std::fs::read(&target)?, std::fs::read(&binary)?);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target)?.permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "mode {mode:o}");
    }
    let again = run(&["install", "tool", "--to", path(&bin)])?;
    assert!(again.contains("already installed at"), "{again}");
    // A failed check leaves the installed file as it was, and no temporary file behind.
    std::fs::write(&target, b"the old tool")?;
    let install_fails = |extra: &[&str]| -> Result<String, Box<dyn std::error::Error>> {
        let mut rest = vec!["install", "tool", "--to", path(&bin)];
        rest.extend_from_slice(extra);
        let args = client_args(&rest);
        fails(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let refused = install_fails(&["--platform", "plan9-mips"])?;
    assert!(
        refused.contains("no binary for platform plan9-mips"),
        "{refused}"
    );
    let refused = install_fails(&["--platform", "source"])?;
    assert!(refused.contains("not an executable"), "{refused}");
    let refused = install_fails(&["--name", "../escape"])?;
    assert!(refused.contains("not a plain file name"), "{refused}");
    assert_eq!(std::fs::read(&target)?, b"the old tool");
    let left: Vec<_> = std::fs::read_dir(&bin)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    assert_eq!(
        left,
        ["tool"],
        "only the installed file is in {}",
        bin.display()
    );
    // A newer verified binary replaces it.
    let replaced = run(&["install", "tool", "--to", path(&bin)])?;
    assert!(
        replaced.contains("replacing the previous file"),
        "{replaced}"
    );
    assert_eq!(std::fs::read(&target)?, std::fs::read(&binary)?);

    // A policy change through the surviving nodes.
    let others = (1..4).map(api).collect::<Vec<_>>().join(",");
    let policy = ok(&[
        "project",
        "policy",
        "--dir",
        path(&project),
        "--rotate-developer",
        "3",
        "--node",
        &others,
    ])?;
    assert!(policy.contains("policy 1 logged"), "{policy}");
    let show = ok(&[
        "project",
        "show",
        "--dir",
        path(&project),
        "--node",
        &others,
    ])?;
    assert!(show.contains("latest 0.1.0"), "{show}");
    let show: Value = serde_json::from_str(&ok(&[
        "project",
        "show",
        "--dir",
        path(&project),
        "--node",
        &others,
        "--json",
    ])?)?;
    let chains = show.as_array().ok_or("an array")?;
    assert_eq!(chains.len(), 2, "the policy and the release chain: {show}");
    assert!(
        chains
            .iter()
            .any(|c| c["kind"] == "release" && c["version"] == "0.1.0")
    );

    let output = chainiac(&["testnet", "status", "--dir", path(net), "--json"])?;
    assert_eq!(output.status.code(), Some(1), "a node is down");
    let states: Value = serde_json::from_slice(&output.stdout)?;
    let states = states.as_array().ok_or("an array")?;
    assert_eq!(states.len(), 4);
    assert_eq!(states.iter().filter(|n| n["state"] == "stopped").count(), 1);
    assert!(
        states
            .iter()
            .any(|n| n["state"] == "healthy" && n["peers"].is_u64())
    );

    let output = chainiac(&["testnet", "status", "--dir", path(net)])?;
    let status = String::from_utf8(output.stdout)?;
    assert_eq!(output.status.code(), Some(1), "a node is down: {status}");
    assert!(
        status.contains("stopped") && status.contains("healthy"),
        "{status}"
    );
    let logs = ok(&[
        "testnet",
        "logs",
        "--dir",
        path(net),
        "--node",
        "node-1",
        "--lines",
        "5",
    ])?;
    assert!(logs.contains("==> node-1"), "{logs}");
    Ok(())
}

/// A project moves to other witnesses only through its policy: the root keys sign a policy
/// naming the new roster (`project policy --roster`), which moves the policy chain; the next
/// `release publish` moves the release chain after it by itself.
#[test]
fn a_project_moves_to_new_witnesses_through_its_policy() -> TestResult {
    let dir = tempfile::tempdir()?;
    let net = dir.path().join("net");
    ok(&["testnet", "up", "--nodes", "5", "--dir", path(&net)])?;
    let result = move_witnesses(dir.path(), &net);
    ok(&["testnet", "down", "--dir", path(&net)])?;
    result
}

fn move_witnesses(dir: &Path, net: &Path) -> TestResult {
    let testnet: Value = serde_json::from_str(&std::fs::read_to_string(net.join("testnet.json"))?)?;
    let nodes = testnet["nodes"].as_array().ok_or("nodes")?;
    let apis: Vec<String> = nodes
        .iter()
        .map(|n| n["api"].as_str().unwrap_or_default().to_owned())
        .collect();
    let all: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(net.join("roster.json"))?)?;
    let first_four = dir.join("first-four.json");
    std::fs::write(&first_four, serde_json::to_string(&all[..4])?)?;
    let last_four = dir.join("last-four.json");
    std::fs::write(&last_four, serde_json::to_string(&all[1..])?)?;
    let token = net.join("api.token");
    let project = dir.join("project");
    // The developers sign with the OpenSSH keys they already have, one of them passphrase-
    // protected.
    let ssh_key =
        |name: &str, passphrase: &str| -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
            let key = dir.join(name);
            let made = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-C", name, "-N", passphrase, "-f"])
                .arg(&key)
                .status()?;
            assert!(
                made.success(),
                "ssh-keygen (install openssh-client: ./testnet/setup.sh)"
            );
            Ok(key)
        };
    let alice = ssh_key("id_alice", "alice's passphrase")?;
    let bob = ssh_key("id_bob", "")?;
    let alice_pub = format!("{}.pub", path(&alice));
    let bob_pub = format!("{}.pub", path(&bob));
    // carol signs with a minisign key, made by minisign itself, passphrase-protected.
    let carol = dir.join("carol.key");
    let carol_pub = dir.join("carol.pub");
    let mut made = Command::new("minisign")
        .args(["-G", "-p", path(&carol_pub), "-s", path(&carol)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("minisign (install it: ./testnet/setup.sh): {e}"))?;
    std::io::Write::write_all(
        made.stdin.as_mut().ok_or("stdin")?,
        b"carol's passphrase\ncarol's passphrase\n",
    )?;
    assert!(made.wait()?.success(), "minisign -G");
    ok(&[
        "project",
        "create",
        "moving",
        "--dir",
        path(&project),
        "--developer-key",
        &alice_pub,
        "--developer-key",
        &bob_pub,
        "--developer-key",
        path(&carol_pub),
        "--threshold",
        "2",
        "--roster",
        path(&first_four),
        "--node",
        &apis[1],
        "--api-token",
        path(&token),
    ])?;
    let changed = ok(&[
        "project",
        "policy",
        "--dir",
        path(&project),
        "--roster",
        path(&last_four),
    ])?;
    assert!(changed.contains("policy"), "{changed}");

    let source = dir.join("moving.tar");
    std::fs::write(&source, b"source")?;
    let bundle = dir.join("bundle.json");
    ok(&[
        "release",
        "create",
        "--project-dir",
        path(&project),
        "--version",
        "1.0.0",
        "--source",
        path(&source),
        "--out",
        path(&bundle),
    ])?;
    // Without its passphrase (no terminal here), alice's key is refused with what to do.
    let locked = fails(&[
        "release",
        "sign",
        "--bundle",
        path(&bundle),
        "--key",
        path(&alice),
    ])?;
    assert!(locked.contains("CHAINIAC_KEY_PASSPHRASE"), "{locked}");
    // Signing with a protected key, its passphrase given in the environment.
    let sign_with = |key: &Path, passphrase: &str| -> TestResult {
        let signed = Command::new(env!("CARGO_BIN_EXE_chainiac"))
            .args([
                "release",
                "sign",
                "--bundle",
                path(&bundle),
                "--key",
                path(key),
            ])
            .env("CHAINIAC_KEY_PASSPHRASE", passphrase)
            .output()?;
        assert!(
            signed.status.success(),
            "{}",
            String::from_utf8_lossy(&signed.stderr)
        );
        Ok(())
    };
    sign_with(&alice, "alice's passphrase")?;
    sign_with(&carol, "carol's passphrase")?;
    let published = ok(&[
        "release",
        "publish",
        "--bundle",
        path(&bundle),
        "--project-dir",
        path(&project),
    ])?;
    assert!(published.contains("logged as block 1"), "{published}");
    let shown: Value = serde_json::from_str(&ok(&[
        "project",
        "show",
        "--dir",
        path(&project),
        "--node",
        &apis[1],
        "--json",
    ])?)?;
    for (who, public) in [
        ("alice's SSH", alice_pub.as_str()),
        ("carol's minisign", path(&carol_pub)),
    ] {
        let hex = chainiac_api::keyfile::public_key_from(public)?.to_hex();
        assert!(
            shown
                .as_array()
                .ok_or("an array")?
                .iter()
                .any(|c| c["developers"]
                    .as_array()
                    .is_some_and(|d| d.contains(&Value::from(hex.clone())))),
            "the policy records {who} key as it is: {shown}"
        );
    }

    // Both chains now run under the last four nodes.
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(project.join("project.json"))?)?;
    let api: std::net::SocketAddr = apis[1].parse()?;
    let members: Vec<chainiac_api::types::RosterMemberJson> =
        serde_json::from_value(Value::Array(all[1..].to_vec()))?;
    let expected = chainiac_api::types::roster_from_json(&members, None)?
        .hash()
        .to_hex();
    for (chain, index) in [("policy_chain", 1), ("release_chain", 1)] {
        let id = file[chain].as_str().ok_or(chain)?;
        let (status, block) = http(api, "GET", &format!("/chains/{id}/blocks/{index}"), None)?;
        assert_eq!(status, 200, "{block}");
        assert_eq!(block["roster_hash"], expected.as_str(), "{chain}");
    }
    Ok(())
}

#[test]
fn completions_and_man_pages_cover_every_command() -> TestResult {
    let bash = ok(&["completions", "bash"])?;
    for word in ["chainiac", "install", "testnet", "--platform"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    assert!(ok(&["completions", "zsh"])?.contains("#compdef chainiac"));
    let dir = tempfile::tempdir()?;
    let man = dir.path().join("man1");
    ok(&["manpages", path(&man)])?;
    for page in [
        "chainiac.1",
        "chainiac-client.1",
        "chainiac-client-install.1",
        "chainiac-node-run.1",
    ] {
        let text = std::fs::read_to_string(man.join(page))?;
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
    let refused = fails(&["completions", "tcsh"])?;
    assert!(refused.contains("invalid value 'tcsh'"), "{refused}");
    Ok(())
}

/// node/deploy/chainiac-node.service passes `systemd-analyze verify` (with its `ExecStart`
/// pointed at this build), its command line is one this `chainiac` accepts, and its sandboxing
/// keeps systemd's exposure score at "OK" or better.
#[test]
fn the_systemd_unit_verifies_and_runs_a_command_chainiac_accepts() -> TestResult {
    const UNIT: &str = include_str!("../../node/deploy/chainiac-node.service");
    const INSTALLED: &str = "/usr/local/bin/chainiac";
    let exec = UNIT
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .ok_or("no ExecStart")?;
    let args: Vec<&str> = exec
        .strip_prefix(INSTALLED)
        .ok_or("ExecStart runs another binary")?
        .split_whitespace()
        .collect();
    let mut with_help = args.clone();
    with_help.push("--help");
    let help = ok(&with_help)?;
    assert!(help.contains("--config"), "{help}");

    let dir = tempfile::tempdir()?;
    let unit = dir.path().join("chainiac-node.service");
    std::fs::write(
        &unit,
        UNIT.replace(INSTALLED, env!("CARGO_BIN_EXE_chainiac")),
    )?;
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .map_err(|e| format!("systemd-analyze (Debian: apt-get install systemd): {e}"))?;
    let complaints = String::from_utf8(verify.stderr)?;
    assert!(verify.status.success(), "{complaints}");
    // Complaints about this unit (other units on the machine may have their own).
    let about_ours: Vec<&str> = complaints
        .lines()
        .filter(|line| line.contains("chainiac-node.service"))
        .collect();
    assert!(about_ours.is_empty(), "{complaints}");

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&unit)
        .output()?;
    let report = String::from_utf8(security.stdout)?;
    assert!(security.status.success(), "{report}");
    assert!(report.contains("Overall exposure level"), "{report}");
    Ok(())
}
