//! Audio through the server's RTP relay: a call to its echo service (`farside_sip::echo`) over
//! UDP, made as a phone on this network makes one. The INVITE's SDP names this host's (private)
//! address and an RTP port; the 200 names the relay's port, which sends back whatever reaches
//! it from this host. RTP packets go every 20 ms for the given seconds, each one's round trip
//! measured by the counter it carries; then the call ends with BYE (RFC 3261 §15).

use std::net::{IpAddr, SocketAddr, UdpSocket};

use farside_sip::{HeaderName, Message};

use super::audio::{PACKET_BYTES, stream};
use super::report::Audio;
use super::sip::{Conn, Ids, Request, Target, random_token, status};

/// RTP's fixed header (RFC 3550 §5.1).
const RTP_HEADER: usize = 12;

/// Calls `echo_user` at `domain` through `server` over UDP from `local`, and streams RTP to
/// the relay's port the answer names for `seconds`.
pub fn rtp_echo(
    server: SocketAddr,
    local: IpAddr,
    domain: &str,
    echo_user: &str,
    seconds: f64,
) -> anyhow::Result<Audio> {
    let t = Target {
        transport: "udp",
        server,
        source: String::new(),
    };
    let (mut conn, me) = Conn::open(&t, local, None)?;
    let rtp = UdpSocket::bind(SocketAddr::new(local, 0))?;
    let family = if local.is_ipv6() { "IP6" } else { "IP4" };
    let sdp = format!(
        "v=0\r\no=doctor 1 1 IN {family} {local}\r\ns=farside doctor\r\nc=IN {family} {local}\r\n\
t=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        port = rtp.local_addr()?.port(),
    );
    let uri = format!("sip:{echo_user}@{domain}");
    let from = format!("sip:doctor@{domain}");
    let to = format!("<{uri}>");
    let ids = Ids::fresh();
    let invite = Request::first("INVITE", &uri, &to, "udp", me, &from, &ids, Some(&sdp));
    let (answer, _) = conn.ask(invite.text().as_bytes(), &ids.branch)?;
    let code = status(&answer).unwrap_or(0);
    if !(200..300).contains(&code) {
        anyhow::bail!(
            "the echo service ({uri}) answered {}",
            String::from_utf8_lossy(&answer)
                .lines()
                .next()
                .unwrap_or("")
        );
    }
    let m = Message::parse(&answer)
        .map_err(|e| anyhow::anyhow!("the server's answer is not SIP: {e:?}"))?;
    let relay = media_address(m.body())?;
    let answered_to = text(m.value(HeaderName::To));
    let target = m
        .contacts()
        .next()
        .map(|c| String::from_utf8_lossy(c.uri().as_bytes()).into_owned())
        .unwrap_or_else(|| uri.clone());
    // Within the dialog (RFC 3261 §12.2.1.1): to the remote target, the answer's To, each
    // request a transaction of its own (the ACK of a 2xx too, §13.2.2.4).
    let in_dialog = |method: &'static str, cseq: u32, branch: &str| {
        Request {
            method,
            uri: &target,
            to: &answered_to,
            cseq,
            branch,
            body: None,
            ..invite
        }
        .text()
    };
    let ack_branch = format!("z9hG4bK-doctor-{}", random_token());
    conn.send(in_dialog("ACK", 1, &ack_branch).as_bytes())?;

    let mut ssrc = [0u8; 4];
    let _ = farside_io::random_bytes(&mut ssrc);
    let packet = |n: u64| {
        // PCMU, 20 ms: 160 bytes of payload, the first 8 the packet's counter.
        let mut p = vec![0xFFu8; PACKET_BYTES];
        p[0] = 0x80;
        p[1] = 0;
        p[2..4].copy_from_slice(&(n as u16).to_be_bytes());
        p[4..8].copy_from_slice(&((n as u32).wrapping_mul(160)).to_be_bytes());
        p[8..12].copy_from_slice(&ssrc);
        p[RTP_HEADER..RTP_HEADER + 8].copy_from_slice(&n.to_be_bytes());
        Ok(p)
    };
    let echo_of = |datagram: &[u8], from: SocketAddr| {
        (from == relay && datagram.len() >= RTP_HEADER + 8 && datagram[8..12] == ssrc).then(|| {
            u64::from_be_bytes(
                datagram[RTP_HEADER..RTP_HEADER + 8]
                    .try_into()
                    .unwrap_or_default(),
            )
        })
    };
    let audio = stream(
        &rtp,
        relay,
        seconds,
        "RTP relay (a call to its echo service)",
        packet,
        echo_of,
    );
    let bye_branch = format!("z9hG4bK-doctor-{}", random_token());
    let _ = conn.ask(in_dialog("BYE", 2, &bye_branch).as_bytes(), &bye_branch);
    audio
}

fn text(value: Option<&[u8]>) -> String {
    String::from_utf8_lossy(value.unwrap_or_default()).into_owned()
}

/// Where the answer's first media stream goes: its connection address and port.
fn media_address(sdp: &[u8]) -> anyhow::Result<SocketAddr> {
    let parsed = farside_sdp::Sdp::parse(sdp)
        .map_err(|e| anyhow::anyhow!("the echo's SDP does not read: {e:?}"))?;
    let m = parsed
        .media()
        .next()
        .ok_or_else(|| anyhow::anyhow!("the echo's SDP has no media"))?;
    match m.connection {
        farside_sdp::Connection::Ip(ip) if m.port != 0 => Ok(SocketAddr::new(ip, m.port)),
        _ => anyhow::bail!("the echo's SDP names no address and port"),
    }
}
