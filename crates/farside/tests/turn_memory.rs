//! 10 000 live TURN allocations on one server: all are granted and held, and the server's
//! resident memory per allocation is measured (a figure for `docs/benchmarks.md`, printed as a
//! NOTE; the assertion is only that every allocation lives).

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::turn::{allocate_request, nonce_of, rest_credentials};
use common::{LOCALHOST, Server, ServerConfig, metric_samples};
use farside_stun::Message;
use farside_stun::attributes::XorRelayedAddress;

const SECRET: &str = "memory test secret 0123456789";
const ALLOCATIONS: usize = 10_000;

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn ten_thousand_allocations_are_held() {
    let test = "ten_thousand_allocations_are_held";
    let limit = farside_io::raise_fd_limit().unwrap_or(0);
    if limit < (ALLOCATIONS as u64) + 512 {
        common::skip(
            test,
            &format!("open-file limit {limit} is below {ALLOCATIONS} sockets"),
        );
        return;
    }
    let server = Server::start(
        test,
        ServerConfig::default().with_table(&format!(
            "[turn]\nenabled = true\nrelay_ports = \"30000-60999\"\nauth_secrets = [\"{SECRET}\"]\n\
             max_allocations_per_user = 0\nmax_allocations = {ALLOCATIONS}\n"
        )),
    );
    let pid = server.pid();
    let before = vm_rss_kib(pid);
    let (user, password) = rest_credentials(SECRET, "memory");

    // One challenge gives a nonce every client may use (nonces are not tied to a client).
    let probe = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    probe
        .send_to(&allocate_request(0, None), server.primary)
        .unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = probe.recv_from(&mut buf).unwrap();
    let nonce = nonce_of(&buf[..n]);

    let started = Instant::now();
    let sockets: Vec<UdpSocket> = (0..ALLOCATIONS)
        .map(|_| {
            let s = UdpSocket::bind((LOCALHOST, 0)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            s
        })
        .collect();
    let mut relayed: Vec<Option<SocketAddr>> = vec![None; ALLOCATIONS];
    for attempt in 0..3 {
        for chunk in (0..ALLOCATIONS).collect::<Vec<_>>().chunks(256) {
            for &i in chunk.iter().filter(|&&i| relayed[i].is_none()) {
                let req = allocate_request(i as u32 + 1, Some((&user, &password, &nonce)));
                let _ = sockets[i].send_to(&req, server.primary);
            }
            let waiting: Vec<usize> = chunk
                .iter()
                .copied()
                .filter(|&i| relayed[i].is_none())
                .collect();
            for i in waiting {
                if let Ok((n, _)) = sockets[i].recv_from(&mut buf)
                    && let Ok(m) = Message::parse(&buf[..n])
                    && let Some(Ok(XorRelayedAddress(a))) = m.attribute::<XorRelayedAddress>()
                {
                    relayed[i] = Some(a);
                }
            }
        }
        if relayed.iter().all(Option::is_some) || attempt == 2 {
            break;
        }
    }
    let took = started.elapsed();
    let granted = relayed.iter().filter(|r| r.is_some()).count();
    assert_eq!(
        granted,
        ALLOCATIONS,
        "allocations granted\n{}",
        server.describe()
    );
    let distinct: std::collections::HashSet<_> = relayed.iter().flatten().collect();
    assert_eq!(
        distinct.len(),
        ALLOCATIONS,
        "every relayed address is its own"
    );

    // Held: the server reports them all alive (its gauge follows within a worker's pass).
    let deadline = Instant::now() + Duration::from_secs(5);
    let (live, m) = loop {
        let m = server.metrics().unwrap();
        let live: f64 = metric_samples(&m, "farside_turn_allocations")
            .iter()
            .map(|(_, v)| v)
            .sum();
        if live as usize == ALLOCATIONS || Instant::now() > deadline {
            break (live, m);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(live as usize, ALLOCATIONS, "{m}");
    let after = vm_rss_kib(pid);
    let per = (after.saturating_sub(before) as f64 * 1024.0) / ALLOCATIONS as f64;
    common::note(
        test,
        &format!(
            "{ALLOCATIONS} allocations in {:.1} s; server RSS {before} KiB -> {after} KiB: {per:.0} bytes per allocation \
             (user space; each relay socket's kernel memory is not in RSS)",
            took.as_secs_f64()
        ),
    );
    server.assert_alive("holding 10k allocations");
}
