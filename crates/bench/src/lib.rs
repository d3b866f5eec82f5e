//! `farside bench`: load tools for measuring STUN and TURN servers (Farside or any other) on one
//! host. They live apart from the server: nothing of theirs runs in `farside serve`.
//!
//! - `farside bench stun TARGET`: a batched Binding-request load generator, open loop at a
//!   given rate or closed loop with a window; prints answered/s, loss and latency percentiles.
//! - `farside bench turn TARGET`: a TURN relay load generator (ChannelData round trips through
//!   the relay to an echo peer it runs itself).
//! - `farside bench sip TARGET`: a SIP registration load generator (REGISTER with Digest from
//!   phones behind a NAT), open loop at a given rate.
//! - `farside bench rtp NG`: an RTP relay load generator (calls set up over rtpengine's ng
//!   protocol, G.711-sized RTP both ways), phase by phase.
//! - `farside bench responder LISTEN`: the bare batched UDP responder, the floor the kernel
//!   sets for any UDP request/response server on this machine.
//!
//! `bench/stun.sh`, `bench/turn.sh` and `bench/sip.sh` at the top of the repository run them
//! against Farside and coturn or Kamailio; the method and the figures are in
//! `docs/benchmarks.md`.

mod measure;
mod responder;
mod rtp;
mod sip;
pub mod sip_wire;
mod stun;
mod turn;
pub mod turn_client;
mod wire;

use std::process::ExitCode;

pub use responder::ResponderArgs;
pub use rtp::RtpArgs;
pub use sip::SipArgs;
pub use stun::StunArgs;
pub use turn::TurnArgs;

/// The `farside bench` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Load a STUN server with Binding requests (open loop at --rate, or closed loop with
    /// --window) and report answered/s, loss and latency. Loopback targets only unless
    /// --allow-remote.
    Stun(stun::StunArgs),
    /// Load a TURN server: allocations with a channel each to an echo peer, RTP-sized
    /// ChannelData round trips at --rate; reports sent, echoed, received and loss.
    Turn(turn::TurnArgs),
    /// Load a SIP registrar: phones behind a NAT registering with Digest (REGISTER, 401,
    /// REGISTER with credentials, 200), open loop at --rate registrations/s; reports
    /// registered/s, failures and registration times.
    Sip(sip::SipArgs),
    /// Load an RTP relay over rtpengine's ng protocol: calls set up with offer and answer,
    /// then G.711-sized RTP both ways at --pps per call, phase by phase (--phases); reports
    /// sent, received, loss, broken streams and the relay's CPU.
    Rtp(rtp::RtpArgs),
    /// Run the bare batched UDP responder (recvmmsg, flip the STUN class, add an
    /// XOR-MAPPED-ADDRESS, sendmmsg): the floor any STUN server is measured against.
    Responder(responder::ResponderArgs),
}

/// Runs one `farside bench` subcommand.
pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Stun(args) => stun::run(args),
        BenchCommand::Responder(args) => responder::run(args),
        BenchCommand::Turn(args) => turn::run(args),
        BenchCommand::Sip(args) => sip::run(args),
        BenchCommand::Rtp(args) => rtp::run(args),
    }
}
