//! A dnsmasq on 127.0.0.1 that knows only what it is told (SRV, NAPTR, host records), for the
//! tests that find servers through DNS as phones do.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running dnsmasq, killed on drop.
pub struct Dnsmasq {
    child: Child,
    /// Its UDP and TCP port on 127.0.0.1.
    pub port: u16,
}

impl Dnsmasq {
    /// Starts one with `records` (dnsmasq options such as `--srv-host=...`); returns once it
    /// answers a query.
    pub fn start(records: &[String]) -> Dnsmasq {
        let port = super::free_ports(&[super::LOCALHOST], 1);
        let child = Command::new("dnsmasq")
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--pid-file=",
                "--log-queries",
            ])
            .arg(format!("--port={port}"))
            .args(records)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        // Ready when it answers a query; bounded.
        let sock = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("a timeout");
        let query = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04test\x00\x00\x01\x00\x01";
        let ready = (0..50).any(|_| {
            let _ = sock.send_to(query, ("127.0.0.1", port));
            let mut buf = [0u8; 512];
            sock.recv_from(&mut buf).is_ok()
        });
        assert!(ready, "dnsmasq did not answer on 127.0.0.1:{port}");
        Dnsmasq { child, port }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
