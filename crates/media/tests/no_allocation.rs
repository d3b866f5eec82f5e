//! The relay core's packet path allocates nothing: an established call's RTP and RTCP (sender
//! and receiver reports, which feed the round trip), a stranger's refused packets and a packet
//! for no call, counted by this test binary's allocator on the test's own thread (the test
//! harness's threads may allocate meanwhile: a full suite on a busy machine saw four).

#![allow(clippy::unwrap_used)]
// A counting global allocator needs `unsafe impl GlobalAlloc`; it only passes each call on to
// the system allocator. Test code: the product's unsafe stays in farside-io.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

mod common;

use common::{Ports, passing};
use farside_media::relay::{Relay, RelayConfig};
use farside_sdp::Sdp;
use farside_time::Timestamp;

/// The system allocator, counting allocations.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Whether this thread's allocations are counted.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            ALLOCATIONS.fetch_add(1, Relaxed);
        }
        // SAFETY: as the caller promised for `layout`.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"
    )
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend([0xd5; 160]);
    p
}

/// An SR from `ssrc` (NTP middle `ntp`) with no blocks, or an RR with one block naming `lsr`.
fn rtcp(sender: bool, ssrc: u32, ntp_or_lsr: u32) -> Vec<u8> {
    let mut p = Vec::new();
    if sender {
        p.extend([0x80, 200, 0, 6]);
        p.extend(ssrc.to_be_bytes());
        p.extend([0; 2]);
        p.extend(ntp_or_lsr.to_be_bytes());
        p.extend([0; 14]);
    } else {
        p.extend([0x81, 201, 0, 7]);
        p.extend(ssrc.to_be_bytes());
        p.extend(9u32.to_be_bytes());
        p.extend([0; 12]);
        p.extend(ntp_or_lsr.to_be_bytes());
        p.extend(1000u32.to_be_bytes());
    }
    p
}

#[test]
fn relaying_rtp_and_rtcp_allocates_nothing() {
    let mut relay = Relay::new(RelayConfig::new("203.0.113.5".parse().unwrap()));
    let mut ports = Ports(30_000);
    let t0 = Timestamp::from_unix_secs(1_800_000_000);
    let at = |ms: u64| {
        t0.checked_add(std::time::Duration::from_millis(ms))
            .unwrap()
    };
    let (offer, answer) = (sdp("198.51.100.7", 4000), sdp("192.0.2.20", 5000));
    let to_bob = relay
        .offer(t0, &passing(b"c", b"alice", None, &offer), &mut ports)
        .unwrap();
    let to_alice = relay
        .answer(t0, &passing(b"c", b"alice", Some(b"bob"), &answer))
        .unwrap();
    let port = |s: &[u8]| Sdp::parse(s).unwrap().media().next().unwrap().port;
    let (alice_port, bob_port) = (port(&to_alice), port(&to_bob));
    let alice: SocketAddr = "198.51.100.7:4000".parse().unwrap();
    let bob: SocketAddr = "192.0.2.20:5000".parse().unwrap();
    let stranger: SocketAddr = "203.0.113.66:6000".parse().unwrap();
    // Built before counting: the packets are the test's, not the relay's.
    let packets: Vec<Vec<u8>> = (0..500).map(rtp).collect();
    let (sr, rr) = (rtcp(true, 7, 0x1234_5678), rtcp(false, 9, 0x1234_5678));
    // One round first: latching and the first figures may set things up.
    relay
        .handle_packet(at(0), alice_port, alice, &packets[0])
        .unwrap();
    relay
        .handle_packet(at(0), bob_port, bob, &packets[0])
        .unwrap();

    let before = ALLOCATIONS.load(Relaxed);
    COUNTING.with(|c| c.set(true));
    let mut relayed = 0;
    for (i, p) in packets.iter().enumerate().skip(1) {
        let now = at(20 * i as u64);
        relayed += usize::from(relay.handle_packet(now, alice_port, alice, p).is_ok());
        relayed += usize::from(relay.handle_packet(now, bob_port, bob, p).is_ok());
        let _ = relay.handle_packet(now, alice_port, stranger, p);
        let _ = relay.handle_packet(now, 39_998, stranger, p);
        if i % 250 == 0 {
            let rtcp_sent = relay.handle_packet(now, alice_port + 1, alice_rtcp(alice), &sr);
            let rtcp_answered = relay.handle_packet(now, bob_port + 1, bob_rtcp(bob), &rr);
            assert!(rtcp_sent.is_ok() && rtcp_answered.is_ok());
        }
    }
    COUNTING.with(|c| c.set(false));
    let allocations = ALLOCATIONS.load(Relaxed) - before;
    assert_eq!(relayed, 998);
    assert_eq!(
        allocations, 0,
        "the packet path allocated {allocations} times"
    );
}

fn alice_rtcp(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip(), a.port() + 1)
}

fn bob_rtcp(b: SocketAddr) -> SocketAddr {
    SocketAddr::new(b.ip(), b.port() + 1)
}
