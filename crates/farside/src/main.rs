//! `farside`: NAT traversal for SIP and WebRTC in one program: a STUN server, a TURN relay, a
//! SIP registrar and NAT edge, and an RTP relay.
//!
//! The modules, from the top: `start` (builds everything; nothing imports it) and `cli` (the
//! other commands); the protocol shells `dataplane` (STUN and TURN workers) and `sip`;
//! `control` (admin HTTP, credentials); `config` (each section converted once into typed
//! settings); `net` (binding, UDP batches, TLS, the one stream connection); `telemetry`
//! (counters and their renderer); `runtime` (clock, seeds, locks), which imports none of them.
//! Imports point down this list, never up. `docs/architecture.md` is the map.

// A binary has no public API: `pub` marks what modules share with each other.
#![allow(unreachable_pub)]

mod cli;
mod config;
mod control;
mod dataplane;
mod media;
mod net;
mod runtime;
mod sip;
mod start;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

/// Farside makes SIP and WebRTC work across NAT.
///
/// One program: a STUN server (RFC 8489/5389, classic RFC 3489 clients, RFC 5780 NAT behaviour
/// discovery, alone or with partner servers), a TURN relay (RFC 8656, RFC 6062 TCP allocations,
/// RFC 6156 IPv6; long-term users and shared secrets), a SIP registrar and NAT edge for
/// phones behind NAT (UDP, TCP, TLS, WebSocket; Digest, received/rport, flows, keep-alives,
/// calls routed back over the phone's flow), and an RTP relay for their media (Farside's own
/// calls, or Kamailio's rtpengine module over ng). TURN, SIP and RTP are off until enabled in
/// the configuration file. Also: `farside probe` (what NAT am I behind?), user and secret
/// management, and load generators. Run `farside serve` with no file for a working STUN server
/// on port 3478.
#[derive(Parser, Debug)]
#[command(name = "farside", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server.
    ///
    /// Without --config, the embedded defaults apply: STUN on UDP and TCP port 3478 of every
    /// IPv4 and IPv6 address, no RFC 5780; TURN, a SIP registrar on port 5060 and the RTP
    /// relay where the host has one address to serve them from; metrics and the API on
    /// http://127.0.0.1:9478/. Every key is described in docs/configuration.md.
    Serve {
        /// The TOML configuration file.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Check a configuration file and exit: 0 when valid, 2 with a one-line error naming the
    /// file, the line (of the key, or of its table when the key is missing) and the key if not.
    ///
    /// The file is given as `farside check-config FILE` or, as to `serve`, `--config FILE`.
    CheckConfig {
        /// The TOML configuration file.
        #[arg(value_name = "FILE", required_unless_present = "config")]
        file: Option<PathBuf>,
        /// The TOML configuration file (the same as FILE).
        #[arg(short, long, value_name = "FILE", conflicts_with = "file")]
        config: Option<PathBuf>,
    },
    /// Find out what NAT this host is behind (RFC 5780 behaviour discovery).
    ///
    /// Asks a STUN server with RFC 5780 support (a Farside with `stun.alternate_address`)
    /// and reports the public address, the NAT's mapping and filtering behaviour,
    /// hairpinning, optionally the binding lifetime, and the classic RFC 3489 name.
    Probe(cli::probe::ProbeArgs),
    /// Find out why a phone fails behind this network's NAT: run it where the phone is.
    ///
    /// Finds the server by DNS (or --server), then checks the NAT (STUN behaviour discovery
    /// and binding lifetime), SIP over UDP, TCP and TLS (reachable; changed on the way by a
    /// SIP ALG, line by line, thanks to the server's mirror service), registration with the
    /// user's credentials, TURN over UDP and TCP, and audio through the relay (loss, jitter,
    /// round trip, MOS); ends with a verdict and advice. `farside doctor sip:alice@example.org
    /// --password-stdin`.
    Doctor(cli::doctor::DoctorArgs),
    /// Manage the users (TURN and SIP) in the store the server uses.
    User {
        #[command(subcommand)]
        cmd: cli::store::UserCommand,
        #[command(flatten)]
        store: cli::store::StoreArgs,
    },
    /// Manage the dashboard's login.
    Admin {
        #[command(subcommand)]
        cmd: cli::store::AdminCommand,
        #[command(flatten)]
        store: cli::store::StoreArgs,
    },
    /// Manage the shared secrets of ephemeral (REST) TURN credentials.
    Secret {
        #[command(subcommand)]
        cmd: cli::store::SecretCommand,
        #[command(flatten)]
        store: cli::store::StoreArgs,
    },
    /// Ask a running server what runs, where, and how much (its admin API).
    Status(cli::admin::AdminArgs),
    /// List a running server's TURN allocations and SIP registrations (its admin API).
    Sessions(cli::admin::AdminArgs),
    /// Make a running server read its configuration file again, as SIGHUP does.
    Reload(cli::admin::AdminArgs),
    /// Send a running server's new TURN allocations to another node while its own run out.
    ///
    /// `farside drain --to 192.0.2.2:3478` answers every new Allocate with 300 Try Alternate
    /// naming that node (once the client has authenticated); allocations already here go on
    /// until they end, and the count left is shown. `--stop` ends it; a restart ends it too.
    /// Without either, shows whether it drains.
    Drain(cli::admin::DrainArgs),
    /// Load generators and reference servers for benchmarks.
    Bench {
        #[command(subcommand)]
        cmd: farside_bench::BenchCommand,
    },
    /// Print a shell's completion script for farside, generated from this command line.
    ///
    /// Packages install it where the shell looks (bash:
    /// /usr/share/bash-completion/completions/farside); by hand:
    /// `source <(farside completions bash)`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page farside(1), in roff, generated from this command line.
    ///
    /// `farside manpage > farside.1 && man ./farside.1`.
    Manpage,
}

/// Exit status for a configuration error (as `sysexits` EX_USAGE-like tools do with 2).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let path_given = config.clone();
            let from_defaults = config.is_none();
            let (config, notices) = match config::Config::load_settled(config.as_deref()) {
                Ok(settled) => settled,
                Err(e) => {
                    eprintln!("farside: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let ring = Arc::new(telemetry::log_ring::LogRing::new(config.admin.log_lines));
            let log = init_logging(&config.log.level, Arc::clone(&ring));
            for n in &notices.0 {
                tracing::info!("{n}");
            }
            let reload = control::reload::Reload {
                path: path_given,
                running: config.clone(),
                log: Some(log),
                live: control::reload::Live::default(),
            };
            match start::run(config, from_defaults, reload, ring) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { file, config } => {
            // clap insists on one of the two; the `else` is for completeness.
            let Some(path) = file.or(config) else {
                eprintln!("farside: check-config needs a FILE");
                return ExitCode::from(EXIT_CONFIG);
            };
            check_config(&path)
        }
        Command::Probe(args) => match cli::probe::run(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("farside probe: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Doctor(args) => match cli::doctor::run(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("farside doctor: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Status(args) => cli::admin::status(&args),
        Command::Sessions(args) => cli::admin::sessions(&args),
        Command::Reload(args) => cli::admin::reload(&args),
        Command::Drain(args) => cli::admin::drain(&args),
        Command::User { cmd, store } => cli::store::user(cmd, &store),
        Command::Admin { cmd, store } => cli::store::admin(cmd, &store),
        Command::Secret { cmd, store } => cli::store::secret(cmd, &store),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "farside", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Manpage => {
            let man = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            match man.render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("farside manpage: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench { cmd } => {
            init_logging("warn", Arc::new(telemetry::log_ring::LogRing::new(1)));
            match farside_bench::run(cmd) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("farside bench: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `farside check-config`: loads the file as `serve` would, starts nothing.
fn check_config(path: &std::path::Path) -> ExitCode {
    match config::Config::load_settled(Some(path)) {
        Ok((_, notices)) => {
            println!("{}: ok", path.display());
            for n in &notices.0 {
                println!("  {n}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("farside: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Logging to standard error at `level` (`RUST_LOG` overrides it); the handle through which
/// a reload changes the level.
fn init_logging(
    level: &str,
    ring: Arc<telemetry::log_ring::LogRing>,
) -> control::reload::LogFilter {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_target(false),
        )
        .with(telemetry::log_ring::RingLayer(ring))
        .init();
    handle
}
