//! The command line as people meet it: every subcommand with the usual mistakes (a missing or
//! unreadable file, malformed JSON or TOML, an unknown chain or project, a node that is down,
//! an unusable key, a bad address), run with `RUST_BACKTRACE=1` as on many developers'
//! machines. Each report must name what is wrong, say it once, show no stack trace, give the
//! next step where the program knows it, and exit with the documented code.
//!
//! And a local testnet that heals: a node killed with SIGKILL is shown as stopped (non-zero
//! exit), `testnet up` brings it back without touching the others, and it catches up.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use chainiac_tests::DataChain;
use chainiac_tests::process::NodeProcess;
use serde_json::Value;

mod support;
use support::{TestResult, http, wait_for};

fn chainiac(args: &[&str]) -> TestResult<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_chainiac"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("CHAINIAC_NODES")
        .env_remove("CHAINIAC_PEERS")
        .env_remove("CHAINIAC_CLIENT_DIR")
        .env_remove("CHAINIAC_BACKTRACE")
        .output()?)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// What a failing command must report.
struct Expect<'a> {
    /// Text that must appear (what is wrong, named).
    names: &'a [&'a str],
    /// Text the `hint:` line must hold, if a hint is expected.
    hint: Option<&'a str>,
    /// The exit code.
    code: i32,
}

/// Runs `args`, which must fail as `expect` says.
fn check(args: &[&str], expect: &Expect<'_>) -> TestResult {
    let output = chainiac(args)?;
    let stderr = String::from_utf8(output.stderr)?;
    let context = format!("chainiac {args:?}:\n{stderr}");
    if output.status.code() != Some(expect.code) {
        return Err(format!(
            "exit code {:?}, expected {}: {context}",
            output.status.code(),
            expect.code
        )
        .into());
    }
    for banned in ["stack backtrace", "Stack backtrace", "   0: "] {
        if stderr.contains(banned) {
            return Err(format!("a stack trace was printed: {context}").into());
        }
    }
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    for (i, line) in lines.iter().enumerate() {
        let text = line
            .trim_start_matches("error: ")
            .trim_start_matches("  caused by: ")
            .trim();
        if lines[..i].iter().any(|earlier| earlier.contains(text)) {
            return Err(format!("a line repeats what was said: {context}").into());
        }
    }
    for name in expect.names {
        if !stderr.contains(name) {
            return Err(format!("the report does not name {name:?}: {context}").into());
        }
    }
    if let Some(hint) = expect.hint {
        let line = stderr
            .lines()
            .find(|l| l.starts_with("hint: "))
            .ok_or_else(|| format!("no hint: {context}"))?;
        if !line.contains(hint) {
            return Err(format!("the hint does not say {hint:?}: {context}").into());
        }
    }
    Ok(())
}

#[test]
fn every_command_reports_the_usual_mistakes_clearly() -> TestResult {
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let missing = scratch.join("nonexistent.toml");
    let bad_toml = scratch.join("bad.toml");
    std::fs::write(&bad_toml, "this is [[ not toml")?;
    let not_json = scratch.join("bundle.json");
    std::fs::write(&not_json, "not json")?;
    let bad_roster = scratch.join("roster.json");
    std::fs::write(&bad_roster, "{\"not\": \"a list\"}")?;
    let open_key = scratch.join("open.key");
    std::fs::write(&open_key, format!("{}\n", "11".repeat(32)))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644))?;
    }
    // A project directory whose nodes are down.
    let project = scratch.join("project");
    std::fs::create_dir_all(&project)?;
    std::fs::write(
        project.join("project.json"),
        format!(
            "{{\"name\": \"hello\", \"policy_chain\": \"{0}\", \"release_chain\": \"{0}\", \"nodes\": [\"127.0.0.1:1\"]}}",
            "00".repeat(32)
        ),
    )?;
    // One running node, for unknown chains and projects.
    let mut node = NodeProcess::init(
        Path::new(env!("CARGO_BIN_EXE_chainiac")),
        &scratch.join("node"),
    )?;
    node.start(&[])?;
    let peer = node.address()?;
    let api = node.api.to_string();
    let client = scratch.join("client");
    let unknown = "ab".repeat(32);
    let down_peer = peer.replace(
        &format!(
            "/tcp/{}/",
            peer.split("/tcp/")
                .nth(1)
                .and_then(|r| r.split('/').next())
                .unwrap_or("0")
        ),
        "/tcp/1/",
    );

    let config_missing = Expect {
        names: &["nonexistent.toml"],
        hint: Some("chainiac node init --dir"),
        code: 1,
    };
    check(
        &["node", "status", "--config", path(&missing)],
        &config_missing,
    )?;
    check(
        &["node", "run", "--config", path(&missing)],
        &config_missing,
    )?;
    check(
        &["node", "status", "--config", path(&bad_toml)],
        &Expect {
            names: &["bad.toml", "not a valid chainiac configuration"],
            hint: None,
            code: 1,
        },
    )?;
    check(
        &["node", "init", "--dir", path(&node.dir)],
        &Expect {
            names: &["already holds a node"],
            hint: None,
            code: 1,
        },
    )?;
    check(
        &[
            "node",
            "status",
            "--config",
            path(&missing),
            "--api",
            "127.0.0.1:1",
        ],
        &Expect {
            names: &["127.0.0.1:1", "is the node running?"],
            hint: Some("chainiac node run"),
            code: 3,
        },
    )?;
    check(
        &[
            "node",
            "status",
            "--config",
            path(&missing),
            "--api",
            "not-an-address",
        ],
        &Expect {
            names: &["not-an-address"],
            hint: None,
            code: 2,
        },
    )?;
    check(
        &[
            "release",
            "sign",
            "--bundle",
            path(&not_json),
            "--key",
            path(&open_key),
        ],
        &Expect {
            names: &["bundle.json", "is not a release bundle"],
            hint: Some("chainiac release create"),
            code: 1,
        },
    )?;
    check(
        &[
            "release",
            "sign",
            "--bundle",
            path(&scratch.join("missing.json")),
            "--key",
            "k",
        ],
        &Expect {
            names: &["missing.json"],
            hint: None,
            code: 1,
        },
    )?;
    check(
        &[
            "release",
            "publish",
            "--bundle",
            path(&not_json),
            "--project-dir",
            path(&scratch.join("nowhere")),
        ],
        &Expect {
            names: &["bundle.json"],
            hint: Some("chainiac release create"),
            code: 1,
        },
    )?;
    check(
        &[
            "project",
            "create",
            "hello",
            "--dir",
            path(&scratch.join("new")),
            "--roster",
            path(&scratch.join("no-roster.json")),
            "--node",
            &api,
        ],
        &Expect {
            names: &["no-roster.json"],
            hint: None,
            code: 1,
        },
    )?;
    check(
        &[
            "project",
            "create",
            "hello",
            "--dir",
            path(&scratch.join("new2")),
            "--roster",
            path(&bad_roster),
            "--node",
            &api,
        ],
        &Expect {
            names: &["roster.json", "is not a roster file"],
            hint: Some("node.pub.json"),
            code: 1,
        },
    )?;
    check(
        &["project", "show", "--dir", path(&project)],
        &Expect {
            names: &["127.0.0.1:1"],
            hint: Some("no node answered"),
            code: 3,
        },
    )?;
    check(
        &["project", "show", "--dir", path(&scratch.join("nowhere"))],
        &Expect {
            names: &["nowhere", "project directory"],
            hint: None,
            code: 1,
        },
    )?;
    check(
        &["client", "--dir", path(&client), "sync"],
        &Expect {
            names: &["no peer to ask"],
            hint: Some("--peer"),
            code: 2,
        },
    )?;
    check(
        &[
            "client",
            "--dir",
            path(&client),
            "--peer",
            "not-a-multiaddress",
            "sync",
        ],
        &Expect {
            names: &["not-a-multiaddress"],
            hint: None,
            code: 1,
        },
    )?;
    check(
        &["client", "--dir", path(&client), "verify", "nosuchproject"],
        &Expect {
            names: &["nosuchproject", "not followed"],
            hint: None,
            code: 1,
        },
    )?;
    check(
        &[
            "client",
            "--dir",
            path(&scratch.join("client2")),
            "--peer",
            &down_peer,
            "--timeout",
            "1",
            "follow",
            &unknown,
        ],
        &Expect {
            names: &["answered within 1 s"],
            hint: Some("check the peer addresses"),
            code: 3,
        },
    )?;
    check(
        &[
            "client",
            "--dir",
            path(&scratch.join("client3")),
            "--peer",
            &peer,
            "follow",
            &unknown,
        ],
        &Expect {
            names: &["does not hold this chain"],
            hint: None,
            code: 5,
        },
    )?;
    check(
        &[
            "client",
            "--dir",
            path(&scratch.join("client4")),
            "--peer",
            &peer,
            "follow",
            "not-hex",
        ],
        &Expect {
            names: &["64 hex characters"],
            hint: None,
            code: 1,
        },
    )?;
    check(
        &[
            "anchor",
            "verify",
            "--proof",
            path(&scratch.join("no-proof.json")),
            "--rpc",
            "http://127.0.0.1:1",
        ],
        &Expect {
            names: &["no-proof.json"],
            hint: None,
            code: 1,
        },
    )?;
    check(
        &["anchor", "list", "--node", "127.0.0.1:1"],
        &Expect {
            names: &["127.0.0.1:1"],
            hint: Some("no node answered"),
            code: 3,
        },
    )?;
    check(
        &[
            "release",
            "attest",
            "--bundle",
            path(&not_json),
            "--key",
            path(&open_key),
        ],
        &Expect {
            names: &["bundle.json"],
            hint: Some("chainiac release create"),
            code: 1,
        },
    )?;
    check(
        &[
            "testnet",
            "status",
            "--dir",
            path(&scratch.join("no-testnet")),
        ],
        &Expect {
            names: &["no testnet in", "chainiac testnet up"],
            hint: None,
            code: 1,
        },
    )?;
    // A key file others can read is refused, naming the fix.
    let bundle = scratch.join("empty-bundle.json");
    std::fs::write(
        &bundle,
        "{\"manifest\": \"00\", \"signatures\": [], \"files\": {}}",
    )?;
    check(
        &[
            "release",
            "sign",
            "--bundle",
            path(&bundle),
            "--key",
            path(&open_key),
        ],
        &Expect {
            names: &["open.key", "chmod 600"],
            hint: None,
            code: 1,
        },
    )?;
    Ok(())
}

#[test]
fn a_killed_testnet_node_is_brought_back_by_testnet_up_and_catches_up() -> TestResult {
    let dir = tempfile::tempdir()?;
    let net = dir.path().join("net");
    let run = |args: &[&str]| chainiac(args);
    let up = run(&["testnet", "up", "--nodes", "4", "--dir", path(&net)])?;
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let testnet: Value = serde_json::from_str(&std::fs::read_to_string(net.join("testnet.json"))?)?;
    let api = |i: usize| -> TestResult<std::net::SocketAddr> {
        Ok(testnet["nodes"][i]["api"].as_str().ok_or("api")?.parse()?)
    };
    let roster: Value = serde_json::from_str(&std::fs::read_to_string(net.join("roster.json"))?)?;
    let token = chainiac_api::ApiToken::load(&net.join("api.token"))?;
    let data = DataChain::create_over_http(api(0)?, &token, &roster)?;
    let chain = data.id;
    let head = |i: usize| -> Option<u64> {
        let address = api(i).ok()?;
        http(address, "GET", &format!("/chains/{chain}"), None)
            .ok()
            .and_then(|(s, v)| if s == 200 { v["index"].as_u64() } else { None })
    };
    wait_for("node-3 holds the chain", || head(3).is_some())?;

    // Kill node-3 the hard way; the status says so and fails.
    let pid = testnet["nodes"][3]["pid"].as_u64().ok_or("pid")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid)?),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    wait_for("node-3 is gone", || {
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    })?;
    let status = run(&["testnet", "status", "--dir", path(&net)])?;
    let stdout = String::from_utf8(status.stdout)?;
    let stderr = String::from_utf8(status.stderr)?;
    assert_eq!(status.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("stopped"), "{stdout}");
    assert!(
        stderr.contains("node-3") && stderr.contains("testnet up"),
        "{stderr}"
    );

    // Three of four witnesses still sign.
    for i in 1..=3u64 {
        let (status, body) = data.append_over_http(api(0)?, &token, &i.to_le_bytes())?;
        assert_eq!(status, 200, "{body}");
    }
    let running_pids: Vec<u64> = (0..3)
        .filter_map(|i| testnet["nodes"][i]["pid"].as_u64())
        .collect();
    let healed = run(&["testnet", "up", "--dir", path(&net)])?;
    assert!(
        healed.status.success(),
        "{}",
        String::from_utf8_lossy(&healed.stderr)
    );
    let after: Value = serde_json::from_str(&std::fs::read_to_string(net.join("testnet.json"))?)?;
    let after_pids: Vec<u64> = (0..3)
        .filter_map(|i| after["nodes"][i]["pid"].as_u64())
        .collect();
    assert_eq!(
        after_pids, running_pids,
        "the running nodes were left alone"
    );
    wait_for("node-3 catches up", || head(3) == Some(3))?;
    let status = run(&["testnet", "status", "--dir", path(&net)])?;
    assert!(status.status.success());

    let restart = run(&[
        "testnet",
        "restart",
        "--dir",
        path(&net),
        "--node",
        "node-2",
    ])?;
    assert!(
        restart.status.success(),
        "{}",
        String::from_utf8_lossy(&restart.stderr)
    );
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(head(2), Some(3));
    let down = run(&["testnet", "down", "--dir", path(&net)])?;
    assert!(down.status.success());
    Ok(())
}
