//! `farside doctor`: one command that tells a user why their phone fails behind their NAT. Run
//! from the user's network, it finds the server by DNS (NAPTR and SRV for SIP, SRV for STUN) or
//! takes it from `--server`, and checks, printing progress as it goes: the NAT (STUN behaviour
//! discovery and the binding lifetime), SIP over UDP, TCP and TLS (reachable, and whether
//! anything on the way rewrote the messages: the server's mirror service sends back what
//! arrived), registration with the user's credentials, TURN over UDP and TCP, and audio through
//! the TURN relay, through the RTP relay (a call to the server's echo service) and straight to
//! the server. It ends with a verdict and advice in plain words, as
//! text or one JSON object (docs/doctor.md).
//!
//! The checks are blocking clients of their own ([`sip`], [`turn`]) and the NAT probe's shell;
//! the verdict ([`verdict`]) reads the report they fill ([`report`]) and decides nothing else.

mod audio;
mod echo;
mod report;
mod sip;
mod turn;
mod verdict;

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use farside_probe::{LifetimeConfig, ProbeConfig};

use crate::cli::dns::{self, Target};
use report::{Nat, Report};
use verdict::{EXIT_USAGE, SHORT_LIFETIME_S};

/// `farside doctor` arguments.
#[derive(Args, Debug)]
#[command(after_long_help = "\
Exit status: 0 all is well (advice may still be printed); 2 the target or an argument is wrong, \
or DNS found no server; 3 problems you can fix were found (a SIP ALG, a short NAT binding \
lifetime, UDP blocked, a relay losing audio); 4 the SIP server answered over no transport; 5 \
the registration with the given credentials failed.")]
pub struct DoctorArgs {
    /// Who to check: `sip:USER@DOMAIN` (the user's address: its domain is looked up, its user
    /// registers), or a host.
    #[arg(value_name = "TARGET")]
    target: String,
    /// The server as `HOST[:PORT]`, skipping DNS (labs, split horizons): SIP over UDP and TCP
    /// on PORT (5060), TLS on --tls-port, STUN and TURN on --stun-port.
    #[arg(long, value_name = "HOST[:PORT]")]
    server: Option<String>,
    /// The user to register and to allocate TURN relays as (default: the target's user).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Read the password from the first line of stdin (else it is asked for on the terminal).
    #[arg(long)]
    password_stdin: bool,
    /// Print one JSON object instead of text (its schema: docs/doctor.md).
    #[arg(long)]
    json: bool,
    /// Measure the NAT's binding lifetime exactly (minutes), not only whether it outlives 25 s.
    #[arg(long)]
    lifetime: bool,
    /// The SIP over TLS port with --server.
    #[arg(long, value_name = "PORT", default_value_t = 5061)]
    tls_port: u16,
    /// The STUN and TURN port with --server.
    #[arg(long, value_name = "PORT", default_value_t = dns::STUN_PORT)]
    stun_port: u16,
    /// The server's mirror user (its `sip.mirror_user`).
    #[arg(long, value_name = "USER", default_value = farside_sip::mirror::DEFAULT_USER)]
    mirror_user: String,
    /// The server's echo user (its `sip.echo_user`): audio through its RTP relay.
    #[arg(long, value_name = "USER", default_value = farside_sip::echo::DEFAULT_USER)]
    echo_user: String,
    /// Seconds of each audio check (through the relays, straight to the server).
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    audio_seconds: f64,
    /// The DNS server to ask instead of the system's, as IP or IP:port.
    #[arg(long, value_name = "SERVER")]
    dns: Option<String>,
    /// The local address to send from (default: the one the system routes to the server from).
    #[arg(long, value_name = "IP")]
    local: Option<IpAddr>,
}

/// Where each check goes.
#[derive(Debug)]
struct Servers {
    sip: Vec<sip::Target>,
    stun: Option<dns::Candidate>,
}

/// Runs the checks and prints the report.
pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the runtime")?;
    runtime.block_on(run_async(args))
}

fn usage(e: anyhow::Error) -> anyhow::Result<ExitCode> {
    eprintln!("farside doctor: {e:#}");
    Ok(ExitCode::from(EXIT_USAGE))
}

/// `sip:user@domain` → (user, domain); a host → (none, host).
fn parse_target(target: &str) -> anyhow::Result<(Option<String>, String)> {
    let t = target.trim();
    let rest = t
        .strip_prefix("sip:")
        .or_else(|| t.strip_prefix("sips:"))
        .unwrap_or(t);
    let (user, host) = match rest.split_once('@') {
        Some((u, h)) if !u.is_empty() => (Some(u.to_owned()), h),
        Some(_) => anyhow::bail!("{target:?}: no user before the @"),
        None => (None, rest),
    };
    let host = host.split([';', '?', '>']).next().unwrap_or("").trim();
    if host.is_empty() {
        anyhow::bail!("{target:?}: no domain or host");
    }
    Ok((user, host.to_owned()))
}

async fn run_async(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let (target_user, domain) = match parse_target(&args.target) {
        Ok(t) => t,
        Err(e) => return usage(e),
    };
    let user = args.user.clone().or(target_user);
    let password = match &user {
        Some(u) => match read_password(u, args.password_stdin) {
            Ok(p) => Some(p),
            Err(e) => return usage(e),
        },
        None => None,
    };
    let servers = match find_servers(&args, &domain).await {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let first = servers
        .sip
        .first()
        .map(|t| t.server)
        .or(servers.stun.as_ref().map(|c| c.address));
    let Some(first) = first else {
        return usage(anyhow::anyhow!("no server found for {domain}"));
    };
    let local = match args.local {
        Some(ip) => ip,
        None => crate::cli::probe::route_source(first).await?,
    };
    let mut report = Report {
        target: args.target.clone(),
        ..Report::default()
    };

    // The NAT probe runs while the SIP checks do (its lifetime trial waits idle).
    let nat = servers.stun.clone().map(|stun| {
        progress(&format!(
            "NAT: STUN behaviour discovery at {} ({}){}",
            stun.address,
            stun.source,
            if args.lifetime {
                ", and the binding lifetime (minutes)"
            } else {
                ", and whether an idle binding outlives 25 s"
            }
        ));
        let lifetime = if args.lifetime {
            LifetimeConfig::default()
        } else {
            let quick = Duration::from_secs(SHORT_LIFETIME_S);
            LifetimeConfig {
                max: quick,
                resolution: quick,
            }
        };
        let config = ProbeConfig {
            server: stun.address,
            rto: Duration::from_millis(300),
            retransmits: 4,
            lifetime: Some(lifetime),
            ..ProbeConfig::default()
        };
        let seed = crate::runtime::seed::fresh_seed();
        let local = args.local;
        (
            stun,
            tokio::spawn(async move {
                crate::cli::probe::discover(config, local, seed, args.lifetime).await
            }),
        )
    });

    let tls = crate::net::tls_client::config(&crate::net::tls_client::Verify::Off)?;
    for t in &servers.sip {
        progress(&format!(
            "SIP over {}: OPTIONS and INVITE to the mirror at {} ({})",
            t.transport.to_uppercase(),
            t.server,
            t.source
        ));
        let (t2, d, m, tls) = (
            t.clone(),
            domain.clone(),
            args.mirror_user.clone(),
            tls.clone(),
        );
        let path = tokio::task::spawn_blocking(move || sip::mirror_check(&t2, local, &d, &m, &tls))
            .await?;
        progress(&match (&path.error, path.alg) {
            (Some(e), _) if !path.reachable => format!("  not reachable: {e}"),
            (Some(e), _) => format!("  reachable, but: {e}"),
            (None, true) => format!("  CHANGED ON THE WAY: {} line(s)", path.changes.len()),
            (None, false) => "  arrived unchanged".into(),
        });
        report.sip.push(path);
    }
    if let Some(udp) = servers.sip.iter().find(|t| t.transport == "udp") {
        progress(&format!(
            "audio through the RTP relay: a call to sip:{}@{domain} at {}, {} s of RTP",
            args.echo_user, udp.server, args.audio_seconds
        ));
        let (server, d, e, seconds) = (
            udp.server,
            domain.clone(),
            args.echo_user.clone(),
            args.audio_seconds,
        );
        match tokio::task::spawn_blocking(move || echo::rtp_echo(server, local, &d, &e, seconds))
            .await?
        {
            Ok(a) => report.rtp_relay_audio = Some(a),
            Err(e) => {
                progress(&format!("  no audio through the RTP relay: {e:#}"));
                report.rtp_relay_error = Some(format!("{e:#}"));
            }
        }
    }
    if let Some(stun) = &servers.stun {
        progress(&format!(
            "audio straight to the server: {} s of RTP-sized STUN requests to {}",
            args.audio_seconds, stun.address
        ));
        let (server, seconds) = (stun.address, args.audio_seconds);
        match tokio::task::spawn_blocking(move || audio::direct(server, local, seconds)).await? {
            Ok(a) => report.direct_audio = Some(a),
            Err(e) => progress(&format!("  no direct audio: {e:#}")),
        }
    }
    if let (Some(user), Some(password)) = (&user, &password) {
        if let Some(udp) = servers.sip.iter().find(|t| t.transport == "udp") {
            progress(&format!("registration of sip:{user}@{domain} over UDP"));
            let (server, d, u, p) = (udp.server, domain.clone(), user.clone(), password.clone());
            let reg = tokio::task::spawn_blocking(move || sip::register(server, local, &d, &u, &p))
                .await?;
            progress(&match &reg.error {
                None => format!("  registered after {} challenge(s)", reg.challenges),
                Some(e) => format!("  not registered: {e}"),
            });
            report.registration = Some(reg);
        }
        if let Some(stun) = &servers.stun {
            progress(&format!(
                "TURN at {}: allocations over UDP and TCP, {} s of audio through the relay",
                stun.address, args.audio_seconds
            ));
            let creds = farside_bench::turn_client::Creds {
                user: user.clone(),
                password: password.clone(),
            };
            let (server, seconds) = (stun.address, args.audio_seconds);
            let (turn, audio) =
                tokio::task::spawn_blocking(move || turn::check(server, local, &creds, seconds))
                    .await?;
            report.turn = turn;
            report.audio = audio;
        }
    }
    if let Some((stun, task)) = nat {
        progress("NAT: waiting for the discovery to finish");
        report.nat = Some(match task.await? {
            Ok(r) => nat_of(&stun, &r),
            Err(e) => Nat {
                stun_server: format!("{} ({})", stun.address, stun.source),
                notes: vec![format!("{e:#}")],
                ..Nat::default()
            },
        });
    }
    report.verdict = verdict::verdict(&report);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(ExitCode::from(report.verdict.exit_code))
}

fn progress(line: &str) {
    eprintln!("… {line}");
}

fn nat_of(stun: &dns::Candidate, r: &farside_probe::Report) -> Nat {
    Nat {
        stun_server: format!("{} ({})", stun.address, stun.source),
        reachable: r.reachable,
        local: r.local.to_string(),
        public: r.public.map(|a| a.to_string()),
        nat: r.nat,
        mapping: r.mapping.map(|b| b.to_string()),
        filtering: r.filtering.map(|b| b.to_string()),
        hairpinning: r.hairpinning,
        classic: r.classic.to_string(),
        lifetime_at_least_s: r.lifetime.as_ref().map(|l| l.at_least.as_secs()),
        lifetime_less_than_s: r
            .lifetime
            .as_ref()
            .and_then(|l| l.less_than.map(|d| d.as_secs())),
        notes: r.notes.clone(),
    }
}

/// The servers: from `--server`, or DNS: NAPTR then SRV for SIP (RFC 3263), SRV for STUN
/// (`_stun._udp`), with A/AAAA on the default ports as the fallback.
async fn find_servers(args: &DoctorArgs, domain: &str) -> anyhow::Result<Servers> {
    let seed = crate::runtime::seed::fresh_seed();
    if let Some(server) = &args.server {
        let (host, port) = match server.parse::<SocketAddr>() {
            Ok(a) => (a.ip().to_string(), a.port()),
            Err(_) => match server.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (
                    h.to_owned(),
                    p.parse()
                        .with_context(|| format!("--server {server:?}: bad port"))?,
                ),
                _ => (server.trim_matches(['[', ']']).to_owned(), 5060),
            },
        };
        let ip = match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .with_context(|| format!("--server {host}: no address"))?
                .next()
                .with_context(|| format!("--server {host}: no address"))?
                .ip(),
        };
        let given = |transport: &'static str, port: u16| sip::Target {
            transport,
            server: SocketAddr::new(ip, port),
            source: "--server".into(),
        };
        return Ok(Servers {
            sip: vec![
                given("udp", port),
                given("tcp", port),
                given("tls", args.tls_port),
            ],
            stun: Some(dns::Candidate {
                address: SocketAddr::new(ip, args.stun_port),
                source: "--server".into(),
            }),
        });
    }
    let dns_server = args.dns.as_deref().map(dns::parse_server).transpose()?;
    let resolver = dns::resolver(dns_server)?;
    let target = match domain.parse::<IpAddr>() {
        Ok(ip) => Target::Address(SocketAddr::new(ip, 0)),
        Err(_) => Target::Domain(domain.to_owned()),
    };
    let find = |service: &'static str, port: u16| {
        let target = match &target {
            Target::Address(a) => Target::Address(SocketAddr::new(a.ip(), port)),
            other => other.clone(),
        };
        let resolver = &resolver;
        async move {
            dns::service_candidates(&target, service, port, resolver, seed)
                .await
                .ok()
                .and_then(|c| c.into_iter().next())
        }
    };
    let mut sip = Vec::new();
    // RFC 3263 §4.1: NAPTR names the transports and their SRV names; without NAPTR records,
    // the SRV names of each transport; without those, the address on the default port.
    let naptr = match &target {
        Target::Domain(d) => dns::naptr_sip(d, &resolver, seed).await,
        _ => Vec::new(),
    };
    for (transport, service, port) in [
        ("udp", "_sip._udp", 5060),
        ("tcp", "_sip._tcp", 5060),
        ("tls", "_sips._tcp", 5061),
    ] {
        let found = match naptr.is_empty() {
            true => find(service, port).await,
            false => naptr
                .iter()
                .find(|(t, _)| *t == transport)
                .and_then(|(_, c)| c.first().cloned()),
        };
        if let Some(c) = found {
            sip.push(sip::Target {
                transport,
                server: c.address,
                source: c.source,
            });
        }
    }
    let stun = find("_stun._udp", dns::STUN_PORT).await;
    if sip.is_empty() && stun.is_none() {
        anyhow::bail!("{domain}: DNS names no SIP or STUN server, and has no address");
    }
    Ok(Servers { sip, stun })
}

/// The password: the first line of stdin with `--password-stdin`, else asked for on the
/// terminal without echo.
fn read_password(user: &str, from_stdin: bool) -> anyhow::Result<String> {
    let mut line = String::new();
    if from_stdin {
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("read the password from stdin")?;
    } else {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!("no terminal to ask {user}'s password on: give it with --password-stdin");
        }
        eprint!("Password for {user}: ");
        let _ = std::io::stderr().flush();
        let _quiet = NoEcho::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("read the password")?;
        eprintln!();
    }
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        anyhow::bail!("an empty password for {user}");
    }
    Ok(password)
}

/// The terminal's echo off while it lives (`stty`: no unsafe code for termios here).
struct NoEcho(bool);

impl NoEcho {
    fn new() -> NoEcho {
        NoEcho(stty("-echo"))
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if self.0 {
            stty("echo");
        }
    }
}

fn stty(setting: &str) -> bool {
    std::fs::File::open("/dev/tty")
        .ok()
        .and_then(|tty| {
            std::process::Command::new("stty")
                .arg(setting)
                .stdin(tty)
                .status()
                .ok()
        })
        .is_some_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_a_sip_address_or_a_host() {
        assert_eq!(
            parse_target("sip:alice@example.org").expect("parses"),
            (Some("alice".into()), "example.org".into())
        );
        assert_eq!(
            parse_target("sips:bob@203.0.113.10;transport=tls").expect("parses"),
            (Some("bob".into()), "203.0.113.10".into())
        );
        assert_eq!(
            parse_target("example.org").expect("parses"),
            (None, "example.org".into())
        );
        assert!(parse_target("sip:@example.org").is_err());
        assert!(parse_target("sip:alice@").is_err());
    }
}
