//! Network namespaces made by a test, for node processes that must not share loopback: each
//! node gets its own namespace and address, attached by a veth pair to a bridge in the test's
//! namespace, and optionally `tc netem` delays what it sends to the other nodes (not what it
//! sends to the test, so that polling a node's API measures the network, not the poll). Needs
//! root, `ip` and `tc`, and for delays a kernel with the `prio` and `netem` queueing
//! disciplines; [`Namespaces::create`] says which is missing. Everything is removed on drop.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use crate::TestResult;

/// The namespaces of one test.
pub struct Namespaces {
    tag: String,
    subnet: [u8; 3],
    bridge_made: bool,
    count: usize,
}

fn run(args: &[&str]) -> TestResult {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", args[0]))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into())
    }
}

/// Whether this process runs as root (the effective uid of `/proc/self/status`).
fn effective_user_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
            .unwrap_or(false)
    })
}

/// A /24 under 10.214/16 that no route of this machine uses yet.
fn free_subnet(start: u8) -> TestResult<[u8; 3]> {
    for offset in 0..250u16 {
        let third = ((u16::from(start) + offset) % 250) as u8;
        let output = Command::new("ip")
            .args(["-4", "route", "show", &format!("10.214.{third}.0/24")])
            .output()?;
        if output.status.success() && output.stdout.is_empty() {
            return Ok([10, 214, third]);
        }
    }
    Err("no free /24 under 10.214.0.0/16".into())
}

impl Namespaces {
    /// `count` namespaces (at most 250) on a bridge; with `delay`, every packet a namespace
    /// sends to another waits that long. `Ok(Err(reason))` when this machine cannot (not root,
    /// no `ip` or `tc`, no netem in the kernel); `Err` when making them failed otherwise.
    pub fn create(count: usize, delay: Option<Duration>) -> TestResult<Result<Self, String>> {
        if count > 250 {
            return Err("at most 250 namespaces".into());
        }
        if !effective_user_is_root() {
            return Ok(Err("creating network namespaces needs root".into()));
        }
        for tool in ["ip", "tc"] {
            if Command::new(tool).arg("-V").output().is_err() {
                return Ok(Err(format!("`{tool}` (iproute2) is not installed")));
            }
        }
        let pid = std::process::id();
        let namespaces = Self {
            tag: format!("cx{pid}"),
            subnet: free_subnet((pid % 250) as u8)?,
            bridge_made: false,
            count: 0,
        };
        match namespaces.build(count, delay) {
            Ok(namespaces) => Ok(Ok(namespaces)),
            Err(error) if error.to_string().contains("qdisc kind is unknown") => Ok(Err(format!(
                "the kernel has no `prio` or `netem` queueing discipline: {error}"
            ))),
            Err(error) => Err(error),
        }
    }

    fn build(mut self, count: usize, delay: Option<Duration>) -> TestResult<Self> {
        let bridge = self.bridge();
        let gateway = format!("{}/24", self.gateway());
        run(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        self.bridge_made = true;
        run(&["ip", "addr", "add", &gateway, "dev", &bridge])?;
        run(&["ip", "link", "set", &bridge, "up"])?;
        let subnet = format!(
            "{}.{}.{}.0/24",
            self.subnet[0], self.subnet[1], self.subnet[2]
        );
        for i in 0..count {
            let name = self.name(i);
            let (outer, inner) = (format!("{}v{i}", self.tag), format!("{}e{i}", self.tag));
            run(&["ip", "netns", "add", &name])?;
            self.count = i + 1;
            let exec = |args: &[&str]| {
                let mut all = vec!["ip", "netns", "exec", name.as_str()];
                all.extend_from_slice(args);
                run(&all)
            };
            run(&[
                "ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ])?;
            run(&["ip", "link", "set", &inner, "netns", &name])?;
            run(&["ip", "link", "set", &outer, "master", &bridge, "up"])?;
            exec(&["ip", "link", "set", "lo", "up"])?;
            exec(&[
                "ip",
                "addr",
                "add",
                &format!("{}/24", self.address(i)),
                "dev",
                &inner,
            ])?;
            exec(&["ip", "link", "set", &inner, "up"])?;
            if let Some(delay) = delay {
                // Band 2 (no delay) by default and for the test's address; band 3 (netem) for
                // the other nodes.
                let delay = format!("{}ms", delay.as_millis());
                exec(&[
                    "tc", "qdisc", "add", "dev", &inner, "root", "handle", "1:", "prio", "bands",
                    "3", "priomap", "1", "1", "1", "1", "1", "1", "1", "1", "1", "1", "1", "1",
                    "1", "1", "1", "1",
                ])?;
                exec(&[
                    "tc", "qdisc", "add", "dev", &inner, "parent", "1:3", "handle", "30:", "netem",
                    "delay", &delay,
                ])?;
                exec(&[
                    "tc",
                    "filter",
                    "add",
                    "dev",
                    &inner,
                    "parent",
                    "1:",
                    "protocol",
                    "ip",
                    "prio",
                    "1",
                    "u32",
                    "match",
                    "ip",
                    "dst",
                    &format!("{}/32", self.gateway()),
                    "flowid",
                    "1:2",
                ])?;
                exec(&[
                    "tc", "filter", "add", "dev", &inner, "parent", "1:", "protocol", "ip", "prio",
                    "2", "u32", "match", "ip", "dst", &subnet, "flowid", "1:3",
                ])?;
            }
        }
        Ok(self)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    fn name(&self, i: usize) -> String {
        format!("{}n{i}", self.tag)
    }

    /// The test's address on the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], 1)
    }

    /// The address of namespace `i`.
    pub fn address(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], i as u8 + 2)
    }

    /// The command prefix that runs a program in namespace `i`.
    pub fn exec_prefix(&self, i: usize) -> Vec<String> {
        ["ip", "netns", "exec"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain([self.name(i)])
            .collect()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for i in 0..self.count {
            // Deleting a namespace deletes its end of the veth pair, and so the pair.
            let _ = run(&["ip", "netns", "del", &self.name(i)]);
            // Gone with the namespace, unless the pair was made but never moved into it.
            let _ = run(&["ip", "link", "del", &format!("{}v{i}", self.tag)]);
        }
        if self.bridge_made {
            let _ = run(&["ip", "link", "del", &self.bridge()]);
        }
    }
}
