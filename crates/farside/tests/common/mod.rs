//! Shared harness for Farside's end-to-end tests.
//!
//! - [`Server`] starts `farside serve` with a temporary config on free loopback ports, waits until it answers a
//!   STUN Binding over UDP (bounded), kills it on drop, and prints its captured output when a test fails.
//! - [`run_tool`] runs a third-party peer with a time limit and captures what it prints.
//! - [`require_tool`] skips a test when a peer is not installed, unless `FARSIDE_REQUIRE_PEERS=1` (set in CI).
//! - [`stun`] hand-rolls the few STUN messages the tests need, so they do not depend on the codec crate's API.
//!
//! Development aid: with `FARSIDE_TEST_AGAINST=coturn` the same tests start coturn's `turnserver` (STUN only, on
//! the same loopback addresses) instead of Farside. This validates the tests themselves against a reference
//! server; assertions on Farside's `/metrics` are skipped in that mode, since coturn has none.
//!
//! All traffic stays on 127.0.0.0/8 and ::1; every wait is bounded.

#![allow(dead_code, unreachable_pub, missing_docs)]
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to answer its first Binding.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// The loopback address the tests use as RFC 5780 alternate address.
pub const ALT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Which server the tests run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Farside,
    /// Development aid only: `FARSIDE_TEST_AGAINST=coturn`.
    Coturn,
}

pub fn backend() -> Backend {
    match std::env::var("FARSIDE_TEST_AGAINST").as_deref() {
        Ok("coturn") => Backend::Coturn,
        Ok("") | Ok("farside") | Err(_) => Backend::Farside,
        Ok(other) => panic!("FARSIDE_TEST_AGAINST={other}: expected `farside` or `coturn`"),
    }
}

/// True when a missing peer must fail the test rather than skip it.
fn peers_required() -> bool {
    std::env::var("FARSIDE_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// Whether `tool` is on `PATH`. If not: prints `SKIP <test>: <tool> not installed` and returns false, or panics
/// when `FARSIDE_REQUIRE_PEERS=1`.
pub fn require_tool(test: &str, tool: &str) -> bool {
    if find_in_path(tool).is_some() {
        return true;
    }
    if peers_required() {
        panic!("{test}: {tool} not installed, and FARSIDE_REQUIRE_PEERS=1");
    }
    skip(test, &format!("{tool} not installed"));
    false
}

/// A Python interpreter that can `import module`: `FARSIDE_PYTHON`, else the one
/// `scripts/install-peers` set up (`target/peers-venv`), else `python3`. If none: prints `SKIP`
/// and returns `None`, or panics when `FARSIDE_REQUIRE_PEERS=1`.
pub fn require_python_module(test: &str, module: &str) -> Option<String> {
    let venv = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/peers-venv/bin/python"
    );
    let python = std::env::var("FARSIDE_PYTHON").unwrap_or_else(|_| {
        if std::path::Path::new(venv).exists() {
            venv.into()
        } else {
            "python3".into()
        }
    });
    let ok = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    if peers_required() {
        panic!(
            "{test}: {python} cannot import {module} (pip install {module}), and FARSIDE_REQUIRE_PEERS=1"
        );
    }
    skip(test, &format!("{python} cannot import {module}"));
    None
}

/// Prints `SKIP <test>: <reason>` straight to the process's stderr, so it shows even while libtest captures
/// the test's output (the capture only covers the print macros).
pub fn skip(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {reason}");
}

/// Prints `NOTE <test>: <text>` to the process's stderr (visible even when the test passes).
pub fn note(test: &str, text: &str) {
    let _ = writeln!(std::io::stderr(), "NOTE {test}: {text}");
}

pub fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------------------------------------
// Ports

static NEXT_PORT: AtomicU32 = AtomicU32::new(0);

/// Low bound of the range the tests take server ports from: below Linux's default ephemeral range
/// (32768-60999), so that clients' ephemeral ports never collide with a server port of a parallel test.
const PORT_RANGE: (u32, u32) = (20000, 32000);

/// Finds `count` consecutive ports, free for UDP and TCP on every address of `ips`, and returns the first.
/// Each test process starts at a different offset (by pid), and threads in one process never get the same block.
pub fn free_ports(ips: &[IpAddr], count: u16) -> u16 {
    let span = PORT_RANGE.1 - PORT_RANGE.0;
    let _ = NEXT_PORT.compare_exchange(
        0,
        (std::process::id().wrapping_mul(7919)) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..2000 {
        let offset = NEXT_PORT.fetch_add(u32::from(count) + 1, Ordering::SeqCst) % span;
        let base = PORT_RANGE.0 + offset;
        if base + u32::from(count) >= PORT_RANGE.1 {
            continue;
        }
        let base = base as u16;
        let all_free = (0..count).all(|i| {
            ips.iter().all(|ip| {
                let addr = SocketAddr::new(*ip, base + i);
                UdpSocket::bind(addr).is_ok() && TcpListener::bind(addr).is_ok()
            })
        });
        if all_free {
            return base;
        }
    }
    panic!("no block of {count} free ports on {ips:?} in {PORT_RANGE:?}");
}

/// Whether ::1 can be bound here (containers often run without IPv6).
pub fn ipv6_loopback_available() -> bool {
    UdpSocket::bind("[::1]:0").is_ok()
}

// ---------------------------------------------------------------------------------------------------------
// Server

/// What to configure; mirrors the `[stun]` table of Farside's config.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Primary IPs; all share one port chosen by the harness.
    pub listen_ips: Vec<IpAddr>,
    pub alternate: Option<IpAddr>,
    pub tcp: bool,
    pub workers: u32,
    pub software: Option<String>,
    /// Further `key = value` lines for the `[stun]` table (Farside only).
    pub extra_stun: Vec<String>,
    /// Further tables (e.g. `"[turn]\nenabled = true"`), appended after `[stun]` (Farside only).
    pub extra_tables: Vec<String>,
    /// Fixed (STUN primary port, admin port) instead of free ones the harness picks; the
    /// alternate port is the primary + 1. Partner servers need the same ports.
    pub ports: Option<(u16, u16)>,
    /// Environment variables for the server's process (Farside only).
    pub env: Vec<(String, String)>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen_ips: vec![LOCALHOST],
            alternate: None,
            tcp: true,
            workers: 2,
            software: None,
            extra_stun: Vec::new(),
            extra_tables: Vec::new(),
            ports: None,
            env: Vec::new(),
        }
    }
}

impl ServerConfig {
    pub fn with_alternate(mut self, ip: IpAddr) -> Self {
        self.alternate = Some(ip);
        self
    }
    pub fn listen_on(mut self, ips: &[IpAddr]) -> Self {
        self.listen_ips = ips.to_vec();
        self
    }
    /// Uses these ports (see [`ServerConfig::ports`]).
    pub fn on_ports(mut self, stun: u16, admin: u16) -> Self {
        self.ports = Some((stun, admin));
        self
    }
    /// Adds a whole table after `[stun]`.
    pub fn with_table(mut self, table: &str) -> Self {
        self.extra_tables.push(table.to_owned());
        self
    }
    /// Sets an environment variable of the server's process.
    pub fn with_env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
    /// Adds a `key = value` line to the `[stun]` table.
    pub fn with(mut self, line: &str) -> Self {
        self.extra_stun.push(line.to_owned());
        self
    }
}

/// A running STUN server, killed on drop.
pub struct Server {
    pub backend: Backend,
    child: Mutex<Child>,
    /// First listen address (UDP and TCP).
    pub primary: SocketAddr,
    /// Every primary listen address.
    pub listen: Vec<SocketAddr>,
    pub alternate: Option<IpAddr>,
    /// Port of the RFC 5780 alternate sockets (primary port + 1).
    pub alt_port: u16,
    /// Admin HTTP address (Farside only).
    pub admin: SocketAddr,
    pub config_text: String,
    output: Arc<Mutex<String>>,
    dir: PathBuf,
    name: String,
}

static SERVER_SEQ: AtomicU32 = AtomicU32::new(0);

impl Server {
    /// Starts the server and waits (bounded) until it answers a Binding over UDP on the primary address.
    /// A port the harness chose that another process bound between the check and the start
    /// ("Address already in use") gets the server started again on other ports, twice at most.
    pub fn start(name: &str, cfg: ServerConfig) -> Server {
        let mut attempt = 1;
        loop {
            let server = Self::start_once(name, &cfg);
            if !server.port_taken_at_start() || cfg.ports.is_some() || attempt == 3 {
                server.wait_ready(cfg.tcp);
                return server;
            }
            eprintln!("{name}: a port was taken before the server bound it; again on others");
            attempt += 1;
        }
    }

    /// Whether the server exited during its start because an address was in use.
    fn port_taken_at_start(&self) -> bool {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let Ok(sock) = UdpSocket::bind(SocketAddr::new(self.primary.ip(), 0)) else {
            return false;
        };
        while Instant::now() < deadline {
            if self.exited().is_some() {
                // Its last words may still be on their way through the capture thread.
                return wait_until(Duration::from_secs(1), || {
                    self.logs().contains("Address already in use")
                });
            }
            // Running (Farside says so; coturn answers).
            if self.logs().contains("S010 running")
                || stun::udp_binding_once(&sock, self.primary, Duration::from_millis(20)).is_some()
            {
                return false;
            }
        }
        false
    }

    fn start_once(name: &str, cfg: &ServerConfig) -> Server {
        let mut ips = cfg.listen_ips.clone();
        if let Some(alt) = cfg.alternate {
            ips.push(alt);
        }
        // primary port, alternate port (primary + 1), admin port.
        let (port, admin_port) = cfg.ports.unwrap_or_else(|| {
            let p = free_ports(&ips, 3);
            (p, p + 2)
        });
        let listen: Vec<SocketAddr> = cfg
            .listen_ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, port))
            .collect();
        let alt_port = port + 1;
        let admin = SocketAddr::new(LOCALHOST, admin_port);

        let seq = SERVER_SEQ.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("farside-test-{}-{seq}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();

        let backend = backend();
        let (mut command, config_text) = match backend {
            Backend::Farside => farside_command(&dir, cfg, &listen, alt_port, admin),
            Backend::Coturn => coturn_command(&dir, cfg, port, alt_port),
        };
        if backend == Backend::Farside {
            command.envs(cfg.env.iter().map(|(k, v)| (k, v)));
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {command:?}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        capture(child.stdout.take().unwrap(), output.clone());
        capture(child.stderr.take().unwrap(), output.clone());

        Server {
            backend,
            child: Mutex::new(child),
            primary: listen[0],
            listen,
            alternate: cfg.alternate,
            alt_port,
            admin,
            config_text,
            output,
            dir,
            name: name.to_owned(),
        }
    }

    fn wait_ready(&self, tcp: bool) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let bind = if self.primary.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        let sock = UdpSocket::bind(bind).unwrap();
        loop {
            if let Some(status) = self.exited() {
                panic!(
                    "{}: server exited during startup with {status}\n{}",
                    self.name,
                    self.describe()
                );
            }
            if stun::udp_binding_once(&sock, self.primary, Duration::from_millis(100)).is_some() {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: no STUN answer on udp {} within {STARTUP_TIMEOUT:?}\n{}",
                    self.name,
                    self.primary,
                    self.describe()
                );
            }
        }
        if tcp {
            while TcpStream::connect_timeout(&self.primary, Duration::from_millis(200)).is_err() {
                if Instant::now() > deadline {
                    panic!(
                        "{}: tcp {} not accepting within {STARTUP_TIMEOUT:?}\n{}",
                        self.name,
                        self.primary,
                        self.describe()
                    );
                }
                thread::sleep(Duration::from_millis(50));
            }
            // The probe was a connection from the tests' own address: until the server has
            // seen it close, it counts against per-address limits a test is about to fill.
            if self.backend == Backend::Farside {
                let open = |m: &str| metric_sum(m, "farside_stun_tcp_connections_open");
                while self.metrics().is_none_or(|m| open(&m) > 0.0) && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// The `sqlite://` URL of the server's store (see `farside_command`).
    pub fn store_url(&self) -> String {
        format!("sqlite://{}", self.dir.join("farside.db").display())
    }

    /// The configuration file the server runs with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("farside.toml")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.lock().map(|c| c.id()).unwrap_or(0)
    }

    /// `Some(status)` if the server process has exited.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.child.lock().ok()?.try_wait().ok().flatten()
    }

    /// Panics (with the server's output) if the server died.
    pub fn assert_alive(&self, context: &str) {
        if let Some(status) = self.exited() {
            panic!(
                "{}: server died ({status}) {context}\n{}",
                self.name,
                self.describe()
            );
        }
    }

    /// Everything the server printed so far.
    pub fn logs(&self) -> String {
        self.output.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Runs `farside ARGS --config <this server's config>` (a user or secret command while the
    /// server runs) and asserts that it succeeded.
    pub fn cli(&self, args: &[&str]) -> ToolOutput {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend([
            "--config".to_string(),
            self.config_path().display().to_string(),
        ]);
        let out = run_tool(env!("CARGO_BIN_EXE_farside"), &all, Duration::from_secs(20));
        assert_eq!(out.code(), Some(0), "{}", out.describe());
        out
    }

    /// Waits up to 5 s for the server to log `line` (it polls its store once a second).
    pub fn wait_for_log(&self, line: &str) {
        assert!(
            wait_until(Duration::from_secs(5), || self.logs().contains(line)),
            "no {line:?} in the log\n{}",
            self.describe()
        );
    }

    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "--- {:?} config ---\n{}", self.backend, self.config_text);
        let _ = writeln!(s, "--- server output ---\n{}", tail(&self.logs(), 8000));
        s
    }

    /// Alternate (IP, port) pairs of RFC 5780: (primary IP, alt port), (alt IP, primary port), (alt IP, alt port).
    pub fn alt_addr(&self, change_ip: bool, change_port: bool) -> SocketAddr {
        let ip = if change_ip {
            self.alternate.expect("no alternate configured")
        } else {
            self.primary.ip()
        };
        let port = if change_port {
            self.alt_port
        } else {
            self.primary.port()
        };
        SocketAddr::new(ip, port)
    }

    /// GET /metrics from the admin listener, retrying for up to 5 s while it starts. None for coturn.
    pub fn metrics(&self) -> Option<String> {
        if self.backend != Backend::Farside {
            return None;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match http_get(self.admin, "/metrics") {
                Ok((200, body)) => return Some(body),
                Ok((code, body)) if Instant::now() > deadline => {
                    panic!(
                        "{}: GET /metrics -> {code}\n{body}\n{}",
                        self.name,
                        self.describe()
                    )
                }
                Err(e) if Instant::now() > deadline => {
                    panic!(
                        "{}: GET http://{}/metrics failed: {e}\n{}",
                        self.name,
                        self.admin,
                        self.describe()
                    )
                }
                _ => thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(child) = self.child.get_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "==== {} ({:?}) ====\n{}",
                self.name,
                self.backend,
                self.describe()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `text` with `enabled = false` for each part (TURN, SIP, RTP) it has no table for: left out,
/// a part runs when the host lets it (`config::host`), and a test's server runs only what the
/// test names, not a registrar on port 5060 of every address.
pub fn only_named_parts(text: &str) -> String {
    let mut out = text.to_string();
    for part in ["turn", "sip", "rtp"] {
        let header = format!("[{part}]");
        if !text.lines().any(|l| l.trim() == header) {
            let _ = write!(out, "\n{header}\nenabled = false\n");
        }
    }
    out
}

fn farside_command(
    dir: &Path,
    cfg: &ServerConfig,
    listen: &[SocketAddr],
    alt_port: u16,
    admin: SocketAddr,
) -> (Command, String) {
    let mut text = String::from("[stun]\n");
    let listen_list: Vec<String> = listen.iter().map(|a| format!("\"{a}\"")).collect();
    let _ = writeln!(text, "listen = [{}]", listen_list.join(", "));
    if let Some(alt) = cfg.alternate {
        let _ = writeln!(text, "alternate_address = \"{alt}\"");
        let _ = writeln!(text, "alternate_port = {alt_port}");
    }
    let _ = writeln!(text, "tcp = {}", cfg.tcp);
    let _ = writeln!(text, "workers = {}", cfg.workers);
    if let Some(sw) = &cfg.software {
        let _ = writeln!(text, "software = \"{sw}\"");
    }
    for line in &cfg.extra_stun {
        let _ = writeln!(text, "{line}");
    }
    for table in &cfg.extra_tables {
        let _ = writeln!(text, "\n{table}");
    }
    // Never the user's (or, as root, the system's) database.
    if !cfg.extra_tables.iter().any(|t| t.starts_with("[store]")) {
        let _ = writeln!(
            text,
            "\n[store]\nurl = \"sqlite://{}\"",
            dir.join("farside.db").display()
        );
    }
    // The API token and the first-run password beside the configuration too: with a
    // PostgreSQL store they would go to the data directory every server shares.
    let _ = writeln!(
        text,
        "\n[admin]\nlisten = \"{admin}\"\ntoken_file = \"{}\"\n\n[log]\nlevel = \"debug\"",
        dir.join("admin.token").display()
    );
    let text = only_named_parts(&text);
    let path = dir.join("farside.toml");
    std::fs::write(&path, &text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_farside"));
    cmd.arg("serve").arg("--config").arg(&path);
    (cmd, text)
}

/// coturn as a STUN-only server (no auth, TLS, DTLS or CLI; logs to stdout) on `ips`, `port` and `alt_port`. RFC
/// 5780 (and RFC 3489 CHANGE-REQUEST) is on when two IPs of one family are given. Shared by the loopback tests
/// and the NAT lab, so both judge Farside against the same reference.
pub fn coturn_stun_args(dir: &Path, ips: &[IpAddr], port: u16, alt_port: u16) -> Vec<String> {
    let mut args: Vec<String> = [
        "-n",
        "--stun-only",
        "--no-auth",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--no-auth-pings",
        "--log-file",
        "stdout",
        "--simple-log",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.push("--pidfile".into());
    args.push(dir.join("turnserver.pid").display().to_string());
    args.push("--db".into());
    args.push(dir.join("turndb").display().to_string());
    for ip in ips {
        args.push("--listening-ip".into());
        args.push(ip.to_string());
    }
    if ips.len() < 2 {
        args.push("--no-rfc5780".into());
    }
    args.push("--listening-port".into());
    args.push(port.to_string());
    args.push("--alt-listening-port".into());
    args.push(alt_port.to_string());
    args
}

fn coturn_command(dir: &Path, cfg: &ServerConfig, port: u16, alt_port: u16) -> (Command, String) {
    let mut ips = cfg.listen_ips.clone();
    ips.extend(cfg.alternate);
    let mut cmd = Command::new("turnserver");
    cmd.args(coturn_stun_args(dir, &ips, port, alt_port));
    if !cfg.tcp {
        cmd.arg("--no-tcp");
    }
    let text = format!("{cmd:?}");
    (cmd, text)
}

fn capture<R: Read + Send + 'static>(mut from: R, into: Arc<Mutex<String>>) {
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Ok(mut s) = into.lock() {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                        // keep memory bounded if the server logs a lot (debug level, junk floods)
                        if s.len() > 4_000_000 {
                            let cut = s.len() - 2_000_000;
                            let cut = (cut..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(0);
                            s.replace_range(..cut, "[...]\n");
                        }
                    }
                }
            }
        }
    });
}

pub fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

// ---------------------------------------------------------------------------------------------------------
// Running peers

/// What a peer printed and how it ended.
#[derive(Debug)]
pub struct ToolOutput {
    pub command: String,
    /// None when killed at the time limit.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOutput {
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
    /// stdout then stderr.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
    pub fn describe(&self) -> String {
        format!(
            "$ {}\nexit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            match self.status {
                Some(s) => s.to_string(),
                None => "killed at time limit".into(),
            },
            tail(&self.stdout, 6000),
            tail(&self.stderr, 6000)
        )
    }
}

/// Runs `program args` with no stdin, killing it after `limit`.
pub fn run_tool(program: &str, args: &[String], limit: Duration) -> ToolOutput {
    let command = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
    let out = Arc::new(Mutex::new(String::new()));
    let err = Arc::new(Mutex::new(String::new()));
    let t1 = spawn_reader(child.stdout.take().unwrap(), out.clone());
    let t2 = spawn_reader(child.stderr.take().unwrap(), err.clone());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let _ = t1.join();
    let _ = t2.join();
    let stdout = out.lock().unwrap().clone();
    let stderr = err.lock().unwrap().clone();
    ToolOutput {
        command,
        status,
        stdout,
        stderr,
    }
}

fn spawn_reader<R: Read + Send + 'static>(
    mut from: R,
    into: Arc<Mutex<String>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        if let Ok(mut s) = into.lock() {
            s.push_str(&String::from_utf8_lossy(&bytes));
        }
    })
}

// ---------------------------------------------------------------------------------------------------------
// Admin HTTP

/// Minimal HTTP/1.0 GET (so the body is not chunked), bounded by 3 s.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, "GET", path, None)
}

/// As [`http_request`], with a JSON body.
pub fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    http_exchange(addr, method, path, Some(token), Some(body))
}

/// An HTTP/1.0 `method` request for `path`, with `Authorization: Bearer <token>` if given;
/// the status and the body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    http_exchange(addr, method, path, token, None)
}

fn http_exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.set_write_timeout(Some(Duration::from_secs(3)))?;
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let (kind, body) = match json {
        Some(b) => ("Content-Type: application/json\r\n", b),
        None => ("", ""),
    };
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}{kind}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_owned()))
}

/// Sum of all samples of metric `name` (any labels) in Prometheus text format.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    metric_samples(text, name).iter().map(|(_, v)| v).sum()
}

/// The sum of `server`'s samples of metric `name` whose labels contain `label` (`""`: all).
pub fn counter(server: &Server, name: &str, label: &str) -> f64 {
    let m = server.metrics().unwrap_or_default();
    metric_samples(&m, name)
        .iter()
        .filter(|(l, _)| l.contains(label))
        .map(|(_, v)| v)
        .sum()
}

/// (labels, value) of every sample of metric `name`.
pub fn metric_samples(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
                let (labels, v) = r.split_once('}')?;
                (labels.to_owned(), v)
            } else if rest.starts_with(' ') {
                (String::new(), rest)
            } else {
                return None;
            };
            let value = value.split_whitespace().next()?.parse().ok()?;
            Some((labels, value))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// Hand-rolled STUN

pub mod dnsmasq;

pub mod stun {
    use super::*;

    pub const MAGIC_COOKIE: u32 = 0x2112_A442;
    pub const BINDING_REQUEST: u16 = 0x0001;
    pub const BINDING_SUCCESS: u16 = 0x0101;
    pub const BINDING_ERROR: u16 = 0x0111;
    pub const BINDING_INDICATION: u16 = 0x0011;

    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const CHANGE_REQUEST: u16 = 0x0003;
    pub const SOURCE_ADDRESS: u16 = 0x0004;
    pub const CHANGED_ADDRESS: u16 = 0x0005;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const SOFTWARE: u16 = 0x8022;
    pub const FINGERPRINT: u16 = 0x8028;
    pub const RESPONSE_ORIGIN: u16 = 0x802B;
    pub const OTHER_ADDRESS: u16 = 0x802C;

    pub const CHANGE_IP: u32 = 0x04;
    pub const CHANGE_PORT: u32 = 0x02;

    /// A parsed message: header fields and raw attributes in order.
    #[derive(Clone, Debug)]
    pub struct Msg {
        pub typ: u16,
        pub cookie: u32,
        pub tid: [u8; 12],
        pub attrs: Vec<(u16, Vec<u8>)>,
    }

    impl Msg {
        pub fn attr(&self, typ: u16) -> Option<&[u8]> {
            self.attrs
                .iter()
                .find(|(t, _)| *t == typ)
                .map(|(_, v)| v.as_slice())
        }
        pub fn has(&self, typ: u16) -> bool {
            self.attr(typ).is_some()
        }
        pub fn addr(&self, typ: u16) -> Option<SocketAddr> {
            decode_addr(self.attr(typ)?, None)
        }
        pub fn xor_mapped(&self) -> Option<SocketAddr> {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            key[4..].copy_from_slice(&self.tid);
            decode_addr(self.attr(XOR_MAPPED_ADDRESS)?, Some(&key))
        }
        /// ERROR-CODE as class*100+number.
        pub fn error_code(&self) -> Option<u16> {
            let v = self.attr(ERROR_CODE)?;
            (v.len() >= 4).then(|| u16::from(v[2] & 0x07) * 100 + u16::from(v[3]))
        }
        pub fn attr_types(&self) -> Vec<String> {
            self.attrs
                .iter()
                .map(|(t, v)| format!("0x{t:04x}({})", v.len()))
                .collect()
        }
    }

    /// Random-ish bytes for transaction ids and junk: xorshift seeded from the clock and a counter.
    pub fn random_bytes(n: usize) -> Vec<u8> {
        static SEQ: AtomicU32 = AtomicU32::new(1);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let mut x =
            nanos ^ (u64::from(SEQ.fetch_add(1, Ordering::Relaxed)) << 32) ^ 0x9E37_79B9_7F4A_7C15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    pub fn new_tid() -> [u8; 12] {
        random_bytes(12).try_into().unwrap()
    }

    /// Encodes header + attributes (each padded to 4 bytes). `cookie` None = RFC 3489 style (16-byte random id).
    pub fn encode(typ: u16, cookie: u32, tid: &[u8; 12], attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, v) in attrs {
            body.extend_from_slice(&t.to_be_bytes());
            body.extend_from_slice(&(v.len() as u16).to_be_bytes());
            body.extend_from_slice(v);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut msg = Vec::with_capacity(20 + body.len());
        msg.extend_from_slice(&typ.to_be_bytes());
        msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
        msg.extend_from_slice(&cookie.to_be_bytes());
        msg.extend_from_slice(tid);
        msg.extend_from_slice(&body);
        msg
    }

    /// An RFC 5389/8489 Binding request.
    pub fn binding_request(tid: &[u8; 12], attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        encode(BINDING_REQUEST, MAGIC_COOKIE, tid, attrs)
    }

    /// An RFC 3489 Binding request: the 16-byte transaction id has no magic cookie.
    pub fn classic_binding_request(tid: &[u8; 12], attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut cookie = 0x0BAD_F00D;
        if cookie == MAGIC_COOKIE {
            cookie ^= 1;
        }
        encode(BINDING_REQUEST, cookie, tid, attrs)
    }

    pub fn change_request(flags: u32) -> (u16, Vec<u8>) {
        (CHANGE_REQUEST, flags.to_be_bytes().to_vec())
    }

    /// Appends a FINGERPRINT attribute (CRC-32 of the message so far, XOR 0x5354554e), fixing the length field.
    pub fn add_fingerprint(msg: &mut Vec<u8>, corrupt: bool) {
        let new_len = (msg.len() - 20 + 8) as u16;
        msg[2..4].copy_from_slice(&new_len.to_be_bytes());
        let mut crc = crc32(msg) ^ 0x5354_554E;
        if corrupt {
            crc ^= 0xFFFF_FFFF;
        }
        msg.extend_from_slice(&FINGERPRINT.to_be_bytes());
        msg.extend_from_slice(&4u16.to_be_bytes());
        msg.extend_from_slice(&crc.to_be_bytes());
    }

    pub fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    pub fn parse(b: &[u8]) -> Option<Msg> {
        if b.len() < 20 {
            return None;
        }
        let typ = u16::from_be_bytes([b[0], b[1]]);
        let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if b.len() != 20 + len {
            return None;
        }
        let cookie = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        let tid: [u8; 12] = b[8..20].try_into().ok()?;
        let mut attrs = Vec::new();
        let mut i = 20;
        while i + 4 <= b.len() {
            let t = u16::from_be_bytes([b[i], b[i + 1]]);
            let l = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
            let v = b.get(i + 4..i + 4 + l)?.to_vec();
            attrs.push((t, v));
            i += 4 + l.div_ceil(4) * 4;
        }
        Some(Msg {
            typ,
            cookie,
            tid,
            attrs,
        })
    }

    fn decode_addr(v: &[u8], xor: Option<&[u8; 16]>) -> Option<SocketAddr> {
        if v.len() < 4 {
            return None;
        }
        let x = |i: usize| xor.map_or(0, |k| k[i]);
        let port = u16::from_be_bytes([v[2] ^ x(0), v[3] ^ x(1)]);
        match v[1] {
            0x01 if v.len() == 8 => {
                let ip: [u8; 4] = std::array::from_fn(|i| v[4 + i] ^ x(i));
                Some(SocketAddr::new(IpAddr::from(ip), port))
            }
            0x02 if v.len() == 20 => {
                let ip: [u8; 16] = std::array::from_fn(|i| v[4 + i] ^ x(i));
                Some(SocketAddr::new(IpAddr::from(ip), port))
            }
            _ => None,
        }
    }

    /// Sends `msg` once and waits up to `wait` for a datagram whose transaction id matches.
    /// Returns (message, the address it came from).
    pub fn udp_exchange(
        sock: &UdpSocket,
        to: SocketAddr,
        msg: &[u8],
        wait: Duration,
    ) -> Option<(Msg, SocketAddr)> {
        let tid: [u8; 12] = msg[8..20].try_into().ok()?;
        sock.send_to(msg, to).ok()?;
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            match sock.recv_from(&mut buf) {
                Ok((n, from)) => match parse(&buf[..n]) {
                    Some(m) if m.tid == tid => return Some((m, from)),
                    _ => {}
                },
                Err(_) => return None,
            }
        }
    }

    /// One plain Binding, one try.
    pub fn udp_binding_once(sock: &UdpSocket, to: SocketAddr, wait: Duration) -> Option<Msg> {
        udp_exchange(sock, to, &binding_request(&new_tid(), &[]), wait).map(|(m, _)| m)
    }

    /// A Binding with retransmissions (UDP may drop under load): up to 5 tries, 500 ms each.
    pub fn udp_binding(
        sock: &UdpSocket,
        to: SocketAddr,
        attrs: &[(u16, Vec<u8>)],
    ) -> Option<(Msg, SocketAddr)> {
        let req = binding_request(&new_tid(), attrs);
        (0..5).find_map(|_| udp_exchange(sock, to, &req, Duration::from_millis(500)))
    }

    /// Reads the bytes of one STUN message from a TCP stream (RFC 8489 §6.2: messages back
    /// to back, length from the header), waiting as the stream's read timeout says.
    pub fn tcp_read_bytes(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        let mut all = vec![0u8; 20];
        stream.read_exact(&mut all)?;
        let len = usize::from(u16::from_be_bytes([all[2], all[3]]));
        all.resize(20 + len, 0);
        stream.read_exact(&mut all[20..])?;
        Ok(all)
    }

    /// Reads one STUN message from a TCP stream, waiting at most `wait`.
    pub fn tcp_read(stream: &mut TcpStream, wait: Duration) -> std::io::Result<Msg> {
        stream.set_read_timeout(Some(wait))?;
        let all = tcp_read_bytes(stream)?;
        parse(&all).ok_or_else(|| std::io::Error::other("unparsable STUN message over TCP"))
    }

    /// Connects, sends one Binding over TCP, reads the answer.
    pub fn tcp_binding(to: SocketAddr) -> std::io::Result<(Msg, SocketAddr)> {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
        s.set_write_timeout(Some(Duration::from_secs(2)))?;
        let local = s.local_addr()?;
        let tid = new_tid();
        s.write_all(&binding_request(&tid, &[]))?;
        let m = tcp_read(&mut s, Duration::from_secs(3))?;
        if m.tid != tid {
            return Err(std::io::Error::other("transaction id mismatch"));
        }
        let _ = s.shutdown(Shutdown::Both);
        Ok((m, local))
    }
}

// ---------------------------------------------------------------------------------------------------------
// TURN clients' pieces

/// Requests and credentials the TURN tests build by hand (for what no peer tool does: a fixed nonce shared by
/// many clients, a flood of wrong passwords, a connection dropped mid-allocation).
pub mod turn {
    use farside_stun::attributes::{Lifetime, Nonce, Realm, RequestedTransport, Username};
    use farside_stun::{
        Class, Header, Message, MessageBuilder, MessageType, Method, TransactionId,
    };

    /// The realm Farside uses by default.
    pub const REALM: &str = "farside";

    /// Ephemeral (REST) credentials for `name` under `secret`, valid for an hour:
    /// `("<expiry>:name", base64(HMAC-SHA1(secret, username)))`.
    pub fn rest_credentials(secret: &str, name: &str) -> (String, String) {
        let expiry = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        let user = format!("{expiry}:{name}");
        let password = farside_turn::rest_password(secret.as_bytes(), &user);
        (user, password)
    }

    /// A UDP Allocate (LIFETIME 600), transaction id from `tid`; with `auth` = (user, password, nonce) it
    /// carries long-term MESSAGE-INTEGRITY (MD5) for realm [`REALM`].
    pub fn allocate_request(tid: u32, auth: Option<(&str, &str, &str)>) -> Vec<u8> {
        request(Method::ALLOCATE, tid, auth, |b| {
            b.add(&RequestedTransport(17)).unwrap();
            b.add(&Lifetime(600)).unwrap();
        })
    }

    /// A `method` request with the attributes `attrs` adds, transaction id from `tid`; with
    /// `auth` = (user, password, nonce) it carries long-term MESSAGE-INTEGRITY (MD5) for realm
    /// [`REALM`].
    pub fn request(
        method: Method,
        tid: u32,
        auth: Option<(&str, &str, &str)>,
        attrs: impl FnOnce(&mut MessageBuilder<'_>),
    ) -> Vec<u8> {
        let mut buf = vec![0u8; 512];
        let mut id = [0u8; 12];
        id[..4].copy_from_slice(&tid.to_be_bytes());
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(Class::Request, method),
            Header::new(TransactionId(id)),
        )
        .unwrap();
        attrs(&mut b);
        if let Some((user, password, nonce)) = auth {
            b.add(&Username(user)).unwrap();
            b.add(&Realm(REALM)).unwrap();
            b.add(&Nonce(nonce)).unwrap();
            let key = farside_stun::long_term_key_md5(user, REALM, password).unwrap();
            b.add_message_integrity(&key).unwrap();
        }
        let n = b.finish();
        buf.truncate(n);
        buf
    }

    /// `turnutils_peer` on a free loopback port, killed on drop.
    pub struct Peer {
        child: std::process::Child,
        pub port: u16,
    }

    impl Peer {
        pub fn start() -> Peer {
            Self::start_on("127.0.0.1")
        }

        pub fn start_on(ip: &str) -> Peer {
            let port = super::free_ports(&[ip.parse().unwrap()], 1);
            let child = std::process::Command::new("turnutils_peer")
                .args(["-L", ip, "-p", &port.to_string()])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start turnutils_peer");
            std::thread::sleep(std::time::Duration::from_millis(300));
            Peer { child, port }
        }
    }

    impl Drop for Peer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// What uclient printed at the end.
    #[derive(Debug, PartialEq)]
    pub struct Totals {
        pub sent: u64,
        pub received: u64,
        pub lost: Option<u64>,
    }

    /// coturn's `turnutils_uclient` as alice (password `wonderland`) through `server` to
    /// `peer`: `messages` messages 20 ms apart, no RTCP, started on a thread of its own.
    pub fn uclient_paced(
        server: &super::Server,
        peer: &Peer,
        messages: u32,
    ) -> std::thread::JoinHandle<super::ToolOutput> {
        let args: Vec<String> = [
            "-u",
            "alice",
            "-w",
            "wonderland",
            "-e",
            "127.0.0.1",
            "-r",
            &peer.port.to_string(),
            "-p",
            &server.primary.port().to_string(),
            "-n",
            &messages.to_string(),
            "-z",
            "20",
            "-c",
            "127.0.0.1",
        ]
        .map(String::from)
        .to_vec();
        let limit = std::time::Duration::from_millis(20 * u64::from(messages))
            + std::time::Duration::from_secs(30);
        std::thread::spawn(move || super::run_tool("turnutils_uclient", &args, limit))
    }

    /// uclient's totals in what it printed.
    pub fn totals(text: &str) -> Option<Totals> {
        let line = text
            .lines()
            .rev()
            .find(|l| l.contains("start_mclient: tot_send_msgs="))?;
        let num = |key: &str| -> Option<u64> {
            let rest = &line[line.find(key)? + key.len()..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        let lost = text
            .lines()
            .find_map(|l| l.split("Total lost packets ").nth(1))
            .and_then(|r| r.split_whitespace().next()?.parse().ok());
        Some(Totals {
            sent: num("tot_send_msgs=")?,
            received: num("tot_recv_msgs=")?,
            lost,
        })
    }

    /// The NONCE of a challenge.
    pub fn nonce_of(challenge: &[u8]) -> String {
        Message::parse(challenge)
            .unwrap()
            .attribute::<Nonce>()
            .expect("a NONCE")
            .unwrap()
            .0
            .to_owned()
    }
}

/// A Farside with TURN (loopback peers allowed; `turn_extra`, lines for `[turn]`) and a SIP
/// registrar for example.org on a free UDP port, one realm (`farside`) for both; alice
/// (password `wonderland`) added without a realm and registered with SIPp. Returns the server,
/// its SIP address and the port alice registered from.
pub fn alice_on_turn_and_sip(test: &str, turn_extra: &str) -> (Server, SocketAddr, u16) {
    let sip = SocketAddr::new(LOCALHOST, free_ports(&[LOCALHOST], 1));
    let server = Server::start(
        test,
        ServerConfig::default().with_table(&format!(
            "[turn]\nenabled = true\nallowed_peers = [\"127.0.0.0/8\"]\n{turn_extra}\n\
             [sip]\nenabled = true\nlisten = [\"udp:{sip}\"]\ndomain = \"example.org\"\nrealm = \"farside\"\n"
        )),
    );
    add_alice_once_running(&server);
    let port = free_ports(&[LOCALHOST], 1);
    let args = sipp::register(
        "alice",
        "wonderland",
        "example.org",
        "127.0.0.1",
        port,
        &sip.to_string(),
        10,
    );
    let reg = run_tool("sipp", &args, Duration::from_secs(30));
    assert_eq!(
        reg.code(),
        Some(0),
        "{}\n{}",
        reg.describe(),
        server.describe()
    );
    (server, sip, port)
}

/// Waits for `server` to run (S010), then adds alice (password "wonderland") to its store and
/// waits until it has her (S306).
pub fn add_alice_once_running(server: &Server) {
    assert!(
        wait_until(Duration::from_secs(5), || server
            .logs()
            .contains("S010 running")),
        "{}",
        server.describe()
    );
    server.cli(&["user", "add", "alice", "--password", "wonderland"]);
    server.wait_for_log("S306 store changed");
}

/// An empty scratch directory for `test` (this process's own, left from no earlier run).
pub fn fresh_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("farside-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every datagram that comes to `socket` until none has for `wait`.
pub fn replies(socket: &std::net::UdpSocket, wait: Duration) -> Vec<Vec<u8>> {
    socket.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 65_535];
    std::iter::from_fn(|| socket.recv(&mut buf).ok().map(|n| buf[..n].to_vec())).collect()
}

/// Digest credentials for a REGISTER to `domain` (realm = domain, uri `sip:<domain>`), MD5,
/// against the challenge in `answer` (its first `nonce`): with `nc`, `qop=auth` and that count
/// (cnonce `c0`); without, the RFC 2069 form.
pub fn register_credentials(
    answer: &str,
    user: &str,
    password: &str,
    domain: &str,
    nc: Option<u32>,
) -> String {
    let nonce = answer
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default();
    let ha1 = md5_hex(&format!("{user}:{domain}:{password}"));
    let ha2 = md5_hex(&format!("REGISTER:sip:{domain}"));
    let head = format!(
        "Authorization: Digest username=\"{user}\", realm=\"{domain}\", nonce=\"{nonce}\", uri=\"sip:{domain}\""
    );
    match nc {
        Some(nc) => {
            let response = md5_hex(&format!("{ha1}:{nonce}:{nc:08x}:c0:auth:{ha2}"));
            format!(
                "{head}, response=\"{response}\", algorithm=MD5, qop=auth, nc={nc:08x}, cnonce=\"c0\"\r\n"
            )
        }
        None => {
            let response = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
            format!("{head}, response=\"{response}\"\r\n")
        }
    }
}

/// Lowercase hex MD5 of `s`.
pub fn md5_hex(s: &str) -> String {
    use md5::{Digest as _, Md5};
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// SIPp command lines for the scenarios in `tests/sipp/` (SIPp from Debian's sip-tester): one
/// place that knows their options, for the loopback and the NAT-lab tests.
pub mod sipp {
    /// The path of `tests/sipp/<name>.xml`.
    pub fn scenario(name: &str) -> String {
        format!("{}/../../tests/sipp/{name}.xml", env!("CARGO_MANIFEST_DIR"))
    }

    /// A phone at `ip:port` that registers `user@domain` with Digest at `target`.
    pub fn register(
        user: &str,
        password: &str,
        domain: &str,
        ip: &str,
        port: u16,
        target: &str,
        timeout_secs: u32,
    ) -> Vec<String> {
        let phone = (user, password, domain, ip, port);
        with_digest("register", phone, target, timeout_secs, &[])
    }

    /// `scenario` for a phone (user, password, domain, ip, port) that registers with Digest at
    /// `target`, with `extra` arguments.
    fn with_digest(
        scenario: &str,
        (user, password, domain, ip, port): (&str, &str, &str, &str, u16),
        target: &str,
        timeout_secs: u32,
        extra: &[&str],
    ) -> Vec<String> {
        let mut a = one_call(scenario, user, ip, port, timeout_secs);
        a.extend(
            ["-au", user, "-ap", password, "-set", "domain", domain]
                .iter()
                .chain(extra)
                .chain([&target])
                .map(|s| s.to_string()),
        );
        a
    }

    /// As [`register`], then after `pause_ms` a refresh with the old challenge's credentials,
    /// which must get 401 `stale=true`, and the retry with the fresh nonce, 200
    /// (`register-stale.xml`).
    #[allow(clippy::too_many_arguments)]
    pub fn register_stale(
        user: &str,
        password: &str,
        domain: &str,
        ip: &str,
        port: u16,
        target: &str,
        timeout_secs: u32,
        pause_ms: u32,
    ) -> Vec<String> {
        let phone = (user, password, domain, ip, port);
        let pause = pause_ms.to_string();
        with_digest(
            "register-stale",
            phone,
            target,
            timeout_secs,
            &["-d", &pause],
        )
    }

    /// A phone at `ip:port` that registers `user@domain` at `target`, which asks no
    /// credentials.
    pub fn register_open(
        user: &str,
        domain: &str,
        ip: &str,
        port: u16,
        target: &str,
        timeout_secs: u32,
    ) -> Vec<String> {
        to_domain(
            "register-open",
            user,
            domain,
            ip,
            port,
            target,
            timeout_secs,
        )
    }

    /// A phone at `ip:port` that registers `user@domain` with Digest at `target` over
    /// `transport` (`"u1"` UDP, `"t1"` TCP) and answers, on the same flow, the call whose
    /// Call-ID is `call_id` (the caller's `-cid_str`).
    #[allow(clippy::too_many_arguments)]
    pub fn register_answer(
        user: &str,
        password: &str,
        domain: &str,
        ip: &str,
        port: u16,
        target: &str,
        transport: &str,
        call_id: &str,
        timeout_secs: u32,
    ) -> Vec<String> {
        let phone = (user, password, domain, ip, port);
        let extra = ["-t", transport, "-cid_str", call_id];
        with_digest("register-answer", phone, target, timeout_secs, &extra)
    }

    /// The phone at `ip:port` (which registered `user` from there) answering one call.
    pub fn callee(user: &str, ip: &str, port: u16, timeout_secs: u32) -> Vec<String> {
        one_call("callee", user, ip, port, timeout_secs)
    }

    /// The phone at `ip:port` (which registered `user` from there) answering keep-alive
    /// pings (OPTIONS, NOTIFY) until it has answered one call; at most 100 pings.
    pub fn callee_pinged(user: &str, ip: &str, port: u16, timeout_secs: u32) -> Vec<String> {
        let mut a = one_call("callee-pinged", user, ip, port, timeout_secs);
        let m = a.iter().position(|w| w == "-m").map_or(0, |i| i + 1);
        if let Some(calls) = a.get_mut(m) {
            *calls = "100".to_string();
        }
        a
    }

    /// A phone at `ip:port` calling `user@domain` through `target` that expects 480
    /// Temporarily Unavailable.
    pub fn caller_480(
        user: &str,
        domain: &str,
        ip: &str,
        port: u16,
        target: &str,
        timeout_secs: u32,
    ) -> Vec<String> {
        to_domain("caller-480", user, domain, ip, port, target, timeout_secs)
    }

    /// The phone at `ip:port` (which registered `user` from there) answering 486 Busy.
    pub fn callee_busy(user: &str, ip: &str, port: u16, timeout_secs: u32) -> Vec<String> {
        one_call("callee-busy", user, ip, port, timeout_secs)
    }

    /// The phone at `ip:port` (which registered `user` from there) answering one call with
    /// audio from `media_port`: `callee-media` (held and resumed by the caller) or
    /// `callee-hangs-up` (it hangs up itself once it has played its recording).
    pub fn callee_with_audio(
        scenario: &str,
        (user, ip, port): (&str, &str, u16),
        media_port: u16,
        timeout_secs: u32,
    ) -> Vec<String> {
        with_media_port(one_call(scenario, user, ip, port, timeout_secs), media_port)
    }

    /// `args` with SIPp's media (RTP) port.
    fn with_media_port(mut args: Vec<String>, media_port: u16) -> Vec<String> {
        args.extend(["-mp".to_string(), media_port.to_string()]);
        args
    }

    /// A phone at `ip:port` calling `user@domain` through `target` with audio from
    /// `media_port`, putting the call on hold and resuming it (`caller-media.xml`).
    pub fn caller_media(
        (user, domain): (&str, &str),
        ip: &str,
        port: u16,
        media_port: u16,
        target: &str,
        timeout_secs: u32,
    ) -> Vec<String> {
        with_media_port(
            to_domain("caller-media", user, domain, ip, port, target, timeout_secs),
            media_port,
        )
    }

    /// A phone at `ip:port` calling `user@domain` through `target`.
    pub fn caller(
        user: &str,
        domain: &str,
        ip: &str,
        port: u16,
        target: &str,
        timeout_secs: u32,
    ) -> Vec<String> {
        to_domain("caller", user, domain, ip, port, target, timeout_secs)
    }

    /// `scenario` from `ip:port` for `user@domain`, sent to `target` (e.g. `register-require`:
    /// `Require: path, frobnicate`, expecting 420 with `frobnicate` in Unsupported).
    pub fn to_domain(
        scenario: &str,
        user: &str,
        domain: &str,
        ip: &str,
        port: u16,
        target: &str,
        timeout_secs: u32,
    ) -> Vec<String> {
        let mut a = one_call(scenario, user, ip, port, timeout_secs);
        a.extend(["-set", "domain", domain, target].map(String::from));
        a
    }

    /// A phone at `ip:port` that registers `user@domain` with Digest at `target` with the
    /// Contact value `contact` (`register-contact.xml`).
    #[allow(clippy::too_many_arguments)]
    pub fn register_contact(
        user: &str,
        password: &str,
        domain: &str,
        ip: &str,
        port: u16,
        target: &str,
        contact: &str,
        timeout_secs: u32,
    ) -> Vec<String> {
        let phone = (user, password, domain, ip, port);
        with_digest(
            "register-contact",
            phone,
            target,
            timeout_secs,
            &["-set", "contact", contact],
        )
    }

    /// A phone at `ip:port` calling `user@domain` through `target` that expects 430 Flow
    /// Failed.
    pub fn caller_430(
        user: &str,
        domain: &str,
        ip: &str,
        port: u16,
        target: &str,
        timeout_secs: u32,
    ) -> Vec<String> {
        to_domain("caller-430", user, domain, ip, port, target, timeout_secs)
    }

    /// `args` over TCP (one connection, SIPp's `-t t1`) instead of UDP.
    pub fn over_tcp(args: Vec<String>) -> Vec<String> {
        ["-t", "t1"]
            .map(String::from)
            .into_iter()
            .chain(args)
            .collect()
    }

    /// The arguments as `&str`s (for `Lab::exec`).
    pub fn strs(args: &[String]) -> Vec<&str> {
        args.iter().map(String::as_str).collect()
    }

    /// One run of `scenario` for `user` from `ip:port`, failing (exit non-zero) after
    /// `timeout_secs`.
    fn one_call(
        scenario_name: &str,
        user: &str,
        ip: &str,
        port: u16,
        timeout_secs: u32,
    ) -> Vec<String> {
        [
            "-sf",
            &scenario(scenario_name),
            "-s",
            user,
            "-m",
            "1",
            "-i",
            ip,
            "-p",
            &port.to_string(),
            "-timeout",
            &timeout_secs.to_string(),
            "-timeout_error",
            "-nostdin",
        ]
        .map(String::from)
        .to_vec()
    }
}

/// A peer started in the background (a phone), its stdout and stderr collected; killed on drop.
pub struct Logged {
    child: std::process::Child,
    output: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Logged {
    /// What it printed so far.
    pub fn output(&self) -> String {
        let o = self.output.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&o).into_owned()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `program` with `args`, stdin closed, collecting what it prints.
pub fn spawn_logged(program: &str, args: &[String]) -> Logged {
    use std::io::Read as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let pipes: [Box<dyn std::io::Read + Send>; 2] = [
        Box::new(child.stdout.take().expect("piped")),
        Box::new(child.stderr.take().expect("piped")),
    ];
    for mut pipe in pipes {
        let output = std::sync::Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                output
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&buf[..n]);
            }
        });
    }
    Logged { child, output }
}

/// A throwaway self-signed certificate for 127.0.0.1 (as CN and IP SAN) and its key, in `dir`.
pub fn self_signed_for_loopback(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    self_signed(dir, "127.0.0.1")
}

/// A throwaway self-signed certificate (`cert.pem`, subject CN `cn`, valid for `cn` as IP SAN
/// when it is an address, else for 127.0.0.1) and its key (`key.pem`), in `dir`.
pub fn self_signed(dir: &std::path::Path, cn: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let subject = format!("/CN={cn}");
    // An address as the CN is the certificate's address too; else it is for 127.0.0.1.
    let san = match cn.parse::<std::net::IpAddr>() {
        Ok(ip) => format!("subjectAltName=IP:{ip}"),
        Err(_) => "subjectAltName=IP:127.0.0.1".to_string(),
    };
    let args: Vec<String> = [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", &subject,
        "-addext", &san,
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "-keyout".into(),
        key.display().to_string(),
        "-out".into(),
        cert.display().to_string(),
    ])
    .collect();
    let made = run_tool("openssl", &args, Duration::from_secs(60));
    assert_eq!(made.code(), Some(0), "{}", made.describe());
    (cert, key)
}

/// A certificate for the address `ip` (its IP SAN, for TLS servers) signed by the throwaway
/// CA of `dir` (`ca.pem`, made on first use), with its key, in `dir`: (ca, cert, key).
pub fn ca_signed(
    dir: &std::path::Path,
    ip: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let path = |name: &str| dir.join(name).display().to_string();
    let ext = dir.join(format!("{ip}.ext"));
    std::fs::write(
        &ext,
        format!(
            "subjectAltName=IP:{ip}\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    let (cert, key, csr) = (
        format!("{ip}.pem"),
        format!("{ip}.key"),
        format!("{ip}.csr"),
    );
    let owned = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut steps = Vec::new();
    if !dir.join("ca.pem").exists() {
        // Each CA has a name of its own: one CA's certificates must not even name another.
        let name = format!(
            "/CN=Farside test CA {}",
            dir.file_name().unwrap_or_default().to_string_lossy()
        );
        steps.push(owned(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &name,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &path("ca.key"),
            "-out",
            &path("ca.pem"),
        ]));
    }
    steps.push(owned(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        &format!("/CN={ip}"),
        "-keyout",
        &path(&key),
        "-out",
        &path(&csr),
    ]));
    steps.push(owned(&[
        "x509",
        "-req",
        "-days",
        "1",
        "-set_serial",
        "2",
        "-in",
        &path(&csr),
        "-CA",
        &path("ca.pem"),
        "-CAkey",
        &path("ca.key"),
        "-extfile",
        &ext.display().to_string(),
        "-out",
        &path(&cert),
    ]));
    for args in steps {
        let made = run_tool("openssl", &args, Duration::from_secs(60));
        assert_eq!(made.code(), Some(0), "{}", made.describe());
    }
    (dir.join("ca.pem"), dir.join(cert), dir.join(key))
}

/// Polls `ok` every 50 ms until it holds (true) or `limit` passes (false).
/// Waits (up to 10 s) until a socket of this host is bound to UDP `port`: a tool started in
/// another thread listens. Read from /proc/net/udp{,6}, so that the check takes no port a tool
/// is about to bind. Whether it came.
pub fn wait_until_udp_bound(port: u16) -> bool {
    let hex = format!(":{port:04X} ");
    wait_until(Duration::from_secs(10), || {
        ["/proc/net/udp", "/proc/net/udp6"].iter().any(|f| {
            std::fs::read_to_string(f).is_ok_and(|t| {
                t.lines().skip(1).any(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .is_some_and(|a| format!("{a} ").ends_with(&hex))
                })
            })
        })
    })
}

pub fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if ok() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kamailio (Debian's) as a peer on loopback.
pub mod kamailio {
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use super::{LOCALHOST, free_ports};

    /// Kamailio with a configuration file on a free loopback UDP port, one worker, its output
    /// in a log file; stopped (SIGTERM, so its children stop too) on drop.
    pub struct Kamailio {
        child: std::process::Child,
        /// Where it listens.
        pub addr: SocketAddr,
        dir: PathBuf,
    }

    impl Kamailio {
        /// Starts `kamailio -f cfg` with `extra` arguments.
        pub fn start(cfg: &Path, extra: &[&str]) -> Kamailio {
            let port = free_ports(&[LOCALHOST], 1);
            let addr = SocketAddr::new(LOCALHOST, port);
            let dir = std::env::temp_dir()
                .join(format!("farside-kamailio-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let log = std::fs::File::create(dir.join("kamailio.log")).unwrap();
            let child = std::process::Command::new("kamailio")
                .arg("-f")
                .arg(cfg)
                .args(["-DD", "-E", "-n", "1", "-m", "64", "-M", "8"])
                .arg("-Y")
                .arg(&dir)
                .arg("-l")
                .arg(format!("udp:{addr}"))
                .args(extra)
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start kamailio");
            Kamailio { child, addr, dir }
        }

        /// What it logged so far.
        pub fn log(&self) -> String {
            std::fs::read_to_string(self.dir.join("kamailio.log")).unwrap_or_default()
        }

        /// Waits up to `limit` for `needle` in its log.
        pub fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
            super::wait_until(limit, || self.log().contains(needle))
        }
    }

    impl Drop for Kamailio {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
