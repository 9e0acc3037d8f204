//! Just enough HTTP and WebDriver for the dashboard benchmark: GET requests over a
//! plain TCP connection, and a Chromium session driven through chromedriver's
//! W3C WebDriver endpoints (new session, navigate, execute script, delete session).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// One HTTP/1.1 request on a new connection (closed after it); returns the status and the body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, String)> {
    let mut stream =
        TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    // Read the head, then exactly Content-Length bytes (some servers keep the
    // connection open after answering).
    let mut response = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            bail!("{method} {path}: the connection closed before a response");
        }
        response.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&response[..head_end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("a response without a status")?;
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    });
    match length {
        Some(len) => {
            while response.len() < head_end + len {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    bail!("{method} {path}: the body ended early");
                }
                response.extend_from_slice(&buf[..n]);
            }
        }
        None => {
            stream.read_to_end(&mut response)?;
        }
    }
    Ok((
        status,
        String::from_utf8_lossy(&response[head_end..]).to_string(),
    ))
}

/// chromedriver and one headless Chromium session; both end when dropped.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

impl Browser {
    /// Starts `chromedriver` and a headless session (with `chromium` as the browser
    /// binary when given).
    pub fn start(chromedriver: &str, chromium: Option<&str>) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {chromedriver}"))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut browser = Self {
            driver,
            addr,
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                bail!("chromedriver did not listen on {addr}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut options = json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--window-size=1500,1000"]});
        if let Some(binary) = chromium {
            options["binary"] = json!(binary);
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}});
        let created = browser.call("POST", "/session", Some(&caps))?;
        browser.session = created["sessionId"]
            .as_str()
            .context("no session id")?
            .to_string();
        Ok(browser)
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let (status, text) = http(self.addr, method, path, body)?;
        let value: Value =
            serde_json::from_str(&text).with_context(|| format!("chromedriver answered {text}"))?;
        if status != 200 {
            bail!(
                "chromedriver {method} {path}: {}",
                value["value"]["message"]
            );
        }
        Ok(value["value"].clone())
    }

    /// Opens `url` (returns once the page has loaded).
    pub fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call(
            "POST",
            &format!("/session/{}/url", self.session),
            Some(&json!({"url": url})),
        )?;
        Ok(())
    }

    /// Runs `script` (a function body) in the page and returns its result.
    pub fn execute(&self, script: &str) -> anyhow::Result<Value> {
        self.call(
            "POST",
            &format!("/session/{}/execute/sync", self.session),
            Some(&json!({"script": script, "args": []})),
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
