//! A blocking TURN client over UDP (RFC 8656): Allocate through the 401 challenge, bind a
//! channel, delete. The TURN load generator and `farside doctor` use it.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use farside_stun::attributes::{
    ChannelNumber, ErrorCode, Lifetime, Nonce, Realm, RequestedTransport, Username,
    XorMappedAddress, XorPeerAddress, XorRelayedAddress,
};
use farside_stun::{Class, Header, Message, MessageBuilder, MessageType, Method, TransactionId};

/// 437 to an Allocate: the 5-tuple has an allocation already.
#[derive(Debug)]
pub struct AllocationMismatch;

impl std::fmt::Display for AllocationMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Allocate refused: 437 (this client address has an allocation already)")
    }
}

impl std::error::Error for AllocationMismatch {}

/// A client's credentials.
pub struct Creds {
    /// The username.
    pub user: String,
    /// The password.
    pub password: String,
}

/// Sends `req` and waits for the response with its transaction id.
pub fn exchange(socket: &UdpSocket, to: SocketAddr, req: &[u8]) -> anyhow::Result<Vec<u8>> {
    let tid = req.get(8..20).context("short request")?.to_vec();
    for _ in 0..3 {
        socket.send_to(req, to)?;
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            match socket.recv_from(&mut buf) {
                Ok((n, _)) if buf.get(8..20) == Some(&tid[..]) => return Ok(buf[..n].to_vec()),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    bail!("no answer from {to}")
}

/// A transaction id, random where the system gives randomness.
pub fn tid() -> TransactionId {
    let mut t = [0u8; 12];
    // A generator's ids need not be secret, only unlikely to repeat: the clock will do when
    // getrandom(2) is missing.
    if farside_io::random_bytes(&mut t).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        t.copy_from_slice(&nanos.to_le_bytes()[..12]);
    }
    TransactionId(t)
}

/// A request; with `auth` = (creds, realm, nonce) it carries long-term integrity.
pub fn request(
    method: Method,
    auth: Option<(&Creds, &str, &str)>,
    body: impl FnOnce(&mut MessageBuilder<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<u8>> {
    let mut buf = vec![0u8; 512];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Class::Request, method),
        Header::new(tid()),
    )
    .map_err(|_| anyhow::anyhow!("buffer"))?;
    body(&mut b)?;
    if let Some((c, realm, nonce)) = auth {
        b.add(&Username(&c.user))
            .map_err(|_| anyhow::anyhow!("buffer"))?;
        b.add(&Realm(realm))
            .map_err(|_| anyhow::anyhow!("buffer"))?;
        b.add(&Nonce(nonce))
            .map_err(|_| anyhow::anyhow!("buffer"))?;
        let key = farside_stun::long_term_key_md5(&c.user, realm, &c.password)
            .map_err(|e| anyhow::anyhow!("password: {e}"))?;
        b.add_message_integrity(&key)
            .map_err(|_| anyhow::anyhow!("buffer"))?;
    }
    let n = b.finish();
    buf.truncate(n);
    Ok(buf)
}

/// The ERROR-CODE of a response, if any.
pub fn error_code(m: &Message<'_>) -> Option<u16> {
    m.attribute::<ErrorCode>()
        .and_then(Result::ok)
        .map(|e| e.code)
}

/// An allocation made: its relayed address, the client's address as the server saw it, and
/// the realm and nonce its later requests carry.
#[derive(Debug, Clone)]
pub struct Allocated {
    /// XOR-RELAYED-ADDRESS.
    pub relayed: SocketAddr,
    /// XOR-MAPPED-ADDRESS, when the server gave it.
    pub mapped: Option<SocketAddr>,
    /// The realm of the challenge.
    pub realm: String,
    /// The nonce of the challenge.
    pub nonce: String,
}

/// Allocates a UDP relay through the 401 challenge; `ask` sends a request and returns its
/// response (over UDP: [`exchange`]; over a stream: [`exchange_stream`]).
pub fn allocate(
    ask: &mut dyn FnMut(&[u8]) -> anyhow::Result<Vec<u8>>,
    c: &Creds,
) -> anyhow::Result<Allocated> {
    let transport = |b: &mut MessageBuilder<'_>| {
        b.add(&RequestedTransport(17))
            .map_err(|_| anyhow::anyhow!("buffer"))
    };
    let challenge = ask(&request(Method::ALLOCATE, None, transport)?)?;
    let m = Message::parse(&challenge).map_err(|_| anyhow::anyhow!("bad answer"))?;
    // coturn checks the 5-tuple before the credentials.
    if error_code(&m) == Some(437) {
        return Err(AllocationMismatch.into());
    }
    let realm = m
        .attribute::<Realm>()
        .and_then(Result::ok)
        .with_context(|| {
            format!(
                "no REALM in the answer to the first Allocate ({:?}, error {:?})",
                m.class(),
                error_code(&m)
            )
        })?
        .0
        .to_owned();
    let nonce = m
        .attribute::<Nonce>()
        .and_then(Result::ok)
        .context("no NONCE in the challenge")?
        .0
        .to_owned();
    let ok = ask(&request(
        Method::ALLOCATE,
        Some((c, &realm, &nonce)),
        transport,
    )?)?;
    let m = Message::parse(&ok).map_err(|_| anyhow::anyhow!("bad answer"))?;
    if m.class() != Class::SuccessResponse {
        if error_code(&m) == Some(437) {
            return Err(AllocationMismatch.into());
        }
        bail!("Allocate refused: {:?}", error_code(&m));
    }
    let relayed = m
        .attribute::<XorRelayedAddress>()
        .and_then(Result::ok)
        .context("no XOR-RELAYED-ADDRESS")?
        .0;
    let mapped = m
        .attribute::<XorMappedAddress>()
        .and_then(Result::ok)
        .map(|a| a.0);
    Ok(Allocated {
        relayed,
        mapped,
        realm,
        nonce,
    })
}

/// Binds `channel` to `peer` on the allocation `a`.
pub fn channel_bind(
    ask: &mut dyn FnMut(&[u8]) -> anyhow::Result<Vec<u8>>,
    c: &Creds,
    a: &Allocated,
    channel: u16,
    peer: SocketAddr,
) -> anyhow::Result<()> {
    let bind = ask(&request(
        Method::CHANNEL_BIND,
        Some((c, &a.realm, &a.nonce)),
        |b| {
            b.add(&ChannelNumber(channel))
                .map_err(|_| anyhow::anyhow!("buffer"))?;
            b.add(&XorPeerAddress(peer))
                .map_err(|_| anyhow::anyhow!("buffer"))
        },
    )?)?;
    let m = Message::parse(&bind).map_err(|_| anyhow::anyhow!("bad answer"))?;
    if m.class() != Class::SuccessResponse {
        bail!(
            "ChannelBind refused: {:?} (does the server relay to {}?)",
            error_code(&m),
            peer
        );
    }
    Ok(())
}

/// Allocates over UDP (through the 401 challenge) and binds `channel` to `peer`; the relayed
/// address.
pub fn setup(
    socket: &UdpSocket,
    server: SocketAddr,
    c: &Creds,
    channel: u16,
    peer: SocketAddr,
) -> anyhow::Result<SocketAddr> {
    let mut ask = |req: &[u8]| exchange(socket, server, req);
    let a = allocate(&mut ask, c)?;
    channel_bind(&mut ask, c, &a, channel, peer)?;
    Ok(a.relayed)
}

/// Sends `req` over a stream (TCP, TLS: RFC 8489 §6.2.2, no retransmission) and reads the
/// response with its transaction id, skipping anything else; gives up after 3 s.
pub fn exchange_stream(
    stream: &mut (impl std::io::Read + std::io::Write),
    req: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let tid = req.get(8..20).context("short request")?.to_vec();
    stream.write_all(req)?;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let mut header = [0u8; 20];
        stream.read_exact(&mut header)?;
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let mut message = header.to_vec();
        message.resize(20 + len, 0);
        stream.read_exact(&mut message[20..])?;
        if message.get(8..20) == Some(&tid[..]) {
            return Ok(message);
        }
    }
    bail!("no answer over the stream")
}

/// Deletes the allocation of `socket` (a Refresh with LIFETIME 0, through its challenge).
pub fn delete(socket: &UdpSocket, server: SocketAddr, c: &Creds) -> anyhow::Result<()> {
    let lifetime =
        |b: &mut MessageBuilder<'_>| b.add(&Lifetime(0)).map_err(|_| anyhow::anyhow!("buffer"));
    let first = exchange(socket, server, &request(Method::REFRESH, None, lifetime)?)?;
    let m = Message::parse(&first).map_err(|_| anyhow::anyhow!("bad answer"))?;
    let (Some(Ok(Realm(realm))), Some(Ok(Nonce(nonce)))) =
        (m.attribute::<Realm>(), m.attribute::<Nonce>())
    else {
        return Ok(());
    };
    let _ = exchange(
        socket,
        server,
        &request(Method::REFRESH, Some((c, realm, nonce)), lifetime)?,
    )?;
    Ok(())
}
