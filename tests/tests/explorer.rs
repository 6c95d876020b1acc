//! The node explorer in a real browser: headless Chromium, driven over WebDriver by
//! chromedriver (Debian's `chromium` and `chromium-driver`, installed by testnet/setup.sh),
//! opens a live node's page, shows the project, its policy and release with their signers and
//! artifact hashes, the timeline and the rosters, and shows a release published while the page
//! stays open without a reload. `CHAINIAC_EXPLORER_SCREENSHOT=FILE` saves a screenshot (the one
//! in docs/operator.md was made so).
#![allow(clippy::expect_used)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use chainiac_tests::process::free_port;
use chainiac_tests::{Cluster, Project, TestResult};
use serde_json::{Value, json};

/// A chromedriver process, stopped when dropped.
struct Driver {
    child: Child,
    address: SocketAddr,
}

impl Driver {
    fn start() -> TestResult<Self> {
        let program =
            std::env::var("CHAINIAC_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = free_port()?;
        let child = Command::new(&program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {program} ({e}): the explorer's browser test needs Chromium and \
                     chromedriver; run ./testnet/setup.sh (Debian: apt-get install chromium chromium-driver)"
                )
            })?;
        let driver = Self {
            child,
            address: ([127, 0, 0, 1], port).into(),
        };
        driver.wait("chromedriver to answer", Duration::from_secs(30), || {
            Ok(driver
                .request("GET", "/status", None)
                .is_ok_and(|(_, status)| status["value"]["ready"] == json!(true)))
        })?;
        Ok(driver)
    }

    /// One WebDriver request: its HTTP status and JSON answer (`null` when empty). Error
    /// statuses are answers here, not errors.
    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> TestResult<(u16, Value)> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .build()
            .into();
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.address))
            .header("Content-Type", "application/json");
        let mut response = match body {
            Some(body) => agent.run(request.body(body.to_string())?)?,
            // A POST without a body still sends `Content-Length: 0`.
            None if method == "POST" => agent.run(request.body("")?)?,
            None => agent.run(request.body(())?)?,
        };
        let status = response.status().as_u16();
        let answer = response.body_mut().with_config().read_to_vec()?;
        let answer = if answer.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&answer)?
        };
        Ok((status, answer))
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> TestResult<Value> {
        let (status, answer) = self.request(method, path, body)?;
        if status != 200 {
            return Err(format!("WebDriver {method} {path} answered {status}: {answer}").into());
        }
        Ok(answer["value"].clone())
    }

    /// Polls `done` every 100 ms until it holds; fails after `limit`.
    fn wait(
        &self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut() -> TestResult<bool>,
    ) -> TestResult {
        let start = Instant::now();
        while !done()? {
            if start.elapsed() > limit {
                return Err(format!("timed out after {limit:?} waiting for {what}").into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser session on one page.
struct Page<'a> {
    driver: &'a Driver,
    session: String,
}

impl<'a> Page<'a> {
    fn open(driver: &'a Driver, url: &str) -> TestResult<Self> {
        let chromium =
            std::env::var("CHAINIAC_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let created = driver.call(
            "POST",
            "/session",
            Some(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1400,1100"],
                },
            }}})),
        )?;
        let session = created["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session id in {created}"))?
            .to_owned();
        let page = Self { driver, session };
        page.driver.call(
            "POST",
            &format!("/session/{}/url", page.session),
            Some(&json!({ "url": url })),
        )?;
        Ok(page)
    }

    fn run(&self, script: &str) -> TestResult<Value> {
        self.driver.call(
            "POST",
            &format!("/session/{}/execute/sync", self.session),
            Some(&json!({ "script": script, "args": [] })),
        )
    }

    /// The page's visible text.
    fn text(&self) -> TestResult<String> {
        Ok(self
            .run("return document.body.innerText")?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Waits until the page's text holds every one of `wanted`.
    fn wait_for_text(&self, wanted: &[&str]) -> TestResult<String> {
        let mut last = String::new();
        let outcome = self.driver.wait(
            &format!("the page to show {wanted:?}"),
            Duration::from_secs(60),
            || {
                last = self.text()?;
                Ok(wanted.iter().all(|w| last.contains(w)))
            },
        );
        outcome.map_err(|e| format!("{e}; the page shows:\n{last}"))?;
        Ok(last)
    }

    fn screenshot(&self) -> TestResult<Vec<u8>> {
        let encoded = self.driver.call(
            "GET",
            &format!("/session/{}/screenshot", self.session),
            None,
        )?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().ok_or("the screenshot is not a string")?)?;
        Ok(png)
    }
}

impl Drop for Page<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .call("DELETE", &format!("/session/{}", self.session), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_explorer_shows_a_live_node_and_a_release_published_while_it_is_open() -> TestResult {
    let cluster = Cluster::start(4, &[]).await?;
    let leader = cluster.core(0);
    let roster = cluster.roster(&[0, 1, 2, 3])?;
    let timeline = cluster.create_timeline(0, &[0, 1, 2, 3], 1).await?;
    let mut project = Project::create_on_timeline(&leader, "explored", &roster, timeline).await?;
    let first = project.next_release("1.0.0");
    let first_hash = first.files[0].0.hash.to_hex();
    project.publish_next(&leader, "1.0.0", None).await?;

    let api = cluster.api(0)?;
    let driver = tokio::task::block_in_place(Driver::start)?;
    let url = format!("http://{api}/");
    let page = tokio::task::block_in_place(|| Page::open(&driver, &url))?;
    let developer = project.policy.developer_keys[0].to_hex();
    let shown = tokio::task::block_in_place(|| {
        page.wait_for_text(&[
            "chainiac node explorer",
            "explored",
            "latest 1.0.0",
            // Hashes and keys show their first 12 hex digits.
            &first_hash[..12],
            &developer[..12],
            &roster.hash().to_hex()[..12],
            &timeline.to_hex()[..12],
            "3 of 4",
            "fresh",
        ])
    })?;
    assert!(shown.contains("3 peer(s)"), "{shown}");
    assert!(
        !shown.contains("cannot read the node's API"),
        "no error banner: {shown}"
    );

    // Published while the page stays open: it appears without a reload.
    let marker = "explorerLoadedOnce";
    tokio::task::block_in_place(|| page.run(&format!("window.{marker} = true; return 0")))?;
    project.publish_next(&leader, "1.1.0", None).await?;
    let shown = tokio::task::block_in_place(|| page.wait_for_text(&["latest 1.1.0"]))?;
    assert!(
        shown.contains("1.0.0"),
        "the older release is still listed: {shown}"
    );
    let same_page =
        tokio::task::block_in_place(|| page.run(&format!("return window.{marker} === true")))?;
    assert_eq!(same_page, json!(true), "the page was not reloaded");

    let png = tokio::task::block_in_place(|| page.screenshot())?;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG screenshot");
    if let Ok(path) = std::env::var("CHAINIAC_EXPLORER_SCREENSHOT") {
        std::fs::write(&path, &png)?;
    }
    drop(page);
    drop(driver);
    cluster.shutdown().await;
    Ok(())
}
