//! Harness for the NAT lab (`tests/natlab/natlab.sh` at the repository root; see `docs/natlab.md`).
//!
//! - [`Lab::up`] builds a lab under a prefix unique to this process and call, or skips (returns `None` and prints
//!   `SKIP <test>: <reason>`) when not root or `ip netns` is unavailable; with `FARSIDE_REQUIRE_NATLAB=1` (CI)
//!   it panics instead. Dropping the [`Lab`] tears it down: every process left in its namespaces is ended.
//! - [`Lab::exec`] runs a command inside a host's namespace with a time limit and captures what it prints.
//! - [`Lab::spawn`] starts a long-running command (a server) inside a host's namespace; dropping the
//!   [`LabChild`] kills it.
//! - [`Lab::hosts`] lists the hosts with their addresses and, for LAN hosts, what their gateway was built to do,
//!   as `natlab.sh describe` prints it. [`describe`] gives the same without building a lab (no root needed).
//!
//! Include it from an integration test with `mod natlab;` (from `tests/natlab.rs`) or
//! `#[path = "natlab/mod.rs"] mod natlab;`. Only std is used.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::fmt;
use std::io::{Read, Write as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long `natlab.sh up` and `down` may take before the harness gives up on them.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// The lab script, found from this crate's manifest directory.
pub fn script() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/natlab/natlab.sh"
    ))
}

/// True when a lab that cannot be built must fail the test rather than skip it (CI).
pub fn lab_required() -> bool {
    std::env::var("FARSIDE_REQUIRE_NATLAB").is_ok_and(|v| v == "1")
}

/// Prints `SKIP <test>: <reason>` (see `common::skip`), or panics when `FARSIDE_REQUIRE_NATLAB=1`.
pub fn skip_or_panic(test: &str, reason: &str) {
    if lab_required() {
        panic!("{test}: {reason}, and FARSIDE_REQUIRE_NATLAB=1");
    }
    crate::common::skip(test, reason);
}

// ---------------------------------------------------------------------------------------------------------
// What the lab is: hosts and expected behaviour

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The "internet" router (no default route).
    Router,
    /// The server host with two public addresses.
    Server,
    /// A public host without NAT.
    Peer,
    /// A NAT gateway.
    Nat,
    /// A host behind a NAT gateway.
    Lan,
}

/// NAT mapping behaviour (RFC 4787 §4.1, RFC 5780 §4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mapping {
    /// Endpoint-independent.
    Eim,
    /// Address-dependent.
    Adm,
    /// Address- and port-dependent.
    Apdm,
}

/// NAT filtering behaviour (RFC 4787 §5, RFC 5780 §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filtering {
    /// Endpoint-independent.
    Eif,
    /// Address-dependent.
    Adf,
    /// Address- and port-dependent.
    Apdf,
}

impl FromStr for Mapping {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "EIM" => Ok(Self::Eim),
            "ADM" => Ok(Self::Adm),
            "APDM" => Ok(Self::Apdm),
            _ => Err(format!("unknown mapping {s:?}")),
        }
    }
}

impl FromStr for Filtering {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "EIF" => Ok(Self::Eif),
            "ADF" => Ok(Self::Adf),
            "APDF" => Ok(Self::Apdf),
            _ => Err(format!("unknown filtering {s:?}")),
        }
    }
}

impl fmt::Display for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Eim => "EIM",
            Self::Adm => "ADM",
            Self::Apdm => "APDM",
        })
    }
}

impl fmt::Display for Filtering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Eif => "EIF",
            Self::Adf => "ADF",
            Self::Apdf => "APDF",
        })
    }
}

/// What a LAN host's gateway was built to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub mapping: Mapping,
    pub filtering: Filtering,
    pub hairpin: bool,
    /// Binding lifetime after the last packet of a flow with one request/response exchange.
    pub lifetime: Duration,
    /// Binding lifetime of a flow that kept exchanging packets for more than 2 s.
    pub lifetime_stream: Duration,
    /// RFC 3489 name: `full-cone`, `restricted-cone`, `port-restricted-cone` or `symmetric`.
    pub classic: String,
    /// The kernel's SIP ALG is attached to LAN flows to port 5060.
    pub sip_alg: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// The name `natlab.sh exec` takes, e.g. `home-lan1`.
    pub name: String,
    /// The network namespace, `<prefix>-<name>`.
    pub ns: String,
    pub role: Role,
    pub addrs: Vec<Ipv4Addr>,
    /// For LAN hosts: the gateway's host name.
    pub gateway: Option<String>,
    /// For LAN hosts: the gateway's WAN address (the public address of the host's mappings).
    pub public: Option<Ipv4Addr>,
    /// For LAN hosts: what the gateway was built to do.
    pub expect: Option<Expected>,
}

impl Host {
    pub fn addr(&self) -> Ipv4Addr {
        self.addrs[0]
    }
}

/// Parses the text form of `natlab.sh describe`.
pub fn parse_describe(text: &str) -> Result<Vec<Host>, String> {
    let mut lines = text.lines();
    match lines.next() {
        Some(l) if l.starts_with("natlab 1 ") => {}
        other => return Err(format!("not a natlab v1 description: {other:?}")),
    }
    let mut hosts = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        if words.next() != Some("host") {
            return Err(format!("unexpected line {line:?}"));
        }
        let name = words.next().ok_or("host without a name")?.to_owned();
        let kv: std::collections::HashMap<&str, &str> =
            words.filter_map(|w| w.split_once('=')).collect();
        let get = |k: &str| kv.get(k).copied().ok_or_else(|| format!("{name}: no {k}="));
        let role = match get("role")? {
            "router" => Role::Router,
            "server" => Role::Server,
            "peer" => Role::Peer,
            "nat" => Role::Nat,
            "lan" => Role::Lan,
            r => return Err(format!("{name}: unknown role {r}")),
        };
        let addrs = get("addrs")?
            .split(',')
            .map(|a| a.parse().map_err(|e| format!("{name}: {a}: {e}")))
            .collect::<Result<Vec<Ipv4Addr>, String>>()?;
        let (gateway, public, expect) = if role == Role::Lan {
            let secs = |k: &str| -> Result<Duration, String> {
                get(k)?
                    .parse()
                    .map(Duration::from_secs)
                    .map_err(|e| format!("{name}: {k}: {e}"))
            };
            let yes = |k: &str| -> Result<bool, String> {
                match get(k)? {
                    "yes" => Ok(true),
                    "no" => Ok(false),
                    v => Err(format!("{name}: {k}={v}")),
                }
            };
            let expect = Expected {
                mapping: get("mapping")?.parse()?,
                filtering: get("filtering")?.parse()?,
                hairpin: yes("hairpin")?,
                lifetime: secs("lifetime")?,
                lifetime_stream: secs("lifetime_stream")?,
                classic: get("classic")?.to_owned(),
                sip_alg: yes("sip_alg")?,
            };
            let public = get("public")?
                .parse()
                .map_err(|e| format!("{name}: public: {e}"))?;
            (Some(get("gateway")?.to_owned()), Some(public), Some(expect))
        } else {
            (None, None, None)
        };
        hosts.push(Host {
            ns: get("ns")?.to_owned(),
            name,
            role,
            addrs,
            gateway,
            public,
            expect,
        });
    }
    Ok(hosts)
}

/// The lab's hosts as `natlab.sh describe` prints them for `prefix` (needs no root, builds nothing).
pub fn describe(prefix: &str) -> Result<Vec<Host>, String> {
    let out = run_bounded(
        script_command(prefix, &["describe"]),
        Duration::from_secs(10),
    );
    if !out.success() {
        return Err(format!("natlab.sh describe failed: {out}"));
    }
    parse_describe(&out.stdout)
}

// ---------------------------------------------------------------------------------------------------------
// Bounded commands

/// What a bounded command printed and how it ended.
#[derive(Debug)]
pub struct Output {
    /// `None` when it was killed at its time limit.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// stdout followed by stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.timed_out, self.status) {
            (true, _) => write!(f, "killed after {:?}", self.elapsed)?,
            (false, Some(s)) => write!(f, "{s} after {:?}", self.elapsed)?,
            (false, None) => write!(f, "no exit status")?,
        }
        write!(
            f,
            "\n--- stdout\n{}--- stderr\n{}---",
            self.stdout, self.stderr
        )
    }
}

/// Copies everything `src` produces into `buf`; sets `done` at end of file.
fn drain(mut src: impl Read + Send + 'static, buf: Arc<Mutex<Vec<u8>>>, done: Arc<AtomicBool>) {
    thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        loop {
            match src.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&chunk[..n]),
            }
        }
        done.store(true, Ordering::SeqCst);
    });
}

fn take(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

/// Runs `cmd` (stdin closed, output captured) and kills it when `timeout` passes.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Output {
    let start = Instant::now();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Output {
                status: None,
                stdout: String::new(),
                stderr: format!("cannot start {cmd:?}: {e}"),
                timed_out: false,
                elapsed: start.elapsed(),
            };
        }
    };
    let (out, err) = (Arc::default(), Arc::default());
    let (out_done, err_done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    if let Some(s) = child.stdout.take() {
        drain(s, Arc::clone(&out), Arc::clone(&out_done));
    }
    if let Some(s) = child.stderr.take() {
        drain(s, Arc::clone(&err), Arc::clone(&err_done));
    }
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() >= timeout => {
                timed_out = true;
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    // A grandchild may still hold the pipes; wait for end of file a little, then take what came.
    let drained = Instant::now();
    while !(out_done.load(Ordering::SeqCst) && err_done.load(Ordering::SeqCst))
        && drained.elapsed() < Duration::from_secs(2)
    {
        thread::sleep(Duration::from_millis(5));
    }
    Output {
        status,
        stdout: take(&out),
        stderr: take(&err),
        timed_out,
        elapsed: start.elapsed(),
    }
}

fn script_command(prefix: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(script()).args(args).env("NATLAB_PREFIX", prefix);
    cmd
}

// ---------------------------------------------------------------------------------------------------------
// The lab

/// `ip netns add` of several labs at once may race on mounting /run/netns: build and remove one at a time.
static UP_DOWN: Mutex<()> = Mutex::new(());
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// A running lab; dropping it removes it.
pub struct Lab {
    prefix: String,
    hosts: Vec<Host>,
    up_time: Duration,
    test: String,
}

/// Whether this process runs with effective uid 0 (from /proc, so no `unsafe`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Why a lab cannot be built here, if it cannot.
pub fn unavailable() -> Option<String> {
    if !is_root() {
        return Some("not root (network namespaces need root)".into());
    }
    for tool in ["ip", "nft", "sysctl", "bash"] {
        if crate::common::find_in_path(tool).is_none() {
            return Some(format!("{tool} not installed"));
        }
    }
    let mut ip = Command::new("ip");
    ip.args(["netns", "list"]);
    let out = run_bounded(ip, Duration::from_secs(10));
    if !out.success() {
        return Some(format!("`ip netns list` does not work: {out}"));
    }
    None
}

/// Tears down labs whose test process is gone (killed before its `Drop` ran): their namespaces are named
/// `n<pid>_<k>-<host>`, and a dead pid's labs belong to nobody.
fn reap_dead_labs() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let mut dead: Vec<String> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(prefix) = name.split_once('-').map(|(p, _)| p) else {
            continue;
        };
        let Some(pid) = prefix
            .strip_prefix('n')
            .and_then(|r| r.split_once('_'))
            .and_then(|(pid, k)| k.parse::<u32>().ok().and(pid.parse::<u32>().ok()))
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() && !dead.iter().any(|d| d == prefix) {
            dead.push(prefix.to_owned());
        }
    }
    for prefix in dead {
        eprintln!("natlab: removing the lab {prefix} of a test process that is gone");
        let _ = run_bounded(script_command(&prefix, &["down"]), SCRIPT_TIMEOUT);
    }
}

impl Lab {
    /// Builds a lab with a prefix unique to this process and call. `None` (after printing `SKIP <test>: ...`)
    /// when this machine cannot build one, unless `FARSIDE_REQUIRE_NATLAB=1`, which makes it panic.
    pub fn up(test: &str) -> Option<Lab> {
        if let Some(reason) = unavailable() {
            skip_or_panic(test, &reason);
            return None;
        }
        let _guard = UP_DOWN.lock().unwrap_or_else(|e| e.into_inner());
        reap_dead_labs();
        // A prefix left by a crashed earlier run with the same pid is in use (exit 4): take the next one.
        for _ in 0..5 {
            let prefix = format!(
                "n{}_{}",
                std::process::id(),
                NEXT_LAB.fetch_add(1, Ordering::SeqCst)
            );
            let out = run_bounded(script_command(&prefix, &["up"]), SCRIPT_TIMEOUT);
            if out.status.and_then(|s| s.code()) == Some(4) {
                continue;
            }
            if !out.success() {
                // Leave nothing behind even if `up` was killed half-way.
                let _ = run_bounded(script_command(&prefix, &["down"]), SCRIPT_TIMEOUT);
                panic!("{test}: natlab.sh up (prefix {prefix}) failed: {out}");
            }
            let hosts = match describe(&prefix) {
                Ok(h) => h,
                Err(e) => {
                    let _ = run_bounded(script_command(&prefix, &["down"]), SCRIPT_TIMEOUT);
                    panic!("{test}: {e}");
                }
            };
            return Some(Lab {
                prefix,
                hosts,
                up_time: out.elapsed,
                test: test.to_owned(),
            });
        }
        panic!("{test}: no free natlab prefix after 5 tries");
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A fresh directory for `what` (configs, pid files) under the system's temp dir; removed with the lab.
    pub fn scratch_dir(&self, what: &str) -> PathBuf {
        let dir = self.scratch_root().join(what);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        dir
    }

    fn scratch_root(&self) -> PathBuf {
        std::env::temp_dir().join(format!("farside-natlab-{}", self.prefix))
    }

    /// Wall time `natlab.sh up` took.
    pub fn up_time(&self) -> Duration {
        self.up_time
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The host named `name`; panics if there is none.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("natlab has no host {name}"))
    }

    /// The hosts behind NAT gateways.
    pub fn lan_hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.role == Role::Lan)
    }

    /// The server host's two public addresses (primary, alternate).
    pub fn server_addrs(&self) -> (Ipv4Addr, Ipv4Addr) {
        let s = self.host("server");
        (s.addrs[0], s.addrs[1])
    }

    /// A command that runs `cmd args` inside `host`'s namespace.
    pub fn command(&self, host: &str, cmd: &str, args: &[&str]) -> Command {
        let ns = &self.host(host).ns;
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, cmd]).args(args);
        c
    }

    /// Runs `cmd args` inside `host`'s namespace, killed after `timeout`; captures what it prints.
    pub fn exec(&self, host: &str, cmd: &str, args: &[&str], timeout: Duration) -> Output {
        run_bounded(self.command(host, cmd, args), timeout)
    }

    /// Starts `cmd args` inside `host`'s namespace; the child is killed when the returned value is dropped (and
    /// in any case when the lab goes down).
    pub fn spawn(&self, host: &str, cmd: &str, args: &[&str]) -> LabChild {
        let mut c = self.command(host, cmd, args);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd} in {host}: {e}"));
        let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
        if let Some(s) = child.stdout.take() {
            drain(s, Arc::clone(&buf), Arc::new(AtomicBool::new(false)));
        }
        if let Some(s) = child.stderr.take() {
            drain(s, Arc::clone(&buf), Arc::new(AtomicBool::new(false)));
        }
        LabChild {
            child,
            output: buf,
            what: format!("{cmd} in {host}"),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _guard = UP_DOWN.lock().unwrap_or_else(|e| e.into_inner());
        let out = run_bounded(script_command(&self.prefix, &["down"]), SCRIPT_TIMEOUT);
        let _ = std::fs::remove_dir_all(self.scratch_root());
        if !out.success() {
            let _ = writeln!(
                std::io::stderr(),
                "{}: natlab.sh down (prefix {}) failed: {out}",
                self.test,
                self.prefix
            );
        }
    }
}

/// A process started with [`Lab::spawn`]; killed on drop.
pub struct LabChild {
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
    what: String,
}

impl LabChild {
    /// Everything it printed so far (stdout and stderr, interleaved as read).
    pub fn output(&self) -> String {
        take(&self.output)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until its output contains `needle`; false if it exits or `timeout` passes first.
    pub fn wait_for_output(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.output().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline || !self.is_running() {
                return self.output().contains(needle);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends it SIGINT (a capture then writes what it has) and waits up to `timeout` for it
    /// to exit.
    pub fn interrupt(&mut self, timeout: Duration) {
        let _ = Command::new("kill")
            .args(["-INT", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while self.is_running() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl fmt::Display for LabChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:\n{}", self.what, self.output())
    }
}

impl Drop for LabChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL URL (`postgres://user:password@host:port/database`) made to go through the
/// server's Unix socket in `/var/run/postgresql`, whose path every network namespace shares:
/// the lab's hosts reach no loopback TCP of the root namespace.
pub fn postgres_through_the_socket(url: &str) -> String {
    let (credentials, rest) = url
        .strip_prefix("postgres://")
        .and_then(|u| u.split_once('@'))
        .expect("postgres://user:password@host:port/database");
    let (host_port, database) = rest.split_once('/').expect("a database");
    let port = host_port.rsplit_once(':').map_or("5432", |(_, p)| p);
    format!("postgres://{credentials}@%2Fvar%2Frun%2Fpostgresql:{port}/{database}")
}

impl Lab {
    /// Writes the Farside configuration `text` makes of the scratch directory `name` (made
    /// afresh, for the files the configuration names) as `farside.toml` there, and returns
    /// the file's path, for `serve --config` and the command line's other commands.
    pub fn farside_config(&self, name: &str, text: impl FnOnce(&Path) -> String) -> String {
        let dir = self.scratch_dir(name);
        let path = dir.join("farside.toml");
        std::fs::write(&path, text(&dir))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path.display().to_string()
    }

    /// `farside serve --config config` in the server's namespace.
    pub fn serve_farside(&self, config: &str) -> LabChild {
        self.spawn(
            "server",
            env!("CARGO_BIN_EXE_farside"),
            &["serve", "--config", config],
        )
    }
}
