//! The command line's promises: help that explains itself, one-line config errors with exit
//! status 2, and a working server on the embedded defaults (the README's run command).

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::{require_tool, run_tool, stun};

const FARSIDE: &str = env!("CARGO_BIN_EXE_farside");

/// Runs farside to completion, bounded: a command that should exit must not hang the suite.
fn farside(args: &[&str]) -> common::ToolOutput {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = run_tool(FARSIDE, &args, Duration::from_secs(10));
    assert!(!out.timed_out(), "did not exit: {}", out.describe());
    out
}

#[test]
fn help_explains_the_commands() {
    let out = farside(&["--help"]);
    assert!(out.code() == Some(0));
    let text = out.stdout.clone();
    for needle in ["serve", "bench", "check-config", "STUN", "RFC 5780"] {
        assert!(text.contains(needle), "--help lacks {needle:?}:\n{text}");
    }
    let out = farside(&["serve", "--help"]);
    assert!(out.code() == Some(0));
    let text = out.stdout.clone();
    for needle in ["--config", "3478", "docs/configuration.md"] {
        assert!(
            text.contains(needle),
            "serve --help lacks {needle:?}:\n{text}"
        );
    }
}

#[test]
fn bad_config_is_one_line_naming_the_key_and_exits_2() {
    let dir = std::env::temp_dir().join(format!("farside-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("[stun]\nlisten = [\"127.0.0.1:notaport\"]\n", "stun.listen"),
        (
            "[stun]\nlisten = [\"127.0.0.1:3478\"]\nalternat_address = \"127.0.0.2\"\n",
            "stun.alternat_address",
        ),
        (
            "[stun]\nlisten = [\"0.0.0.0:3478\"]\nalternate_address = \"127.0.0.2\"\n",
            "stun.alternate_address",
        ),
        ("[stun]\nworkers = \"many\"\n", "stun.workers"),
        ("[admin]\nlisten = \"nowhere\"\n", "admin.listen"),
        ("[log]\nlevel = \"loud!!\"\n", "log.level"),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        for cmd in [
            &["serve", "--config"][..],
            &["check-config"][..],
            &["check-config", "--config"][..],
        ] {
            let mut args = cmd.to_vec();
            let p = path.to_str().unwrap();
            args.push(p);
            let out = farside(&args);
            let err = out.stderr.clone();
            assert_eq!(out.code(), Some(2), "{args:?}: {err}");
            assert_eq!(
                err.trim_end().lines().count(),
                1,
                "{args:?}: not one line: {err}"
            );
            assert!(err.contains(key), "{args:?}: {key:?} not named in: {err}");
            // And its line: `FILE:LINE: key: ...`.
            let line = err
                .split_once(&format!("{p}:"))
                .and_then(|(_, rest)| rest.split(':').next())
                .and_then(|n| n.parse::<usize>().ok());
            assert!(line.is_some_and(|n| n >= 2), "{args:?}: no line in: {err}");
        }
    }
    let missing = farside(&["serve", "--config", "/nonexistent/farside.toml"]);
    assert_eq!(missing.code(), Some(2));
    // Both forms docs give (docs/configuration.md, docs/partner-mode.md) accept a good file.
    let good = dir.join("good.toml");
    std::fs::write(&good, "[stun]\nlisten = [\"127.0.0.1:3478\"]\n").unwrap();
    let good = good.to_str().unwrap();
    for args in [
        &["check-config", good][..],
        &["check-config", "--config", good][..],
    ] {
        let out = farside(args);
        assert_eq!(out.code(), Some(0), "{args:?}: {}", out.describe());
        assert!(out.stdout.contains(": ok"), "{args:?}: {}", out.describe());
    }
    let neither = farside(&["check-config"]);
    assert_eq!(neither.code(), Some(2), "{}", neither.describe());
    let both = farside(&["check-config", good, "--config", good]);
    assert_eq!(both.code(), Some(2), "{}", both.describe());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `farside serve` with no file listens on UDP and TCP port 3478 of 0.0.0.0 and [::], and
/// coturn's `turnutils_stunclient 127.0.0.1` (its default port is 3478) is answered.
#[test]
fn embedded_defaults_serve_udp_and_tcp_on_3478() {
    let test = "embedded_defaults_serve_udp_and_tcp_on_3478";
    if !require_tool(test, "turnutils_stunclient") {
        return;
    }
    // The defaults take fixed ports: refuse to guess when something else holds them.
    let mut busy: Vec<String> = Vec::new();
    let mut check = |what: &str, r: std::io::Result<()>| {
        if let Err(e) = r {
            busy.push(format!("{what}: {e}"));
        }
    };
    check(
        "udp 0.0.0.0:3478",
        UdpSocket::bind("0.0.0.0:3478").map(drop),
    );
    check(
        "tcp 0.0.0.0:3478",
        TcpListener::bind("0.0.0.0:3478").map(drop),
    );
    check(
        "tcp 127.0.0.1:9478",
        TcpListener::bind("127.0.0.1:9478").map(drop),
    );
    if common::ipv6_loopback_available() {
        check("udp [::]:3478", v6_only_udp("[::]:3478"));
    }
    let busy = busy.join(", ");
    if !busy.is_empty() {
        assert!(
            std::env::var("FARSIDE_REQUIRE_PEERS").is_err(),
            "the default ports must be free in CI: {busy}"
        );
        common::skip(test, &format!("default ports in use: {busy}"));
        return;
    }
    // Its own data directory (as root the default is /var/lib/farside): TURN and SIP, on by
    // default, open the store there.
    let state = std::env::temp_dir().join(format!("farside-defaults-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    let mut child = Command::new(FARSIDE)
        .arg("serve")
        .env("STATE_DIRECTORY", &state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start farside serve");
    let guard = KillOnDrop(&mut child);

    let v4: SocketAddr = "127.0.0.1:3478".parse().unwrap();
    let mut answered = None;
    for _ in 0..50 {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        if let Some(m) = stun::udp_binding_once(&sock, v4, Duration::from_millis(200)) {
            answered = Some((m, sock.local_addr().unwrap()));
            break;
        }
    }
    let (msg, local) = answered.expect("no answer on 127.0.0.1:3478 within 10 s");
    assert_eq!(msg.xor_mapped(), Some(local));
    assert!(!msg.has(0x8022), "SOFTWARE must be off by default");
    assert!(!msg.has(0x802c), "OTHER-ADDRESS must be off by default");

    let out = run_tool(
        "turnutils_stunclient",
        &["127.0.0.1".to_string()],
        Duration::from_secs(10),
    );
    assert!(!out.timed_out(), "{}", out.describe());
    assert!(
        out.stdout.contains("UDP reflexive addr: 127.0.0.1:"),
        "{}",
        out.describe()
    );

    // The wildcard socket answers from the address each request was sent to (IP_PKTINFO),
    // and tells classic clients that address, not 0.0.0.0.
    for ip in ["127.0.0.1", "127.0.0.3"] {
        let to: SocketAddr = format!("{ip}:3478").parse().unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let req = stun::classic_binding_request(&stun::new_tid(), &[]);
        let (m, from) = stun::udp_exchange(&sock, to, &req, Duration::from_secs(2))
            .unwrap_or_else(|| panic!("no classic answer from {to}"));
        assert_eq!(from, to, "answer left from another address");
        assert_eq!(m.addr(0x0004), Some(to), "SOURCE-ADDRESS");
        assert_eq!(
            m.addr(0x0005),
            Some(to),
            "CHANGED-ADDRESS names the only address"
        );
        assert_eq!(
            m.addr(0x0001),
            Some(sock.local_addr().unwrap()),
            "MAPPED-ADDRESS"
        );
    }

    let (tcp_msg, tcp_local) = stun::tcp_binding(v4).expect("STUN over TCP on 127.0.0.1:3478");
    assert_eq!(tcp_msg.xor_mapped(), Some(tcp_local));

    if common::ipv6_loopback_available() {
        let v6: SocketAddr = "[::1]:3478".parse().unwrap();
        let sock = UdpSocket::bind("[::1]:0").unwrap();
        let (m, _) = stun::udp_binding(&sock, v6, &[]).expect("no answer on [::1]:3478");
        assert_eq!(m.xor_mapped(), Some(sock.local_addr().unwrap()));
        let (m, local) = stun::tcp_binding(v6).expect("STUN over TCP on [::1]:3478");
        assert_eq!(m.xor_mapped(), Some(local));
    } else {
        common::note(test, "::1 unavailable; IPv6 default listener not checked");
    }

    let (code, body) = common::http_get("127.0.0.1:9478".parse().unwrap(), "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        common::metric_sum(&body, "farside_stun_requests_total") >= 2.0,
        "{body}"
    );
    drop(guard);
    let _ = std::fs::remove_dir_all(&state);
}

/// Binds (and drops) an IPv6-only UDP socket, as the server's `[::]` listener is.
fn v6_only_udp(addr: &str) -> std::io::Result<()> {
    let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::DGRAM, None)?;
    s.set_only_v6(true)?;
    s.bind(&addr.parse::<SocketAddr>().unwrap().into())
}

struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every `farside …` command line that README.md and docs/*.md show, in code blocks and inline,
/// is one the command line accepts as written: its subcommands, options and values parse
/// (checked by clap with `--help` appended, which runs nothing; an unknown or misplaced argument
/// or a bad value still fails with exit status 2). Placeholders become real values first:
/// `FILE`, `…` after `--config` and the example paths a config file, `PW`, `NAME`, `DOMAIN`,
/// `ID` sample values, `[--opt value]` its contents. Lines that only name a command family
/// (`farside user …`) are left out.
#[test]
fn every_command_line_in_the_docs_is_accepted() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let dir = std::env::temp_dir().join(format!("farside-doc-lines-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("farside.toml");
    std::fs::write(&config, "[stun]\nlisten = [\"127.0.0.1:3478\"]\n").unwrap();
    let config = config.to_str().unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for line in documented_command_lines(&text) {
            let Some(args) = sample_arguments(&line, config) else {
                continue;
            };
            let mut with_help: Vec<&str> = args.iter().map(String::as_str).collect();
            with_help.push("--help");
            let out = farside(&with_help);
            checked += 1;
            if out.code() != Some(0) {
                let name = file.strip_prefix(&root).unwrap_or(file).display();
                failures.push(format!("{name}: `{line}`\n{}", out.stderr.trim()));
            }
        }
    }
    assert!(
        checked >= 30,
        "only {checked} command lines found in the docs"
    );
    assert!(
        failures.is_empty(),
        "{} of {checked} documented command lines are refused:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `farside …` lines of a Markdown text: lines of fenced code blocks (after an optional `$ `
/// prompt), and inline code spans.
fn documented_command_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            // A command, not a line of a program's output shown in the same kind of block
            // (`farside    11.05 …`, `farside max rate: …`).
            let l = line.trim().trim_start_matches("$ ");
            let command = l.split(" #").next().unwrap_or(l);
            if command
                .strip_prefix("farside ")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_lowercase()))
                && !command.contains(": ")
            {
                lines.push(l.to_string());
            }
            continue;
        }
        // Inline code: the odd pieces between backticks.
        for (i, span) in line.split('`').enumerate() {
            if i % 2 == 1 && span.starts_with("farside ") {
                lines.push(span.to_string());
            }
        }
    }
    lines
}

/// The arguments of a documented command line (after `farside`), placeholders replaced; `None`
/// for a line that stands for a family of commands.
fn sample_arguments(line: &str, config: &str) -> Option<Vec<String>> {
    // A trailing shell comment, and a continuation of a longer command, are not arguments.
    let line = line
        .split(" #")
        .next()?
        .trim()
        .trim_end_matches('\\')
        .trim();
    let words = shell_words(line.strip_prefix("farside ")?)?;
    let mut args = Vec::new();
    let mut previous = "";
    for w in &words {
        let w = w.trim_start_matches('[').trim_end_matches(']');
        let value = match w {
            "…" | "..." if previous == "--config" => config.to_string(),
            "…" | "..." => return None,
            "FILE" | "bad.toml" | "farside.toml" | "/etc/farside/farside.toml" => {
                config.to_string()
            }
            "PW" => "a-password".to_string(),
            "NAME" => "alice".to_string(),
            "DOMAIN" => "example.org".to_string(),
            "ID" => "1".to_string(),
            w => w.to_string(),
        };
        previous = w;
        if !value.is_empty() {
            args.push(value);
        }
    }
    Some(args)
}

/// Splits a command line at spaces, honouring single and double quotes; `None` if a quote is
/// left open.
fn shell_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, ' ') => {
                if any || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            (None, c) => word.push(c),
        }
    }
    if quote.is_some() {
        return None;
    }
    if any || !word.is_empty() {
        words.push(word);
    }
    Some(words)
}
