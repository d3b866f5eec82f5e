//! The doctor's TURN checks (RFC 8656): an allocation over UDP and one over TCP with the user's
//! credentials, and audio through the UDP one: RTP-sized packets every 20 ms to a peer on this
//! host, which echoes them back through the relay. Blocking sockets.
//!
//! The peer sits behind the same NAT as the client, so it is reached the way a remote phone
//! would be: it sends first (opening its NAT toward the relayed address), the relay hands that
//! to the client as a Data indication naming where it came from, and the client binds a
//! channel to that address (right even behind a symmetric NAT, whose port toward the relay is
//! not the one STUN saw).

use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use farside_bench::turn_client::{self, Allocated, Creds};
use farside_stun::attributes::{XorMappedAddress, XorPeerAddress};
use farside_stun::{Class, Message, Method};

use super::audio::{PACKET_BYTES, stream};
use super::report::{Audio, TurnPath};

/// The channel the audio runs on.
const CHANNEL: u16 = 0x4000;

/// Allocates over UDP and TCP at `server` and, over the UDP allocation, runs `seconds` of
/// audio; the allocations and the audio figures.
pub fn check(
    server: SocketAddr,
    local: IpAddr,
    creds: &Creds,
    seconds: f64,
) -> (Vec<TurnPath>, Option<Audio>) {
    let mut paths = Vec::new();
    let mut audio = None;
    let mut udp = TurnPath {
        transport: "udp".into(),
        server: server.to_string(),
        ..TurnPath::default()
    };
    match udp_allocation(server, local, creds) {
        Ok((client, a)) => {
            udp.allocated = true;
            udp.relayed = Some(a.relayed.to_string());
            match run_audio(&client, server, local, creds, &a, seconds) {
                Ok(found) => audio = Some(found),
                Err(e) => udp.error = Some(format!("audio: {e:#}")),
            }
            // The audio left a 2 ms read timeout: the Refresh's exchange waits longer.
            let _ = client.set_read_timeout(Some(Duration::from_millis(300)));
            let _ = turn_client::delete(&client, server, creds);
        }
        Err(e) => udp.error = Some(format!("{e:#}")),
    }
    paths.push(udp);
    let mut tcp = TurnPath {
        transport: "tcp".into(),
        server: server.to_string(),
        ..TurnPath::default()
    };
    match tcp_allocation(server, local, creds) {
        Ok(a) => {
            tcp.allocated = true;
            tcp.relayed = Some(a.relayed.to_string());
        }
        Err(e) => tcp.error = Some(format!("{e:#}")),
    }
    paths.push(tcp);
    (paths, audio)
}

fn udp_allocation(
    server: SocketAddr,
    local: IpAddr,
    creds: &Creds,
) -> anyhow::Result<(UdpSocket, Allocated)> {
    let client = UdpSocket::bind(SocketAddr::new(local, 0))?;
    let mut ask = |req: &[u8]| turn_client::exchange(&client, server, req);
    let a = turn_client::allocate(&mut ask, creds)?;
    Ok((client, a))
}

fn tcp_allocation(server: SocketAddr, local: IpAddr, creds: &Creds) -> anyhow::Result<Allocated> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(server),
        socket2::Type::STREAM,
        None,
    )?;
    socket.bind(&SocketAddr::new(local, 0).into())?;
    socket.connect_timeout(&server.into(), Duration::from_secs(3))?;
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut ask = |req: &[u8]| turn_client::exchange_stream(&mut stream, req);
    // Closing the connection ends the allocation (RFC 8656 §3.1).
    turn_client::allocate(&mut ask, creds)
}

/// Where `socket` is seen from the server (a Binding request, RFC 8489).
fn mapped(socket: &UdpSocket, server: SocketAddr) -> anyhow::Result<SocketAddr> {
    let req = turn_client::request(Method::BINDING, None, |_| Ok(()))?;
    let answer = turn_client::exchange(socket, server, &req)?;
    let m = Message::parse(&answer).map_err(|_| anyhow::anyhow!("bad Binding answer"))?;
    Ok(m.attribute::<XorMappedAddress>()
        .and_then(Result::ok)
        .ok_or_else(|| anyhow::anyhow!("no XOR-MAPPED-ADDRESS"))?
        .0)
}

fn run_audio(
    client: &UdpSocket,
    server: SocketAddr,
    local: IpAddr,
    creds: &Creds,
    a: &Allocated,
    seconds: f64,
) -> anyhow::Result<Audio> {
    let peer = UdpSocket::bind(SocketAddr::new(local, 0))?;
    let seen = mapped(&peer, server)?;
    let mut ask = |req: &[u8]| turn_client::exchange(client, server, req);
    let permission = turn_client::request(
        Method::CREATE_PERMISSION,
        Some((creds, &a.realm, &a.nonce)),
        |b| {
            b.add(&XorPeerAddress(seen))
                .map_err(|_| anyhow::anyhow!("buffer"))
        },
    )?;
    let answer = ask(&permission)?;
    let m = Message::parse(&answer).map_err(|_| anyhow::anyhow!("bad answer"))?;
    if m.class() != Class::SuccessResponse {
        anyhow::bail!(
            "CreatePermission refused: {:?}",
            turn_client::error_code(&m)
        );
    }
    // The peer speaks first; its address toward the relay comes back in a Data indication.
    let mut from_peer = None;
    let mut buf = vec![0u8; 2048];
    client.set_read_timeout(Some(Duration::from_millis(300)))?;
    for _ in 0..10 {
        peer.send_to(b"farside doctor", a.relayed)?;
        if let Ok((n, _)) = client.recv_from(&mut buf)
            && let Ok(m) = Message::parse(&buf[..n])
            && m.class() == Class::Indication
            && m.method() == Method::DATA
        {
            from_peer = m
                .attribute::<XorPeerAddress>()
                .and_then(Result::ok)
                .map(|a| a.0);
            break;
        }
    }
    let from_peer = from_peer
        .ok_or_else(|| anyhow::anyhow!("nothing the peer sent to {} came through", a.relayed))?;
    turn_client::channel_bind(&mut ask, creds, a, CHANNEL, from_peer)?;

    // The peer echoes whatever the relay sends it, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        let stop = Arc::clone(&stop);
        let peer = peer.try_clone()?;
        let relayed = a.relayed;
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 2048];
            let _ = peer.set_read_timeout(Some(Duration::from_millis(100)));
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = peer.recv_from(&mut buf)
                    && from == relayed
                {
                    let _ = peer.send_to(&buf[..n], relayed);
                }
            }
        })
    };
    let result = echo_through(client, server, seconds);
    stop.store(true, Ordering::Relaxed);
    let _ = echo.join();
    result
}

/// Sends packets on the channel every 20 ms for `seconds` and measures what comes back.
fn echo_through(client: &UdpSocket, server: SocketAddr, seconds: f64) -> anyhow::Result<Audio> {
    let packet = |seq: u64| {
        let mut packet = vec![0u8; 4 + PACKET_BYTES];
        packet[..2].copy_from_slice(&CHANNEL.to_be_bytes());
        packet[2..4].copy_from_slice(&(PACKET_BYTES as u16).to_be_bytes());
        packet[4..12].copy_from_slice(&seq.to_be_bytes());
        Ok(packet)
    };
    let echo_of = |datagram: &[u8], _from: SocketAddr| {
        (datagram.len() >= 12 && datagram[..2] == CHANNEL.to_be_bytes())
            .then(|| u64::from_be_bytes(datagram[4..12].try_into().unwrap_or_default()))
    };
    stream(client, server, seconds, "TURN relay", packet, echo_of)
}
