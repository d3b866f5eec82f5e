//! Whole TURN conversations against the sans-IO core, without sockets: a client allocates,
//! is challenged, authenticates (MD5, SHA-256, USERHASH, ephemeral), installs permissions and
//! channels, and relays both ways; every refusal RFC 8656 defines where it applies.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use farside_time::Timestamp;

use farside_stun::attributes::{
    AddressFamily, AlternateServer, ChannelNumber, ConnectionId, Data, ErrorCode, EvenPort,
    Lifetime, Nonce, PasswordAlgorithm, PasswordAlgorithms, Realm, RequestedAddressFamily,
    RequestedTransport, ReservationToken, Userhash, Username, XorMappedAddress, XorPeerAddress,
    XorRelayedAddress,
};
use farside_stun::{
    Class, Header, Message, MessageBuilder, MessageType, Method, TransactionId, attr_type,
};
use farside_turn::channel_data::ChannelData;
use farside_turn::{
    Credentials, Dropped, Handled, Notice, Quotas, Refusal, RelayError, RelayPorts, TurnConfig,
    TurnServer, TurnTransport, UserKeys, rest_password,
};

const REALM: &str = "farside";
const SERVER: &str = "192.0.2.1:3478";
const CLIENT: &str = "198.51.100.7:40000";
const PEER: &str = "203.0.113.9:5000";
const UNIX: u64 = 1_800_000_000;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// Hands out relay ports 49152, 49154, ... on 192.0.2.1 (and [2001:db8::1]), up to `limit`.
#[derive(Default)]
struct Ports {
    next: u16,
    limit: u16,
    released: Vec<SocketAddr>,
    v6: bool,
    reserved: std::collections::HashMap<[u8; 8], SocketAddr>,
    /// Whether the relay can set DF (`dont_fragment`), and where it did.
    df: bool,
    df_set: Vec<SocketAddr>,
}

impl RelayPorts for Ports {
    fn allocate(&mut self, family: AddressFamily, even: bool) -> Result<SocketAddr, RelayError> {
        if family == AddressFamily::V6 && !self.v6 {
            return Err(RelayError::FamilyUnsupported);
        }
        if self.next >= self.limit {
            return Err(RelayError::Exhausted);
        }
        let port = 49152 + 2 * self.next + u16::from(!even && self.next % 2 == 1);
        self.next += 1;
        let ip: IpAddr = match family {
            AddressFamily::V4 => "192.0.2.1".parse().expect("ip"),
            AddressFamily::V6 => "2001:db8::1".parse().expect("ip"),
        };
        Ok(SocketAddr::new(ip, port))
    }

    fn allocate_reserving(
        &mut self,
        family: AddressFamily,
    ) -> Result<(SocketAddr, [u8; 8]), RelayError> {
        let even = self.allocate(family, true)?;
        let token = [self.next as u8; 8];
        self.reserved
            .insert(token, SocketAddr::new(even.ip(), even.port() + 1));
        Ok((even, token))
    }

    fn claim(&mut self, token: [u8; 8]) -> Option<SocketAddr> {
        self.reserved.remove(&token)
    }

    fn dont_fragment(&mut self, relayed: SocketAddr) -> bool {
        if self.df {
            self.df_set.push(relayed);
        }
        self.df
    }

    fn allocate_tcp(&mut self, family: AddressFamily) -> Result<SocketAddr, RelayError> {
        self.allocate(family, false)
    }

    fn release(&mut self, relayed: SocketAddr) {
        self.released.push(relayed);
    }
}

fn keys(user: &str, password: &str) -> UserKeys {
    UserKeys {
        md5: farside_stun::long_term_key_md5(user, REALM, password).expect("key"),
        sha256: farside_stun::long_term_key_sha256(user, REALM, password).expect("key"),
    }
}

struct Setup {
    server: TurnServer,
    ports: Ports,
    t0: Timestamp,
}

fn setup_with(config: TurnConfig) -> Setup {
    setup_with_quotas(config, Arc::new(Quotas::new(0, 20, 0)))
}

/// A server counting in `quotas`, which several servers (a server's workers) may share.
fn setup_with_quotas(config: TurnConfig, quotas: Arc<Quotas>) -> Setup {
    let mut creds = Credentials::new();
    creds.add_user(REALM, "alice", keys("alice", "wonderland"));
    creds.add_user(REALM, "bob", keys("bob", "builder"));
    creds.add_secret(b"north");
    creds.add_secret(b"south");
    let t0 = Timestamp::from_unix_secs(UNIX);
    Setup {
        server: TurnServer::new(config, Arc::new(creds), quotas, [9; 32]),
        ports: Ports {
            limit: 100,
            ..Ports::default()
        },
        t0,
    }
}

fn setup() -> Setup {
    setup_with(TurnConfig::default())
}

/// How a request authenticates.
#[derive(Clone)]
struct Creds {
    user: String,
    password: String,
    sha256: bool,
    userhash: bool,
}

fn alice() -> Creds {
    Creds {
        user: "alice".into(),
        password: "wonderland".into(),
        sha256: false,
        userhash: false,
    }
}

/// A parsed response, owned.
struct Reply {
    bytes: Vec<u8>,
}

impl Reply {
    fn msg(&self) -> Message<'_> {
        Message::parse(&self.bytes).expect("response parses")
    }
    fn code(&self) -> Option<u16> {
        self.msg()
            .attribute::<ErrorCode>()
            .and_then(Result::ok)
            .map(|e| e.code)
    }
    fn nonce(&self) -> String {
        self.msg()
            .attribute::<Nonce>()
            .expect("NONCE")
            .expect("parses")
            .0
            .to_owned()
    }
}

struct Client {
    addr: SocketAddr,
    transport: TurnTransport,
    nonce: Option<String>,
    tid: u8,
}

impl Client {
    fn new() -> Self {
        Client {
            addr: sa(CLIENT),
            transport: TurnTransport::Udp,
            nonce: None,
            tid: 0,
        }
    }

    /// A Send indication carrying `data` to `peer`.
    fn send_indication(&mut self, peer: &str, data: &[u8]) -> Vec<u8> {
        self.tid = self.tid.wrapping_add(1);
        let mut buf = vec![0u8; 512];
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(Class::Indication, Method::SEND),
            Header::new(TransactionId([self.tid; 12])),
        )
        .expect("room");
        b.add(&XorPeerAddress(sa(peer))).expect("room");
        b.add(&Data(data)).expect("room");
        let n = b.finish();
        buf.truncate(n);
        buf
    }

    /// Builds a request; `creds` adds USERNAME/USERHASH, REALM, NONCE and integrity.
    fn build(
        &mut self,
        method: Method,
        creds: Option<&Creds>,
        attrs: impl FnOnce(&mut MessageBuilder<'_>),
    ) -> Vec<u8> {
        self.tid = self.tid.wrapping_add(1);
        let mut buf = vec![0u8; 2048];
        let header = Header::new(TransactionId([self.tid; 12]));
        let mut b = MessageBuilder::new(&mut buf, MessageType::new(Class::Request, method), header)
            .expect("room");
        attrs(&mut b);
        if let Some(c) = creds {
            if c.userhash {
                b.add(&Userhash(
                    farside_stun::userhash(&c.user, REALM).expect("hash"),
                ))
                .expect("room");
            } else {
                b.add(&Username(&c.user)).expect("room");
            }
            b.add(&Realm(REALM)).expect("room");
            b.add(&Nonce(self.nonce.as_deref().unwrap_or("none")))
                .expect("room");
            if c.sha256 {
                let algs = [
                    PasswordAlgorithm {
                        algorithm: PasswordAlgorithm::SHA256,
                        parameters: &[],
                    },
                    PasswordAlgorithm {
                        algorithm: PasswordAlgorithm::MD5,
                        parameters: &[],
                    },
                ];
                b.add(&PasswordAlgorithms::new(&algs)).expect("room");
                b.add(&algs[0]).expect("room");
                let key =
                    farside_stun::long_term_key_sha256(&c.user, REALM, &c.password).expect("key");
                b.add_message_integrity_sha256(&key).expect("room");
            } else {
                let key =
                    farside_stun::long_term_key_md5(&c.user, REALM, &c.password).expect("key");
                b.add_message_integrity(&key).expect("room");
            }
        }
        let n = b.finish();
        buf.truncate(n);
        buf
    }
}

impl Setup {
    fn now(&self, secs: u64) -> Timestamp {
        self.t0 + Duration::from_secs(secs)
    }

    fn send(&mut self, client: &Client, at: u64, bytes: &[u8]) -> (Handled, Vec<u8>) {
        let mut out = vec![0u8; 70_000];
        let now = self.now(at);
        let h = self.server.handle_client(
            now,
            client.transport,
            sa(SERVER),
            client.addr,
            bytes,
            &mut self.ports,
            &mut out,
        );
        let len = match h {
            Handled::Answered(t)
            | Handled::Refused(t, _)
            | Handled::Relayed(t)
            | Handled::Bound(t, _) => t.len,
            Handled::Dropped(_) | Handled::Connect { .. } => 0,
        };
        out.truncate(len);
        (h, out)
    }

    /// A request answered with a response: returns it (and remembers a NONCE it carries).
    fn ask(&mut self, client: &mut Client, at: u64, bytes: &[u8]) -> (Handled, Reply) {
        let (h, out) = self.send(client, at, bytes);
        let reply = Reply { bytes: out };
        assert!(
            matches!(h, Handled::Answered(_) | Handled::Refused(..)),
            "not answered: {h:?}"
        );
        if let Some(Ok(Nonce(n))) = reply.msg().attribute::<Nonce>() {
            client.nonce = Some(n.to_owned());
        }
        (h, reply)
    }

    /// The usual two round trips: unauthenticated Allocate, 401, authenticated Allocate.
    fn allocate(&mut self, client: &mut Client, creds: &Creds, at: u64) -> (Handled, Reply) {
        let req = client.build(Method::ALLOCATE, None, udp);
        let (h, r) = self.ask(client, at, &req);
        assert_eq!(h_refusal(&h), Some(Refusal::Challenge));
        assert_eq!(r.code(), Some(401));
        let req = client.build(Method::ALLOCATE, Some(creds), udp);
        self.ask(client, at, &req)
    }

    fn peer(
        &mut self,
        relayed: SocketAddr,
        peer: &str,
        at: u64,
        data: &[u8],
    ) -> (Handled, Vec<u8>) {
        let mut out = vec![0u8; 70_000];
        let now = self.now(at);
        let h = self
            .server
            .handle_peer(now, relayed, sa(peer), data, &mut out);
        let len = match h {
            Handled::Relayed(t) => t.len,
            _ => 0,
        };
        out.truncate(len);
        (h, out)
    }
}

/// Adds attributes to a request under construction.
type AddAttributes = Box<dyn FnOnce(&mut MessageBuilder<'_>)>;

fn udp(b: &mut MessageBuilder<'_>) {
    b.add(&RequestedTransport(17)).expect("room");
}

fn h_refusal(h: &Handled) -> Option<Refusal> {
    match h {
        Handled::Refused(_, r) => Some(*r),
        _ => None,
    }
}

fn relayed_of(r: &Reply) -> SocketAddr {
    r.msg()
        .attribute::<XorRelayedAddress>()
        .expect("XOR-RELAYED-ADDRESS")
        .expect("parses")
        .0
}

fn peer_attr(p: &str) -> impl FnOnce(&mut MessageBuilder<'_>) + '_ {
    move |b: &mut MessageBuilder<'_>| b.add(&XorPeerAddress(sa(p))).expect("room")
}

#[test]
fn allocate_challenge_then_success_with_integrity() {
    let mut s = setup();
    let mut c = Client::new();
    let req = c.build(Method::ALLOCATE, None, udp);
    let (_, r) = s.ask(&mut c, 0, &req);
    let m = r.msg();
    assert_eq!(r.code(), Some(401));
    assert_eq!(m.attribute::<Realm>().expect("REALM").expect("ok").0, REALM);
    assert!(r.nonce().starts_with("obMatJos2AAAD"), "{}", r.nonce());
    assert!(m.raw_attribute(attr_type::PASSWORD_ALGORITHMS).is_some());

    let req = c.build(Method::ALLOCATE, Some(&alice()), udp);
    let (h, r) = s.ask(&mut c, 0, &req);
    assert!(matches!(h, Handled::Answered(_)), "{h:?} {:?}", r.code());
    let m = r.msg();
    assert_eq!(m.class(), Class::SuccessResponse);
    assert_eq!(
        m.attribute::<Lifetime>().expect("LIFETIME").expect("ok").0,
        600
    );
    assert_eq!(
        m.attribute::<XorMappedAddress>()
            .expect("XOR-MAPPED")
            .expect("ok")
            .0,
        sa(CLIENT)
    );
    assert_eq!(
        relayed_of(&r).ip(),
        "192.0.2.1".parse::<IpAddr>().expect("ip")
    );
    let key = farside_stun::long_term_key_md5("alice", REALM, "wonderland").expect("key");
    m.verify_integrity(&key)
        .expect("the success carries MESSAGE-INTEGRITY");
    m.check_fingerprint().expect("and FINGERPRINT");
    assert_eq!(s.server.allocation_count(), 1);

    // A retransmission of that Allocate gets the same answer; a new one a 437.
    let (_, again) = s.ask(&mut c, 1, &req);
    assert_eq!(relayed_of(&again), relayed_of(&r));
    let req = c.build(Method::ALLOCATE, Some(&alice()), udp);
    let (h, r) = s.ask(&mut c, 1, &req);
    assert_eq!(h_refusal(&h), Some(Refusal::AllocationMismatch));
    assert_eq!(r.code(), Some(437));
    r.msg()
        .verify_integrity(&key)
        .expect("errors after authentication carry integrity");
}

#[test]
fn sha256_userhash_and_wrong_passwords() {
    let mut s = setup();
    let mut c = Client::new();
    let sha = Creds {
        sha256: true,
        ..alice()
    };
    let (h, r) = s.allocate(&mut c, &sha, 0);
    assert!(matches!(h, Handled::Answered(_)), "{:?}", r.code());
    let key = farside_stun::long_term_key_sha256("alice", REALM, "wonderland").expect("key");
    r.msg()
        .verify_integrity_sha256(&key)
        .expect("answered with MESSAGE-INTEGRITY-SHA256 under the SHA-256 key");

    let mut c2 = Client::new();
    c2.addr = sa("198.51.100.8:40000");
    let hashed = Creds {
        userhash: true,
        ..alice()
    };
    let (h, _) = s.allocate(&mut c2, &hashed, 0);
    assert!(matches!(h, Handled::Answered(_)));

    // Wrong password: 401 with a fresh challenge; after 20 failures the source is ignored.
    let mut c3 = Client::new();
    c3.addr = sa("198.51.100.9:40000");
    let wrong = Creds {
        password: "guess".into(),
        ..alice()
    };
    let (h, _) = s.allocate(&mut c3, &wrong, 0);
    assert_eq!(h_refusal(&h), Some(Refusal::WrongPassword));
    for _ in 0..19 {
        let req = c3.build(Method::ALLOCATE, Some(&wrong), udp);
        let (h, _) = s.ask(&mut c3, 0, &req);
        assert_eq!(h_refusal(&h), Some(Refusal::WrongPassword));
    }
    let req = c3.build(Method::ALLOCATE, Some(&alice()), udp);
    let (h, _) = s.send(&c3, 0, &req);
    assert_eq!(h, Handled::Dropped(Dropped::AuthRateLimited));
    // A minute later the source may try again.
    s.server.expire(s.now(61), &mut Ports::default());
    let (h, _) = s.ask(&mut c3, 61, &req);
    assert!(matches!(h, Handled::Answered(_)), "{h:?}");

    // PASSWORD-ALGORITHM without PASSWORD-ALGORITHMS is a 400.
    let mut c4 = Client::new();
    c4.addr = sa("198.51.100.10:40000");
    let req = c4.build(Method::ALLOCATE, None, udp);
    s.ask(&mut c4, 0, &req);
    let req = c4.build(Method::ALLOCATE, Some(&alice()), |b| {
        udp(b);
        b.add(&PasswordAlgorithm {
            algorithm: PasswordAlgorithm::SHA256,
            parameters: &[],
        })
        .expect("room");
    });
    let (h, _) = s.ask(&mut c4, 0, &req);
    assert_eq!(h_refusal(&h), Some(Refusal::BadRequest));
}

#[test]
fn stale_nonce_gets_438_and_the_client_recovers() {
    let mut s = setup_with(TurnConfig {
        nonce_lifetime: Duration::from_secs(60),
        ..TurnConfig::default()
    });
    let mut c = Client::new();
    s.allocate(&mut c, &alice(), 0);
    let req = c.build(Method::REFRESH, Some(&alice()), |_| {});
    let (h, _) = s.ask(&mut c, 60, &req);
    assert!(matches!(h, Handled::Answered(_)), "still fresh at 60 s");
    let (h, r) = s.ask(&mut c, 61, &req);
    assert_eq!(h_refusal(&h), Some(Refusal::StaleNonce));
    assert_eq!(r.code(), Some(438));
    let req = c.build(Method::REFRESH, Some(&alice()), |_| {});
    let (h, r) = s.ask(&mut c, 61, &req);
    assert!(matches!(h, Handled::Answered(_)), "{:?}", r.code());

    // A nonce that is not ours is stale too.
    c.nonce = Some("obMatJos2AAAD0000000000000000000000000000000000000000000000000000".into());
    let req = c.build(Method::REFRESH, Some(&alice()), |_| {});
    let (h, _) = s.ask(&mut c, 602, &req);
    assert_eq!(h_refusal(&h), Some(Refusal::StaleNonce));
}

#[test]
fn ephemeral_credentials_from_shared_secrets() {
    let mut s = setup();
    let user = format!("{}:carol", UNIX + 3600);
    for (i, secret) in [&b"north"[..], b"south"].iter().enumerate() {
        let mut c = Client::new();
        c.addr = SocketAddr::new(sa(CLIENT).ip(), 41000 + i as u16);
        let creds = Creds {
            user: user.clone(),
            password: rest_password(secret, &user),
            sha256: false,
            userhash: false,
        };
        let (h, r) = s.allocate(&mut c, &creds, 0);
        assert!(
            matches!(h, Handled::Answered(_)),
            "secret {i}: {:?}",
            r.code()
        );
    }
    // Expired, or signed with another secret: 401.
    for (user, secret) in [
        (format!("{}:carol", UNIX - 1), &b"north"[..]),
        (format!("{}:carol", UNIX + 3600), b"west"),
    ] {
        let mut c = Client::new();
        c.addr = sa("198.51.100.20:40000");
        let creds = Creds {
            password: rest_password(secret, &user),
            user,
            sha256: false,
            userhash: false,
        };
        let (h, _) = s.allocate(&mut c, &creds, 0);
        assert_eq!(h_refusal(&h), Some(Refusal::WrongPassword));
    }
}

#[test]
fn permissions_channels_and_relaying_both_ways() {
    let mut s = setup();
    let mut c = Client::new();
    let (_, r) = s.allocate(&mut c, &alice(), 0);
    let relayed = relayed_of(&r);

    // Nothing passes before a permission: neither a Send indication nor peer data.
    let send = |c: &mut Client, data: &'static [u8]| c.send_indication(PEER, data);
    let ind = send(&mut c, b"hello peer");
    assert_eq!(
        s.send(&c, 1, &ind).0,
        Handled::Dropped(Dropped::NoPermission)
    );
    assert_eq!(
        s.peer(relayed, PEER, 1, b"hi").0,
        Handled::Dropped(Dropped::NoPermission)
    );

    let req = c.build(Method::CREATE_PERMISSION, Some(&alice()), peer_attr(PEER));
    let (h, _) = s.ask(&mut c, 1, &req);
    assert!(matches!(h, Handled::Answered(_)));
    let (h, out) = s.send(&c, 2, &ind);
    let Handled::Relayed(t) = h else {
        panic!("{h:?}")
    };
    assert_eq!((t.from, t.to), (relayed, sa(PEER)));
    assert_eq!(out, b"hello peer");

    // Peer data comes back as a Data indication.
    let (h, out) = s.peer(relayed, PEER, 2, b"hello client");
    let Handled::Relayed(t) = h else {
        panic!("{h:?}")
    };
    assert_eq!((t.from, t.to), (sa(SERVER), sa(CLIENT)));
    let m = Message::parse(&out).expect("parses");
    assert_eq!(m.class(), Class::Indication);
    assert_eq!(m.method(), Method::DATA);
    assert_eq!(
        m.attribute::<XorPeerAddress>()
            .expect("peer")
            .expect("ok")
            .0,
        sa(PEER)
    );
    assert_eq!(
        m.attribute::<Data>().expect("data").expect("ok").0,
        b"hello client"
    );
    // Permissions are per IP: another port of the peer passes, another IP does not.
    assert!(matches!(
        s.peer(relayed, "203.0.113.9:5001", 2, b"x").0,
        Handled::Relayed(_)
    ));
    assert_eq!(
        s.peer(relayed, "203.0.113.10:5000", 2, b"x").0,
        Handled::Dropped(Dropped::NoPermission)
    );

    // A channel: ChannelData both ways.
    let req = c.build(Method::CHANNEL_BIND, Some(&alice()), |b| {
        b.add(&ChannelNumber(0x4001)).expect("room");
        b.add(&XorPeerAddress(sa(PEER))).expect("room");
    });
    let (h, _) = s.ask(&mut c, 3, &req);
    assert!(matches!(h, Handled::Answered(_)));
    let mut cd = [0u8; 64];
    let n = ChannelData::write(0x4001, b"rtp", false, &mut cd).expect("fits");
    let (h, out) = s.send(&c, 4, &cd[..n]);
    assert!(
        matches!(h, Handled::Relayed(t) if t.to == sa(PEER)),
        "{h:?}"
    );
    assert_eq!(out, b"rtp");
    let (h, out) = s.peer(relayed, PEER, 4, b"rtp back");
    assert!(matches!(h, Handled::Relayed(t) if t.to == sa(CLIENT)));
    assert_eq!(
        ChannelData::parse(&out).expect("ChannelData"),
        ChannelData {
            channel: 0x4001,
            data: b"rtp back"
        }
    );
    let n = ChannelData::write(0x4002, b"rtp", false, &mut cd).expect("fits");
    assert_eq!(
        s.send(&c, 4, &cd[..n]).0,
        Handled::Dropped(Dropped::NoChannel)
    );

    // Rebinding the channel to another peer, or the peer to another channel: 400.
    for (ch, peer) in [
        (0x4001, "203.0.113.11:7000"),
        (0x4002, PEER),
        (0x3FFF, "203.0.113.11:7000"),
    ] {
        let req = c.build(Method::CHANNEL_BIND, Some(&alice()), |b| {
            b.add(&ChannelNumber(ch)).expect("room");
            b.add(&XorPeerAddress(sa(peer))).expect("room");
        });
        let (h, _) = s.ask(&mut c, 5, &req);
        assert_eq!(h_refusal(&h), Some(Refusal::BadRequest), "{ch:#x} {peer}");
    }

    // Permissions last 300 s unless refreshed; the channel alone does not carry data then.
    s.server.expire(s.now(305), &mut Ports::default());
    assert_eq!(
        s.peer(relayed, PEER, 305, b"late").0,
        Handled::Dropped(Dropped::NoPermission)
    );
}

#[test]
fn over_tcp_channel_data_is_padded() {
    let mut s = setup();
    let mut c = Client::new();
    c.transport = TurnTransport::Tcp;
    let (_, r) = s.allocate(&mut c, &alice(), 0);
    let relayed = relayed_of(&r);
    let req = c.build(Method::CHANNEL_BIND, Some(&alice()), |b| {
        b.add(&ChannelNumber(0x4000)).expect("room");
        b.add(&XorPeerAddress(sa(PEER))).expect("room");
    });
    s.ask(&mut c, 1, &req);
    let (_, out) = s.peer(relayed, PEER, 1, b"12345");
    assert_eq!(out.len(), 12);
    assert_eq!(&out[..4], &[0x40, 0x00, 0, 5]);
}

#[test]
fn peer_policy_refuses_loopback_and_private_peers_by_default() {
    let mut s = setup();
    let mut c = Client::new();
    s.allocate(&mut c, &alice(), 0);
    for peer in [
        "127.0.0.1:9",
        "10.0.0.1:9",
        "169.254.169.254:80",
        "[::ffff:127.0.0.1]:9",
    ] {
        let req = c.build(Method::CREATE_PERMISSION, Some(&alice()), peer_attr(peer));
        let (h, r) = s.ask(&mut c, 1, &req);
        // An IPv4-mapped peer on an IPv4 allocation is judged by its IPv4 address.
        let want = Refusal::PeerForbidden;
        assert_eq!(h_refusal(&h), Some(want), "{peer}");
        assert_eq!(r.code(), Some(403));
    }
    let mut config = TurnConfig::default();
    config.peer_policy.allowed = vec!["127.0.0.0/8".parse().expect("cidr")];
    let mut s = setup_with(config);
    let mut c = Client::new();
    s.allocate(&mut c, &alice(), 0);
    let req = c.build(
        Method::CREATE_PERMISSION,
        Some(&alice()),
        peer_attr("127.0.0.1:9"),
    );
    let (h, _) = s.ask(&mut c, 1, &req);
    assert!(
        matches!(h, Handled::Answered(_)),
        "allowed_peers lets loopback through"
    );
}

#[test]
fn quotas_and_port_exhaustion() {
    let config = TurnConfig {
        max_allocations: 3,
        ..TurnConfig::default()
    };
    let mut s = setup_with_quotas(config, Arc::new(Quotas::new(2, 20, 0)));
    let mut clients: Vec<Client> = (0..4)
        .map(|i| {
            let mut c = Client::new();
            c.addr = SocketAddr::new(sa(CLIENT).ip(), 42000 + i);
            c
        })
        .collect();
    for c in clients.iter_mut().take(2) {
        let (h, _) = s.allocate(c, &alice(), 0);
        assert!(matches!(h, Handled::Answered(_)));
    }
    let (h, r) = s.allocate(&mut clients[2], &alice(), 0);
    assert_eq!(
        (h_refusal(&h), r.code()),
        (Some(Refusal::QuotaReached), Some(486))
    );
    let bob = Creds {
        user: "bob".into(),
        password: "builder".into(),
        ..alice()
    };
    let (h, _) = s.allocate(&mut clients[2], &bob, 0);
    assert!(matches!(h, Handled::Answered(_)));
    let (h, r) = s.allocate(&mut clients[3], &bob, 0);
    assert_eq!(
        (h_refusal(&h), r.code()),
        (Some(Refusal::QuotaReached), Some(486))
    );

    let mut s = setup();
    s.ports.limit = 1;
    let mut a = Client::new();
    s.allocate(&mut a, &alice(), 0);
    let mut b = Client::new();
    b.addr = sa("198.51.100.50:1");
    let (h, r) = s.allocate(&mut b, &alice(), 0);
    assert_eq!(
        (h_refusal(&h), r.code()),
        (Some(Refusal::InsufficientCapacity), Some(508))
    );
}

/// A draining server (`alternate_servers` set, as `farside drain` sets it): a new Allocate,
/// once authenticated, gets 300 Try Alternate naming the alternate of the client's family,
/// with integrity (RFC 8489 §10); an allocation made before goes on (a Refresh is answered); a
/// client of a family no alternate has is allocated here as usual.
#[test]
fn a_draining_server_sends_new_allocations_to_its_alternate() {
    let mut s = setup();
    let mut before = Client::new();
    s.allocate(&mut before, &alice(), 0);
    s.server.set_config(TurnConfig {
        alternate_servers: vec![sa("192.0.2.2:3478"), sa("[2001:db8::2]:3478")],
        ..TurnConfig::default()
    });
    let mut c = Client::new();
    c.addr = sa("198.51.100.8:40000");
    let (h, r) = s.allocate(&mut c, &alice(), 1);
    assert_eq!(
        (h_refusal(&h), r.code()),
        (Some(Refusal::TryAlternate), Some(300))
    );
    let alternate = r
        .msg()
        .attribute::<AlternateServer>()
        .expect("ALTERNATE-SERVER")
        .expect("parses");
    assert_eq!(alternate.0, sa("192.0.2.2:3478"));
    assert!(
        r.msg()
            .raw_attribute(attr_type::MESSAGE_INTEGRITY)
            .is_some(),
        "the 300 is authenticated"
    );
    let refresh = before.build(Method::REFRESH, Some(&alice()), |_| {});
    let (h, _) = s.ask(&mut before, 2, &refresh);
    assert!(matches!(h, Handled::Answered(_)), "{h:?}");
    // Only an IPv6 alternate: an IPv4 client is served here.
    s.server.set_config(TurnConfig {
        alternate_servers: vec![sa("[2001:db8::2]:3478")],
        ..TurnConfig::default()
    });
    let mut v4 = Client::new();
    v4.addr = sa("198.51.100.9:40000");
    let (h, _) = s.allocate(&mut v4, &alice(), 3);
    assert!(matches!(h, Handled::Answered(_)), "{h:?}");
}

/// Two workers' cores sharing one [`Quotas`], as Farside's do: a user's allocations and a
/// source's failed authentications are counted once for the server, whichever core sees them.
#[test]
fn workers_sharing_quotas_hold_one_limit_per_user_and_per_source() {
    let quotas = Arc::new(Quotas::new(1, 2, 0));
    let mut w1 = setup_with_quotas(TurnConfig::default(), Arc::clone(&quotas));
    let mut w2 = setup_with_quotas(TurnConfig::default(), Arc::clone(&quotas));
    let mut a = Client::new();
    let (h, _) = w1.allocate(&mut a, &alice(), 0);
    assert!(matches!(h, Handled::Answered(_)), "{h:?}");
    let mut b = Client::new();
    b.addr = sa("198.51.100.7:40002");
    let (h, r) = w2.allocate(&mut b, &alice(), 0);
    assert_eq!(
        (h_refusal(&h), r.code()),
        (Some(Refusal::QuotaReached), Some(486)),
        "alice's one allocation is held by the other worker"
    );
    // Its end (the lifetime runs out) gives the place back to every worker.
    assert_eq!(w1.server.expire(w1.now(601), &mut w1.ports), 1);
    let (h, _) = w2.allocate(&mut b, &alice(), 601);
    assert!(matches!(h, Handled::Answered(_)), "{h:?}");

    // Failures: one wrong password at each worker from one address uses up its two.
    let wrong = Creds {
        password: "guess".into(),
        ..alice()
    };
    let mut m1 = Client::new();
    m1.addr = sa("203.0.113.66:1000");
    let mut m2 = Client::new();
    m2.addr = sa("203.0.113.66:2000");
    for (w, m) in [(&mut w1, &mut m1), (&mut w2, &mut m2)] {
        let req = m.build(Method::ALLOCATE, None, udp);
        w.ask(m, 601, &req);
        let req = m.build(Method::ALLOCATE, Some(&wrong), udp);
        let (h, _) = w.ask(m, 601, &req);
        assert_eq!(h_refusal(&h), Some(Refusal::WrongPassword));
    }
    for (w, m) in [(&mut w1, &mut m1), (&mut w2, &mut m2)] {
        let req = m.build(Method::ALLOCATE, Some(&alice()), udp);
        let (h, _) = w.send(m, 602, &req);
        assert_eq!(h, Handled::Dropped(Dropped::AuthRateLimited));
    }
}

#[test]
fn refresh_delete_expiry_and_ownership() {
    let mut s = setup();
    let mut c = Client::new();
    let (_, r) = s.allocate(&mut c, &alice(), 0);
    let relayed = relayed_of(&r);

    // Another user on this 5-tuple: 441.
    let bob = Creds {
        user: "bob".into(),
        password: "builder".into(),
        ..alice()
    };
    let req = c.build(Method::REFRESH, Some(&bob), |_| {});
    let (h, r) = s.ask(&mut c, 1, &req);
    assert_eq!(
        (h_refusal(&h), r.code()),
        (Some(Refusal::WrongCredentials), Some(441))
    );

    // Asking for 2 hours gets the 1-hour maximum; asking for 10 s gets the 600 s default.
    for (ask, granted) in [(7200, 3600), (10, 600)] {
        let req = c.build(Method::REFRESH, Some(&alice()), |b| {
            b.add(&Lifetime(ask)).expect("room");
        });
        let (_, r) = s.ask(&mut c, 1, &req);
        assert_eq!(
            r.msg()
                .attribute::<Lifetime>()
                .expect("LIFETIME")
                .expect("ok")
                .0,
            granted
        );
    }
    // It expires 600 s after that refresh and its port goes back.
    assert_eq!(s.server.expire(s.now(600), &mut s.ports), 0);
    assert_eq!(s.server.expire(s.now(601), &mut s.ports), 1);
    assert_eq!(s.ports.released, vec![relayed]);
    let req = c.build(Method::REFRESH, Some(&alice()), |_| {});
    let (h, _) = s.ask(&mut c, 602, &req);
    assert_eq!(
        h_refusal(&h),
        Some(Refusal::StaleNonce),
        "the nonce is 602 s old"
    );
    let req = c.build(Method::REFRESH, Some(&alice()), |_| {});
    let (h, _) = s.ask(&mut c, 602, &req);
    assert_eq!(h_refusal(&h), Some(Refusal::AllocationMismatch));

    // LIFETIME 0 deletes at once.
    c.nonce = None;
    let (_, r) = s.allocate(&mut c, &alice(), 700);
    let relayed = relayed_of(&r);
    let req = c.build(Method::REFRESH, Some(&alice()), |b| {
        b.add(&Lifetime(0)).expect("room");
    });
    let (h, r) = s.ask(&mut c, 701, &req);
    assert!(matches!(h, Handled::Answered(_)));
    assert_eq!(
        r.msg()
            .attribute::<Lifetime>()
            .expect("LIFETIME")
            .expect("ok")
            .0,
        0
    );
    assert_eq!(s.ports.released.last(), Some(&relayed));
    assert_eq!(s.server.allocation_count(), 0);
}

#[test]
fn refusals_for_transports_families_and_attributes() {
    let mut s = setup();
    let mut c = Client::new();
    let req = c.build(Method::ALLOCATE, None, udp);
    s.ask(&mut c, 0, &req);
    let cases: Vec<(AddAttributes, Refusal)> = vec![
        (Box::new(|_| {}), Refusal::BadRequest),
        // TCP relaying needs a TCP or TLS control connection (RFC 6062 §5.1).
        (
            Box::new(|b| b.add(&RequestedTransport(6)).expect("room")),
            Refusal::BadRequest,
        ),
        (
            Box::new(|b| b.add(&RequestedTransport(132)).expect("room")),
            Refusal::UnsupportedTransport,
        ),
        (
            Box::new(|b| {
                udp(b);
                b.add(&RequestedAddressFamily(AddressFamily::V6))
                    .expect("room");
            }),
            Refusal::AddressFamilyNotSupported,
        ),
        (
            Box::new(|b| {
                udp(b);
                b.add(&ReservationToken([0xEE; 8])).expect("room");
            }),
            Refusal::InsufficientCapacity,
        ),
        (
            Box::new(|b| {
                udp(b);
                b.add(&EvenPort { reserve: false }).expect("room");
                b.add(&ReservationToken([0xEE; 8])).expect("room");
            }),
            Refusal::BadRequest,
        ),
        (
            Box::new(|b| {
                udp(b);
                b.add_raw(attr_type::DONT_FRAGMENT, &[]).expect("room");
            }),
            Refusal::UnknownAttribute,
        ),
    ];
    for (i, (attrs, want)) in cases.into_iter().enumerate() {
        let req = c.build(Method::ALLOCATE, Some(&alice()), attrs);
        let (h, r) = s.ask(&mut c, 0, &req);
        assert_eq!(h_refusal(&h), Some(want), "case {i}");
        if want == Refusal::UnknownAttribute {
            let m = r.msg();
            assert_eq!(
                m.raw_attribute(attr_type::UNKNOWN_ATTRIBUTES)
                    .map(|a| a.value),
                Some(&[0x00, 0x1A][..])
            );
        }
    }

    // With IPv6 relaying: an IPv6 allocation refuses IPv4 peers with 443.
    s.ports.v6 = true;
    let req = c.build(Method::ALLOCATE, Some(&alice()), |b| {
        udp(b);
        b.add(&RequestedAddressFamily(AddressFamily::V6))
            .expect("room");
    });
    let (_, r) = s.ask(&mut c, 0, &req);
    assert!(relayed_of(&r).is_ipv6());
    let req = c.build(Method::CREATE_PERMISSION, Some(&alice()), peer_attr(PEER));
    let (h, r) = s.ask(&mut c, 1, &req);
    assert_eq!(
        (h_refusal(&h), r.code()),
        (Some(Refusal::PeerAddressFamilyMismatch), Some(443))
    );
    let req = c.build(
        Method::CREATE_PERMISSION,
        Some(&alice()),
        peer_attr("[2001:db8::9]:5000"),
    );
    let (h, _) = s.ask(&mut c, 1, &req);
    assert!(matches!(h, Handled::Answered(_)));

    // Requests on a 5-tuple without an allocation: 437.
    let mut other = Client::new();
    other.addr = sa("198.51.100.99:1");
    let req = other.build(Method::ALLOCATE, None, udp);
    s.ask(&mut other, 0, &req);
    let req = other.build(Method::CREATE_PERMISSION, Some(&alice()), peer_attr(PEER));
    let (h, _) = s.ask(&mut other, 0, &req);
    assert_eq!(h_refusal(&h), Some(Refusal::AllocationMismatch));
}

#[test]
fn even_port_reserves_the_next_port_for_a_reservation_token() {
    let mut s = setup();
    let mut rtp = Client::new();
    let req = rtp.build(Method::ALLOCATE, None, udp);
    s.ask(&mut rtp, 0, &req);
    let req = rtp.build(Method::ALLOCATE, Some(&alice()), |b| {
        udp(b);
        b.add(&EvenPort { reserve: true }).expect("room");
    });
    let (h, r) = s.ask(&mut rtp, 0, &req);
    assert!(matches!(h, Handled::Answered(_)), "{:?}", r.code());
    let even = relayed_of(&r);
    assert_eq!(even.port() % 2, 0);
    let token = r
        .msg()
        .attribute::<ReservationToken>()
        .expect("RESERVATION-TOKEN")
        .expect("parses")
        .0;

    let mut rtcp = Client::new();
    rtcp.addr = sa("198.51.100.7:40001");
    let req = rtcp.build(Method::ALLOCATE, None, udp);
    s.ask(&mut rtcp, 0, &req);
    let req = rtcp.build(Method::ALLOCATE, Some(&alice()), |b| {
        udp(b);
        b.add(&ReservationToken(token)).expect("room");
    });
    let (h, r) = s.ask(&mut rtcp, 0, &req);
    assert!(matches!(h, Handled::Answered(_)), "{:?}", r.code());
    assert_eq!(relayed_of(&r), SocketAddr::new(even.ip(), even.port() + 1));

    // A token is good once.
    let mut third = Client::new();
    third.addr = sa("198.51.100.7:40002");
    let req = third.build(Method::ALLOCATE, None, udp);
    s.ask(&mut third, 0, &req);
    let req = third.build(Method::ALLOCATE, Some(&alice()), |b| {
        udp(b);
        b.add(&ReservationToken(token)).expect("room");
    });
    let (h, _) = s.ask(&mut third, 0, &req);
    assert_eq!(h_refusal(&h), Some(Refusal::InsufficientCapacity));
}

#[test]
fn wants_tells_turn_from_binding() {
    let mut c = Client::new();
    let alloc = c.build(Method::ALLOCATE, None, udp);
    let binding = c.build(Method::BINDING, None, |_| {});
    assert!(TurnServer::wants(&alloc));
    assert!(!TurnServer::wants(&binding));
    assert!(TurnServer::wants(&[0x40, 0x00, 0x00, 0x00]));
    assert!(!TurnServer::wants(&[0x80, 0x00]));
    assert!(!TurnServer::wants(&[]));
}

#[test]
fn carries_data_is_only_channel_data_and_send_indications() {
    let mut c = Client::new();
    let send = c.send_indication("192.0.2.9:5000", b"hello");
    let alloc = c.build(Method::ALLOCATE, None, udp);
    let refresh = c.build(Method::REFRESH, None, |_| {});
    assert!(TurnServer::carries_data(&send));
    assert!(TurnServer::carries_data(&[0x40, 0x00, 0x00, 0x00]));
    assert!(!TurnServer::carries_data(&alloc));
    assert!(!TurnServer::carries_data(&refresh));
    assert!(!TurnServer::carries_data(&[0x00]));
    assert!(!TurnServer::carries_data(&[]));
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut s = setup();
    let mut c = Client::new();
    let (_, r) = s.allocate(&mut c, &alice(), 0);
    let relayed = relayed_of(&r);
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let valid = c.build(Method::CREATE_PERMISSION, Some(&alice()), peer_attr(PEER));
    for i in 0..20_000 {
        let mut bytes = if i % 2 == 0 {
            valid.clone()
        } else {
            (0..(next() % 200) as usize).map(|_| next() as u8).collect()
        };
        if !bytes.is_empty() {
            let n = (next() % 4) as usize;
            for _ in 0..n {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
        }
        if i % 3 == 0 && !bytes.is_empty() {
            bytes[0] = 0x40 | (bytes[0] & 0x0F);
        }
        let _ = s.send(&c, 1, &bytes);
        let _ = s.peer(relayed, PEER, 1, &bytes);
    }
    assert_eq!(s.server.allocation_count(), 1);
}

#[test]
fn the_bandwidth_cap_drops_what_exceeds_it_and_refills() {
    let mut s = setup_with(TurnConfig {
        max_bandwidth: 1000,
        ..TurnConfig::default()
    });
    let mut c = Client::new();
    let (_, r) = s.allocate(&mut c, &alice(), 0);
    let relayed = relayed_of(&r);
    let req = c.build(Method::CHANNEL_BIND, Some(&alice()), |b| {
        b.add(&ChannelNumber(0x4000)).expect("room");
        b.add(&XorPeerAddress(sa(PEER))).expect("room");
    });
    s.ask(&mut c, 1, &req);
    let mut cd = [0u8; 400];
    let n = ChannelData::write(0x4000, &[7u8; 300], false, &mut cd).expect("fits");
    let passed: Vec<bool> = (0..5)
        .map(|_| matches!(s.send(&c, 2, &cd[..n]).0, Handled::Relayed(_)))
        .collect();
    assert_eq!(
        passed,
        [true, true, true, false, false],
        "1000 bytes/s, 300 each"
    );
    assert_eq!(
        s.send(&c, 2, &cd[..n]).0,
        Handled::Dropped(Dropped::OverBandwidth)
    );
    // Peer data counts against the same budget.
    assert_eq!(
        s.peer(relayed, PEER, 2, &[1u8; 200]).0,
        Handled::Dropped(Dropped::OverBandwidth)
    );
    // A second later the budget is back.
    assert!(matches!(s.send(&c, 3, &cd[..n]).0, Handled::Relayed(_)));
    assert!(matches!(
        s.peer(relayed, PEER, 3, &[1u8; 200]).0,
        Handled::Relayed(_)
    ));
}

#[test]
fn dual_allocations_relay_each_family_from_its_own_address() {
    use farside_stun::attributes::{AdditionalAddressFamily, AddressErrorCode};
    let mut s = setup();
    s.ports.v6 = true;
    let mut c = Client::new();
    let req = c.build(Method::ALLOCATE, None, udp);
    s.ask(&mut c, 0, &req);
    let req = c.build(Method::ALLOCATE, Some(&alice()), |b| {
        udp(b);
        b.add(&AdditionalAddressFamily(AddressFamily::V6))
            .expect("room");
    });
    let (h, r) = s.ask(&mut c, 0, &req);
    assert!(matches!(h, Handled::Answered(_)), "{:?}", r.code());
    let relayed: Vec<SocketAddr> = r
        .msg()
        .attributes()
        .filter(|a| a.typ == attr_type::XOR_RELAYED_ADDRESS)
        .map(|a| {
            <XorRelayedAddress as farside_stun::Attribute>::decode(a.value, &r.msg().header())
                .expect("address")
                .0
        })
        .collect();
    assert_eq!(relayed.len(), 2, "{relayed:?}");
    assert!(relayed[0].is_ipv4() && relayed[1].is_ipv6());
    for p in [PEER, "[2001:db8::9]:5000"] {
        let req = c.build(Method::CREATE_PERMISSION, Some(&alice()), peer_attr(p));
        let (h, _) = s.ask(&mut c, 1, &req);
        assert!(matches!(h, Handled::Answered(_)), "{p}");
    }
    let send = |s: &mut Setup, c: &mut Client, peer: &str| {
        let ind = c.send_indication(peer, b"x");
        s.send(c, 2, &ind).0
    };
    assert!(matches!(send(&mut s, &mut c, PEER), Handled::Relayed(t) if t.from == relayed[0]));
    assert!(
        matches!(send(&mut s, &mut c, "[2001:db8::9]:5000"), Handled::Relayed(t) if t.from == relayed[1])
    );
    assert!(matches!(
        s.peer(relayed[1], "[2001:db8::9]:5000", 2, b"back").0,
        Handled::Relayed(_)
    ));
    // Deleting releases both.
    let req = c.build(Method::REFRESH, Some(&alice()), |b| {
        b.add(&Lifetime(0)).expect("room");
    });
    s.ask(&mut c, 3, &req);
    assert!(s.ports.released.contains(&relayed[0]) && s.ports.released.contains(&relayed[1]));

    // Without IPv6 relaying the IPv4 half stands, and ADDRESS-ERROR-CODE says why.
    let mut s = setup();
    let mut c = Client::new();
    let req = c.build(Method::ALLOCATE, None, udp);
    s.ask(&mut c, 0, &req);
    let req = c.build(Method::ALLOCATE, Some(&alice()), |b| {
        udp(b);
        b.add(&AdditionalAddressFamily(AddressFamily::V6))
            .expect("room");
    });
    let (h, r) = s.ask(&mut c, 0, &req);
    assert!(matches!(h, Handled::Answered(_)));
    let m = r.msg();
    let e = m
        .attribute::<AddressErrorCode>()
        .expect("ADDRESS-ERROR-CODE")
        .expect("parses");
    assert_eq!((e.family, e.code), (AddressFamily::V6, 440));
    // ADDITIONAL-ADDRESS-FAMILY IPv4, or with REQUESTED-ADDRESS-FAMILY: 400.
    let mut d = Client::new();
    d.addr = sa("198.51.100.60:1");
    let req = d.build(Method::ALLOCATE, None, udp);
    s.ask(&mut d, 0, &req);
    for extra in [
        AdditionalAddressFamily(AddressFamily::V4),
        AdditionalAddressFamily(AddressFamily::V6),
    ] {
        let with_family = extra.0 == AddressFamily::V6;
        let req = d.build(Method::ALLOCATE, Some(&alice()), |b| {
            udp(b);
            b.add(&extra).expect("room");
            if with_family {
                b.add(&RequestedAddressFamily(AddressFamily::V4))
                    .expect("room");
            }
        });
        let (h, _) = s.ask(&mut d, 0, &req);
        assert_eq!(h_refusal(&h), Some(Refusal::BadRequest));
    }
}

#[test]
fn dont_fragment_is_honoured_when_the_relay_can_set_df() {
    let mut s = setup();
    s.ports.df = true;
    let mut c = Client::new();
    let req = c.build(Method::ALLOCATE, None, udp);
    s.ask(&mut c, 0, &req);
    let req = c.build(Method::ALLOCATE, Some(&alice()), |b| {
        udp(b);
        b.add_raw(attr_type::DONT_FRAGMENT, &[]).expect("room");
    });
    let (h, r) = s.ask(&mut c, 0, &req);
    assert!(matches!(h, Handled::Answered(_)), "{:?}", r.code());
    assert_eq!(s.ports.df_set, vec![relayed_of(&r)]);
}

fn tcp(b: &mut MessageBuilder<'_>) {
    b.add(&RequestedTransport(6)).expect("room");
}

fn connection_id(r: &Reply) -> ConnectionId {
    r.msg()
        .attribute::<ConnectionId>()
        .expect("CONNECTION-ID")
        .expect("parses")
}

/// A TCP allocation for `c` (over TCP) with a permission for `peer`; returns its address.
fn tcp_allocation(s: &mut Setup, c: &mut Client, peer: &str) -> SocketAddr {
    c.transport = TurnTransport::Tcp;
    let req = c.build(Method::ALLOCATE, None, tcp);
    s.ask(c, 0, &req);
    let req = c.build(Method::ALLOCATE, Some(&alice()), tcp);
    let (h, r) = s.ask(c, 0, &req);
    assert!(matches!(h, Handled::Answered(_)), "{:?}", r.code());
    let req = c.build(Method::CREATE_PERMISSION, Some(&alice()), peer_attr(peer));
    let (h, _) = s.ask(c, 0, &req);
    assert!(matches!(h, Handled::Answered(_)));
    relayed_of(&r)
}

#[test]
fn tcp_allocations_refuse_datagram_attributes_channels_and_sends() {
    let mut s = setup();
    let mut c = Client::new();
    c.transport = TurnTransport::Tcp;
    let req = c.build(Method::ALLOCATE, None, tcp);
    s.ask(&mut c, 0, &req);
    // RFC 6062 §5.1: no DONT-FRAGMENT, EVEN-PORT or RESERVATION-TOKEN with TCP.
    let with: Vec<AddAttributes> = vec![
        Box::new(|b| b.add_raw(attr_type::DONT_FRAGMENT, &[]).expect("room")),
        Box::new(|b| b.add(&EvenPort { reserve: false }).expect("room")),
        Box::new(|b| b.add(&ReservationToken([1; 8])).expect("room")),
    ];
    for extra in with {
        let req = c.build(Method::ALLOCATE, Some(&alice()), |b| {
            tcp(b);
            extra(b);
        });
        let (h, r) = s.ask(&mut c, 0, &req);
        assert_eq!(h_refusal(&h), Some(Refusal::BadRequest), "{:?}", r.code());
    }
    // With TCP relaying off, TCP is an unsupported transport.
    let mut off = setup_with(TurnConfig {
        tcp_relay: false,
        ..TurnConfig::default()
    });
    let mut c2 = Client::new();
    c2.transport = TurnTransport::Tcp;
    let req = c2.build(Method::ALLOCATE, None, tcp);
    off.ask(&mut c2, 0, &req);
    let req = c2.build(Method::ALLOCATE, Some(&alice()), tcp);
    let (h, r) = off.ask(&mut c2, 0, &req);
    assert_eq!(h_refusal(&h), Some(Refusal::UnsupportedTransport));
    assert_eq!(r.code(), Some(442));

    tcp_allocation(&mut s, &mut c, PEER);
    let req = c.build(Method::CHANNEL_BIND, Some(&alice()), |b| {
        b.add(&ChannelNumber(0x4000)).expect("room");
        b.add(&XorPeerAddress(sa(PEER))).expect("room");
    });
    let (h, _) = s.ask(&mut c, 0, &req);
    assert_eq!(
        h_refusal(&h),
        Some(Refusal::BadRequest),
        "no channels on TCP"
    );
    let send = c.send_indication(PEER, b"hello");
    let (h, _) = s.send(&c, 0, &send);
    assert_eq!(h, Handled::Dropped(Dropped::TcpAllocation));
    // Connect on a UDP allocation is a 400.
    let mut u = Client::new();
    u.addr = sa("198.51.100.9:40000");
    s.allocate(&mut u, &alice(), 0);
    let req = u.build(Method::CONNECT, Some(&alice()), peer_attr(PEER));
    let (h, _) = s.ask(&mut u, 0, &req);
    assert_eq!(h_refusal(&h), Some(Refusal::BadRequest));
}

#[test]
fn connect_then_connection_bind() {
    let mut s = setup();
    let mut c = Client::new();
    let relayed = tcp_allocation(&mut s, &mut c, PEER);
    let req = c.build(Method::CONNECT, Some(&alice()), peer_attr(PEER));
    let (h, _) = s.send(&c, 1, &req);
    let Handled::Connect {
        id,
        relayed: from,
        peer,
    } = h
    else {
        panic!("Connect asks the shell to connect: {h:?}");
    };
    assert_eq!((from, peer), (relayed, sa(PEER)));
    // A second Connect to the same peer while the first is under way: 446.
    let again = c.build(Method::CONNECT, Some(&alice()), peer_attr(PEER));
    let (h, r) = s.ask(&mut c, 1, &again);
    assert_eq!(h_refusal(&h), Some(Refusal::ConnectionAlreadyExists));
    assert_eq!(r.code(), Some(446));
    // Policy applies as to every peer: 403.
    let lo = c.build(Method::CONNECT, Some(&alice()), peer_attr("127.0.0.1:80"));
    let (h, _) = s.ask(&mut c, 1, &lo);
    assert_eq!(h_refusal(&h), Some(Refusal::PeerForbidden));

    // Connected: the Connect is answered with CONNECTION-ID and integrity.
    let mut out = vec![0u8; 1024];
    let h = s
        .server
        .peer_connected(s.now(2), id, true, &mut out)
        .expect("answered");
    let Handled::Answered(t) = h else {
        panic!("{h:?}")
    };
    assert_eq!((t.from, t.to), (sa(SERVER), sa(CLIENT)));
    let r = Reply {
        bytes: out[..t.len].to_vec(),
    };
    assert_eq!(r.msg().method(), Method::CONNECT);
    assert_eq!(
        r.msg().transaction_id(),
        Message::parse(&req).expect("ok").transaction_id()
    );
    assert_eq!(connection_id(&r), id);
    let key = farside_stun::long_term_key_md5("alice", REALM, "wonderland").expect("key");
    r.msg().verify_integrity(&key).expect("integrity");
    assert_eq!(
        s.server.peer_connected(s.now(2), id, true, &mut out),
        None,
        "once"
    );

    // ConnectionBind on a new connection: an unknown id is a 400, and so is bob's bind (no
    // telling him the id exists); alice's binds it, and only once.
    let mut data = Client::new();
    data.addr = sa("198.51.100.7:40001");
    data.transport = TurnTransport::Tcp;
    data.nonce = c.nonce.clone();
    let bind = |d: &mut Client, id: u32, creds: &Creds| {
        d.build(Method::CONNECTION_BIND, Some(creds), move |b| {
            b.add(&ConnectionId(id)).expect("room")
        })
    };
    let req = bind(&mut data, id.0.wrapping_add(1), &alice());
    let (h, _) = s.ask(&mut data, 3, &req);
    assert_eq!(h_refusal(&h), Some(Refusal::BadRequest));
    let bob = Creds {
        user: "bob".into(),
        password: "builder".into(),
        ..alice()
    };
    let req = bind(&mut data, id.0, &bob);
    let (h, _) = s.ask(&mut data, 3, &req);
    assert_eq!(h_refusal(&h), Some(Refusal::BadRequest));
    // Over the control connection itself (it has an allocation): 400.
    let req = bind(&mut c, id.0, &alice());
    let (h, _) = s.ask(&mut c, 3, &req);
    assert_eq!(h_refusal(&h), Some(Refusal::BadRequest));
    let req = bind(&mut data, id.0, &alice());
    let (h, out) = s.send(&data, 3, &req);
    let Handled::Bound(t, bound) = h else {
        panic!("{h:?}")
    };
    assert_eq!((bound, t.to), (id, data.addr));
    assert_eq!(
        Message::parse(&out[..t.len]).expect("ok").class(),
        Class::SuccessResponse
    );
    let mut data2 = Client::new();
    data2.addr = sa("198.51.100.7:40002");
    data2.transport = TurnTransport::Tcp;
    data2.nonce = c.nonce.clone();
    let req = bind(&mut data2, id.0, &alice());
    let (h, _) = s.ask(&mut data2, 3, &req);
    assert_eq!(h_refusal(&h), Some(Refusal::BadRequest), "bound already");

    // A bound connection outlives the 30 s; the allocation's end closes it.
    s.server.expire(s.now(100), &mut s.ports);
    assert!(s.server.take_notices().is_empty());
    let req = c.build(Method::REFRESH, Some(&alice()), |b| {
        b.add(&Lifetime(0)).expect("room")
    });
    s.ask(&mut c, 101, &req);
    assert_eq!(s.server.take_notices(), vec![Notice::Close(id)]);
    assert_eq!(s.server.tcp_connection_count(), 0);
}

#[test]
fn connect_failures_and_timeouts_answer_447() {
    let mut s = setup();
    let mut c = Client::new();
    tcp_allocation(&mut s, &mut c, PEER);
    let req = c.build(Method::CONNECT, Some(&alice()), peer_attr(PEER));
    let (h, _) = s.send(&c, 0, &req);
    let Handled::Connect { id, .. } = h else {
        panic!("{h:?}")
    };
    let mut out = vec![0u8; 1024];
    let h = s.server.peer_connected(s.now(1), id, false, &mut out);
    let Some(Handled::Refused(t, Refusal::ConnectionTimeoutOrFailure)) = h else {
        panic!("{h:?}")
    };
    let r = Reply {
        bytes: out[..t.len].to_vec(),
    };
    assert_eq!(r.code(), Some(447));

    // Nobody reports: after 30 s the server answers 447 itself and has the socket closed.
    let req = c.build(Method::CONNECT, Some(&alice()), peer_attr(PEER));
    let (h, _) = s.send(&c, 2, &req);
    let Handled::Connect { id, .. } = h else {
        panic!("{h:?}")
    };
    s.server.expire(s.now(31), &mut s.ports);
    assert!(s.server.take_notices().is_empty(), "not yet");
    s.server.expire(s.now(32), &mut s.ports);
    let notices = s.server.take_notices();
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert_eq!(notices[0], Notice::Close(id));
    let Notice::Send { to, bytes, .. } = &notices[1] else {
        panic!("{notices:?}")
    };
    assert_eq!(*to, sa(CLIENT));
    let r = Reply {
        bytes: bytes.clone(),
    };
    assert_eq!((r.code(), r.msg().method()), (Some(447), Method::CONNECT));
    assert_eq!(s.server.peer_connected(s.now(33), id, true, &mut out), None);
}

#[test]
fn peers_connecting_in_need_a_permission_and_a_bind_within_30_s() {
    let mut s = setup();
    let mut c = Client::new();
    let relayed = tcp_allocation(&mut s, &mut c, PEER);
    let mut out = vec![0u8; 1024];
    let stranger = sa("203.0.113.10:6000");
    assert_eq!(
        s.server
            .peer_connection(s.now(1), relayed, stranger, &mut out),
        Err(Dropped::PeerConnectionRefused),
        "no permission"
    );
    let (id, t) = s
        .server
        .peer_connection(s.now(1), relayed, sa(PEER), &mut out)
        .expect("permitted");
    assert_eq!((t.from, t.to), (sa(SERVER), sa(CLIENT)));
    let m = Message::parse(&out[..t.len]).expect("parses");
    assert_eq!(
        (m.class(), m.method()),
        (Class::Indication, Method::CONNECTION_ATTEMPT)
    );
    assert_eq!(m.attribute::<ConnectionId>(), Some(Ok(id)));
    assert_eq!(
        m.attribute::<XorPeerAddress>(),
        Some(Ok(XorPeerAddress(sa(PEER))))
    );
    assert_eq!(
        s.server
            .peer_connection(s.now(1), relayed, sa(PEER), &mut out),
        Err(Dropped::PeerConnectionRefused),
        "one connection per peer address"
    );
    // Unbound for 30 s: closed.
    s.server.expire(s.now(30), &mut s.ports);
    assert!(s.server.take_notices().is_empty(), "29 s: not yet");
    s.server.expire(s.now(31), &mut s.ports);
    assert_eq!(s.server.take_notices(), vec![Notice::Close(id)]);
    let mut data = Client::new();
    data.addr = sa("198.51.100.7:40001");
    data.transport = TurnTransport::Tcp;
    data.nonce = c.nonce.clone();
    let req = data.build(Method::CONNECTION_BIND, Some(&alice()), move |b| {
        b.add(&id).expect("room")
    });
    let (h, _) = s.ask(&mut data, 31, &req);
    assert_eq!(h_refusal(&h), Some(Refusal::BadRequest), "too late");
    // A closed control connection takes its peer connections with it.
    let (id, _) = s
        .server
        .peer_connection(s.now(32), relayed, sa(PEER), &mut out)
        .expect("permitted");
    let five = farside_turn::FiveTuple {
        client: sa(CLIENT),
        server: sa(SERVER),
        transport: TurnTransport::Tcp,
    };
    assert!(s.server.connection_closed(five, &mut s.ports));
    assert_eq!(s.server.take_notices(), vec![Notice::Close(id)]);
    assert!(s.ports.released.contains(&relayed));
}

/// Refusals of unauthenticated requests over UDP are rationed per source address and second
/// (`Quotas`' refusals budget): 30 Allocates without credentials from one address, from
/// several ports, in one second draw 10 challenges; the rest are dropped unsent and named. The
/// next second brings a fresh budget, another address is answered meanwhile, and over TCP (a
/// handshake proved the address) nothing is rationed. An authenticated request is never.
#[test]
fn refusals_without_credentials_are_rationed_per_source_over_udp() {
    let mut s = setup_with_quotas(TurnConfig::default(), Arc::new(Quotas::new(0, 20, 10)));
    let mut answered = 0;
    for i in 0..30u16 {
        let mut c = Client::new();
        c.addr = SocketAddr::new(sa(CLIENT).ip(), 40_000 + i);
        let req = c.build(Method::ALLOCATE, None, udp);
        match s.send(&c, 0, &req).0 {
            Handled::Refused(_, Refusal::Challenge) => answered += 1,
            h => assert_eq!(h, Handled::Dropped(Dropped::RefusalRateLimited)),
        }
    }
    assert_eq!(answered, 10);
    let mut other = Client::new();
    other.addr = sa("198.51.100.77:5000");
    let req = other.build(Method::ALLOCATE, None, udp);
    assert_eq!(
        h_refusal(&s.send(&other, 0, &req).0),
        Some(Refusal::Challenge)
    );
    let mut c = Client::new();
    let req = c.build(Method::ALLOCATE, None, udp);
    assert_eq!(h_refusal(&s.send(&c, 1, &req).0), Some(Refusal::Challenge));
    // Within the budget of second 1 still: the challenge is answered and alice allocates.
    let (h, _) = s.allocate(&mut c, &alice(), 1);
    assert!(matches!(h, Handled::Answered(_)), "{h:?}");
    let mut tcp = Client::new();
    tcp.transport = TurnTransport::Tcp;
    for _ in 0..30 {
        let req = tcp.build(Method::ALLOCATE, None, udp);
        assert_eq!(
            h_refusal(&s.send(&tcp, 1, &req).0),
            Some(Refusal::Challenge)
        );
    }
}

/// The server's own addresses (the relay policy's `own`) are refused but on relay ports: a
/// channel to its STUN listener gets 403, data sent there is dropped; a channel to another
/// allocation's relayed port on the same address is bound (two clients of one server).
#[test]
fn the_servers_own_listeners_are_refused_and_its_relay_ports_are_not() {
    let own: std::net::IpAddr = "203.0.113.9".parse().expect("ip");
    let mut s = setup_with(TurnConfig {
        peer_policy: farside_turn::PeerPolicy {
            own: vec![own],
            relay_ports: vec![49152..=65535],
            ..farside_turn::PeerPolicy::default()
        },
        ..TurnConfig::default()
    });
    let mut c = Client::new();
    s.allocate(&mut c, &alice(), 0);
    let permit = c.build(Method::CREATE_PERMISSION, Some(&alice()), |b| {
        b.add(&XorPeerAddress(sa("203.0.113.9:3478")))
            .expect("room");
    });
    let (h, _) = s.ask(&mut c, 1, &permit);
    assert!(
        matches!(h, Handled::Answered(_)),
        "a permission is for the address: {h:?}"
    );
    let bind = |c: &mut Client, channel: u16, peer: &str| {
        c.build(Method::CHANNEL_BIND, Some(&alice()), |b| {
            b.add(&ChannelNumber(channel)).expect("room");
            b.add(&XorPeerAddress(sa(peer))).expect("room");
        })
    };
    let req = bind(&mut c, 0x4000, "203.0.113.9:3478");
    let (h, r) = s.ask(&mut c, 1, &req);
    assert_eq!(
        (h_refusal(&h), r.code()),
        (Some(Refusal::PeerForbidden), Some(403))
    );
    let req = bind(&mut c, 0x4001, "203.0.113.9:50000");
    let (h, _) = s.ask(&mut c, 1, &req);
    assert!(
        matches!(h, Handled::Answered(_)),
        "another allocation: {h:?}"
    );
    let send = c.send_indication("203.0.113.9:5060", b"to its SIP port");
    assert_eq!(
        s.send(&c, 1, &send).0,
        Handled::Dropped(Dropped::NoPermission)
    );
    let send = c.send_indication("203.0.113.9:50002", b"to a relay port");
    assert!(matches!(s.send(&c, 1, &send).0, Handled::Relayed(_)));
}
