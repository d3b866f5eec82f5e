//! Faults: the wall clock stepped under a running server, and the process killed under load.
//!
//! A step of the system clock (an NTP correction, an operator's `date -s`) must not expire
//! registrations or allocations: Farside's time is the Unix time read at start, advanced by the
//! monotonic clock (`runtime/clock.rs`). Here the step is real as the process sees it:
//! libfaketime (Debian's `faketime`) moves its `CLOCK_REALTIME` three hours ahead while it runs
//! and leaves its monotonic clock alone.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::turn::{allocate_request, nonce_of, rest_credentials};
use common::{LOCALHOST, Server, ServerConfig, counter, run_tool, sipp};

const SECRET: &str = "faults-test-shared-secret";
const DOMAIN: &str = "example.org";

/// Where Debian puts libfaketime.
fn libfaketime() -> Option<String> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .map(String::from)
}

/// The Unix second of a log line's timestamp (`2026-12-05T19:10:00.123456Z ...`).
fn logged_at(line: &str) -> Option<u64> {
    let stamp = line.split_whitespace().next()?;
    let (date, time) = stamp.split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i64> = time
        .trim_end_matches('Z')
        .split(':')
        .map(|p| p.split('.').next().and_then(|x| x.parse().ok()))
        .collect::<Option<_>>()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]).ok()
}

/// Farside's wall clock jumps three hours ahead while alice is registered (SIPp, 600 s) and an
/// allocation lives (600 s): both are still there a few seconds later (the expiry sweeps ran),
/// the allocation refreshes with its nonce, and a call reaches alice.
#[test]
fn a_wall_clock_step_expires_no_registration_and_no_allocation() {
    let test = "a_wall_clock_step_expires_no_registration_and_no_allocation";
    if !common::require_tool(test, "sipp") {
        return;
    }
    let Some(lib) = libfaketime() else {
        common::skip(
            test,
            "libfaketime is not installed (Debian package faketime)",
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("farside-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let offset = dir.join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    let base = common::free_ports(&[LOCALHOST], 102);
    let sip = SocketAddr::new(LOCALHOST, base);
    let server = Server::start(
        test,
        ServerConfig::default()
            .with_env("LD_PRELOAD", &lib)
            .with_env("FAKETIME_TIMESTAMP_FILE", &offset.display().to_string())
            .with_env("FAKETIME_NO_CACHE", "1")
            .with_env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .with_table(&format!(
                "[turn]\nenabled = true\nrelay_ports = \"{}-{}\"\nauth_secrets = [\"{SECRET}\"]\n",
                base + 2,
                base + 101
            ))
            .with_table(&format!(
                "[sip]\nenabled = true\nlisten = [\"udp:{sip}\"]\ndomain = \"{DOMAIN}\"\n\
                 [sip.keepalive]\nenabled = false\n"
            )),
    );
    server.cli(&[
        "user",
        "add",
        "alice",
        "--password",
        "wonderland",
        "--realm",
        DOMAIN,
    ]);
    server.wait_for_log("S306 store changed");
    let reg = run_tool(
        "sipp",
        &sipp::register(
            "alice",
            "wonderland",
            DOMAIN,
            "127.0.0.1",
            base + 1,
            &sip.to_string(),
            10,
        ),
        Duration::from_secs(20),
    );
    assert_eq!(
        reg.code(),
        Some(0),
        "{}\n{}",
        reg.describe(),
        server.describe()
    );
    let (user, password) = rest_credentials(SECRET, "clock");
    let client = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 2048];
    client
        .send_to(&allocate_request(1, None), server.primary)
        .unwrap();
    let n = client.recv(&mut buf).unwrap();
    let nonce = nonce_of(&buf[..n]);
    client
        .send_to(
            &allocate_request(2, Some((&user, &password, &nonce))),
            server.primary,
        )
        .unwrap();
    client.recv(&mut buf).unwrap();
    assert_eq!(
        buf[0..2],
        [0x01, 0x03],
        "Allocate success\n{}",
        server.describe()
    );

    // The step: three hours ahead, as the process's CLOCK_REALTIME sees it.
    std::fs::write(&offset, "+3h\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // A log line written now carries the stepped clock (tracing reads the wall clock).
    server.cli(&[
        "user",
        "add",
        "bob",
        "--password",
        "builder",
        "--realm",
        DOMAIN,
    ]);
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        common::wait_until(Duration::from_secs(5), || server
            .logs()
            .lines()
            .filter(|l| l.contains("S306 store changed"))
            .filter_map(logged_at)
            .any(|t| t >= real + 2 * 3600)),
        "the process's wall clock did not step\n{}",
        server.describe()
    );
    // Expiry sweeps run every second.
    std::thread::sleep(Duration::from_secs(3));
    let bindings = counter(&server, "farside_sip_bindings", "");
    let allocations = counter(&server, "farside_turn_allocations", "");
    // The allocation refreshes with the nonce it got before the step.
    let refresh = common::turn::request(
        farside_stun::Method::REFRESH,
        3,
        Some((&user, &password, &nonce)),
        |b| {
            b.add(&farside_stun::attributes::Lifetime(600)).unwrap();
        },
    );
    client.send_to(&refresh, server.primary).unwrap();
    let n = client.recv(&mut buf).unwrap();
    let refreshed = buf[0..2] == [0x01, 0x04];
    // And a call reaches alice at the Contact she registered.
    let (callee, caller) = std::thread::scope(|s| {
        let callee = s.spawn(|| {
            run_tool(
                "sipp",
                &sipp::callee("alice", "127.0.0.1", base + 1, 15),
                Duration::from_secs(25),
            )
        });
        std::thread::sleep(Duration::from_millis(500));
        let caller = run_tool(
            "sipp",
            &sipp::caller(
                "alice",
                DOMAIN,
                "127.0.0.1",
                common::free_ports(&[LOCALHOST], 1),
                &sip.to_string(),
                15,
            ),
            Duration::from_secs(25),
        );
        (callee.join().unwrap(), caller)
    });
    println!(
        "wall clock stepped 3 h ahead under the server: bindings {bindings}, allocations \
         {allocations}, refresh with the old nonce {}, call to alice {}",
        if refreshed { "succeeded" } else { "failed" },
        if caller.code() == Some(0) && callee.code() == Some(0) {
            "completed"
        } else {
            "failed"
        }
    );
    let described = server.describe();
    assert_eq!((bindings, allocations), (1.0, 1.0), "{described}");
    assert!(
        refreshed,
        "Refresh answered {:02x?}\n{described}",
        &buf[..n.min(4)]
    );
    assert_eq!(caller.code(), Some(0), "{}\n{described}", caller.describe());
    assert_eq!(callee.code(), Some(0), "{}\n{described}", callee.describe());
}
