//! The hot path allocates nothing: parsing a request and building its answer with the
//! Binding responder, for every kind of client, under a counting global allocator.

#![allow(clippy::unwrap_used, missing_docs)]
// A counting global allocator needs `unsafe impl GlobalAlloc`; it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use farside_stun::attributes::{ChangeRequest, Padding, XorMappedAddress};
use farside_stun::binding::{
    AlternateAddress, BindingConfig, BindingServer, Outcome, Received, Transport,
};
use farside_stun::{Class, Header, Message, MessageBuilder, MessageType, Method, TransactionId};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Only the measured thread counts: the test harness allocates on its own threads.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn request(cookie: [u8; 4], build: impl FnOnce(&mut MessageBuilder<'_>)) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let ty = MessageType {
        class: Class::Request,
        method: Method::BINDING,
    };
    let header = Header {
        cookie,
        transaction_id: TransactionId([7; 12]),
    };
    let mut b = MessageBuilder::new(&mut buf, ty, header).unwrap();
    build(&mut b);
    let n = b.finish();
    buf.truncate(n);
    buf
}

#[test]
fn answering_binding_requests_allocates_nothing() {
    let local: SocketAddr = "192.0.2.1:3478".parse().unwrap();
    let remote: SocketAddr = "198.51.100.9:4000".parse().unwrap();
    let server = BindingServer::new(BindingConfig {
        alternate: Some(AlternateAddress {
            primary_ip: local.ip(),
            primary_port: 3478,
            alternate_ip: "192.0.2.2".parse().unwrap(),
            alternate_port: 3479,
        }),
        software: Some("farside".into()),
    });
    let cookie = 0x2112_A442u32.to_be_bytes();
    let pad = [0u8; 64];
    let requests = [
        request(cookie, |_| {}),
        request(cookie, |b| b.add_fingerprint().unwrap()),
        request([1, 2, 3, 4], |b| {
            b.add(&ChangeRequest {
                change_ip: true,
                change_port: true,
            })
            .unwrap();
        }),
        request(cookie, |b| b.add(&Padding(&pad)).unwrap()),
        request(cookie, |b| b.add_raw(0x7ff0, &[0; 4]).unwrap()), // 420
        request(cookie, |b| b.add_raw(0x0003, &[0; 2]).unwrap()), // 400
        vec![0xff; 40],                                           // dropped
    ];
    let mut out = [0u8; 2048];
    let mut answered = 0;

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    for _ in 0..1000 {
        for bytes in &requests {
            let rx = Received {
                transport: Transport::Udp,
                local,
                remote,
                bytes,
            };
            if let Outcome::Respond(r) = server.handle(rx, &mut out) {
                let m = Message::parse(&out[..r.len]).unwrap();
                if let Some(Ok(XorMappedAddress(a))) = m.attribute::<XorMappedAddress>() {
                    assert_eq!(a, remote);
                }
                answered += 1;
            }
        }
    }
    COUNTING.with(|c| c.set(false));
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(answered, 6000);
    assert_eq!(after - before, 0, "the request path allocated");
}
