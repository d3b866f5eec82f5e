//! What the file leaves to the host. A part whose `enabled` key is left out runs when the host
//! gives it what it needs: TURN and the RTP relay an address to relay from (the host's one
//! specific address of a family: with two choices Farside would guess, so it asks instead),
//! the SIP registrar listeners (every host address, port 5060, UDP and TCP, as Kamailio does
//! without `listen`) and a domain. One that cannot run is turned off with a notice naming the
//! key to set; a part the file turns on (`enabled = true`) that cannot run fails the start.
//!
//! Pure: the host's addresses and name come in as [`Host`], so every case is tested here.

use std::net::{IpAddr, SocketAddr};

use farside_sip::nat::Transport;

use super::values::Switch;
use super::{Config, ConfigError, invalid};
use crate::config::sip::Listener;

/// The port of the default SIP listeners (RFC 3261 §19.1.2).
pub const SIP_PORT: u16 = 5060;

/// What the host offers: its interface addresses and its name.
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// The addresses of the interfaces that are up, each once (one address on two interfaces
    /// is one choice, and one listener).
    addresses: Vec<IpAddr>,
    /// The host name (`/proc/sys/kernel/hostname`), possibly empty.
    name: String,
}

impl Host {
    /// A host with `addresses` (repeats dropped, first kept) and `name`.
    pub fn new(addresses: impl IntoIterator<Item = IpAddr>, name: String) -> Host {
        let mut unique: Vec<IpAddr> = Vec::new();
        for ip in addresses {
            if !unique.contains(&ip) {
                unique.push(ip);
            }
        }
        Host {
            addresses: unique,
            name,
        }
    }

    /// This machine.
    pub fn detect() -> Host {
        let addresses: Vec<IpAddr> = farside_io::interface_addresses()
            .map(|all| all.into_iter().map(|a| a.ip).collect())
            .unwrap_or_else(|e| {
                tracing::warn!("S008 cannot list the host's addresses: {e}");
                Vec::new()
            });
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Host::new(addresses, name)
    }

    /// The addresses a server can be reached on from elsewhere: not loopback, link-local,
    /// multicast or unspecified.
    fn specific(&self, v4: bool) -> Vec<IpAddr> {
        self.addresses
            .iter()
            .copied()
            .filter(|ip| ip.is_ipv4() == v4 && reachable(*ip))
            .collect()
    }

    /// The addresses to relay from (the one specific address of each family that has one),
    /// and what was found, for a message when there are none.
    fn relay_addresses(&self) -> (Vec<IpAddr>, String) {
        let (v4, v6) = (self.one(true), self.one(false));
        let chosen = [&v4, &v6]
            .into_iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        (chosen, choices(&v4, &v6))
    }

    /// The one specific address of a family, or why there is none (the choices found).
    fn one(&self, v4: bool) -> Result<IpAddr, Vec<IpAddr>> {
        match self.specific(v4).as_slice() {
            [one] => Ok(*one),
            many => Err(many.to_vec()),
        }
    }
}

/// Not loopback, link-local, multicast or unspecified.
fn reachable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            !(a.is_loopback() || a.is_link_local() || a.is_multicast() || a.is_unspecified())
        }
        IpAddr::V6(a) => {
            !(a.is_loopback()
                || a.is_unicast_link_local()
                || a.is_multicast()
                || a.is_unspecified()
                || a.to_ipv4_mapped().is_some())
        }
    }
}

/// What settling decided, for the startup log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Notices(pub Vec<String>);

impl Config {
    /// Fills what the file left to the host (see the module) and checks the result again.
    pub fn settle(mut self, host: &Host, origin: &str) -> Result<(Config, Notices), ConfigError> {
        let mut notices = Vec::new();
        self.settle_turn(host, origin, &mut notices)?;
        self.settle_sip(host, origin, &mut notices)?;
        self.settle_rtp(host, origin, &mut notices)?;
        self.settle_ports(&mut notices);
        self.validate(origin)?;
        Ok((self, Notices(notices)))
    }

    fn settle_turn(
        &mut self,
        host: &Host,
        origin: &str,
        notices: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let turn = &mut self.turn;
        if !turn.enabled.wanted() {
            return Ok(());
        }
        if turn.relay_addresses(&self.stun) != (None, None) {
            return Ok(());
        }
        let (chosen, found) = host.relay_addresses();
        if chosen.is_empty() {
            let why = format!(
                "the host has no single address to relay from ({found}): set turn.relay_address"
            );
            return off(
                &mut turn.enabled,
                origin,
                "turn.relay_address",
                why,
                notices,
            );
        }
        notices.push(format!(
            "S012 TURN relays from {}, the host's address (set turn.relay_address to choose)",
            list(&chosen)
        ));
        turn.relay_address = chosen;
        Ok(())
    }

    fn settle_sip(
        &mut self,
        host: &Host,
        origin: &str,
        notices: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let sip = &mut self.sip;
        if !sip.enabled.wanted() {
            return Ok(());
        }
        if sip.domain.is_empty() {
            let domain = match (host.one(true), host.one(false)) {
                (Ok(ip), _) => ip.to_string(),
                (_, Ok(ip)) => format!("[{ip}]"),
                _ if !host.name.is_empty() && host.name != "localhost" => host.name.clone(),
                (v4, v6) => {
                    let why = format!(
                        "no domain to serve: the host has no single address ({}) and no name: set sip.domain",
                        choices(&v4, &v6)
                    );
                    return off(&mut sip.enabled, origin, "sip.domain", why, notices);
                }
            };
            notices.push(format!(
                "S012 SIP domain {domain}, from the host: phones register as user@{domain} (set sip.domain to change)"
            ));
            // One realm for TURN and SIP: `farside user add NAME` then serves both.
            sip.realm.get_or_insert_with(|| self.turn.realm.clone());
            sip.domain = domain;
        }
        if sip.listen.is_empty() {
            let ips: Vec<IpAddr> = host
                .addresses
                .iter()
                .copied()
                .filter(|ip| reachable(*ip) || ip.is_loopback())
                .collect();
            if ips.is_empty() {
                let why = "no address to listen on: set sip.listen".to_string();
                return off(&mut sip.enabled, origin, "sip.listen", why, notices);
            }
            for transport in [Transport::Udp, Transport::Tcp] {
                sip.listen.extend(ips.iter().map(|&ip| Listener {
                    transport,
                    address: SocketAddr::new(ip, SIP_PORT),
                }));
            }
        }
        Ok(())
    }

    fn settle_rtp(
        &mut self,
        host: &Host,
        origin: &str,
        notices: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let rtp = &mut self.rtp;
        if !rtp.enabled.wanted() || !rtp.address.is_empty() {
            return Ok(());
        }
        let (chosen, found) = host.relay_addresses();
        if chosen.is_empty() {
            let why = format!(
                "the host has no single address to relay media from ({found}): set rtp.address"
            );
            return off(&mut rtp.enabled, origin, "rtp.address", why, notices);
        }
        notices.push(format!(
            "S012 RTP relay on {}, the host's address (set rtp.address to choose)",
            list(&chosen)
        ));
        rtp.address = chosen;
        Ok(())
    }
}

impl Config {
    /// A TURN left to the host whose relay ports overlap the RTP relay's on one address yields
    /// (the relay's range was asked for); one the file turns on is refused by `validate`.
    fn settle_ports(&mut self, notices: &mut Vec<String>) {
        if self.turn.enabled != Switch::Auto || !self.rtp.enabled.wanted() {
            return;
        }
        let (v4, v6) = self.turn.relay_addresses(&self.stun);
        let (first, last) = (self.turn.relay_ports.0, self.turn.relay_ports.1);
        let (a, b) = (self.rtp.ports.0, self.rtp.ports.1);
        let shared = self
            .rtp
            .address
            .iter()
            .any(|ip| v4 == Some(*ip) || v6 == Some(*ip));
        if shared && a <= last && first <= b {
            notices.push(format!(
                "S009 TURN off: its relay ports {first}-{last} overlap rtp.ports {a}-{b} on the same address: set turn.relay_ports (or turn.enabled = false)"
            ));
            self.turn.enabled = Switch::Off;
        }
    }
}

/// A part that cannot run: off with a notice if it was left to the host, else the start fails.
fn off(
    switch: &mut Switch,
    origin: &str,
    key: &'static str,
    why: String,
    notices: &mut Vec<String>,
) -> Result<(), ConfigError> {
    if switch.required() {
        return Err(invalid(origin, key, why));
    }
    let part = key.split('.').next().unwrap_or(key).to_ascii_uppercase();
    notices.push(format!("S009 {part} off: {why}"));
    *switch = Switch::Off;
    Ok(())
}

fn list(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(" and ")
}

/// "IPv4: none; IPv6: 2001:db8::1, 2001:db8::2".
fn choices(v4: &Result<IpAddr, Vec<IpAddr>>, v6: &Result<IpAddr, Vec<IpAddr>>) -> String {
    let one = |r: &Result<IpAddr, Vec<IpAddr>>| match r {
        Ok(ip) => ip.to_string(),
        Err(v) if v.is_empty() => "none".into(),
        Err(v) => v
            .iter()
            .map(IpAddr::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    };
    format!("IPv4: {}; IPv6: {}", one(v4), one(v6))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(addresses: &[&str], name: &str) -> Host {
        Host::new(
            addresses.iter().map(|a| a.parse().expect("ip")),
            name.into(),
        )
    }

    #[test]
    fn one_address_on_two_interfaces_is_one_choice_and_one_listener() {
        let h = host(&["192.0.2.2", "127.0.0.1", "192.0.2.2"], "");
        let (c, _) = settle("", &h).expect("settles");
        assert_eq!(
            c.turn.relay_address,
            ["192.0.2.2".parse::<IpAddr>().expect("ip")]
        );
        let udp = c
            .sip
            .listen
            .iter()
            .filter(|l| l.transport == Transport::Udp && l.address.ip() == c.turn.relay_address[0])
            .count();
        assert_eq!(udp, 1);
    }

    fn settle(text: &str, host: &Host) -> Result<(Config, Notices), String> {
        Config::parse(text, "f.toml")
            .map_err(|e| e.to_string())?
            .settle(host, "f.toml")
            .map_err(|e| e.to_string())
    }

    #[test]
    fn no_file_on_a_host_with_one_address_runs_everything_there() {
        let h = host(
            &["127.0.0.1", "::1", "192.0.2.2", "fe80::1", "fd00::2"],
            "vm",
        );
        let (c, notices) = settle("", &h).expect("settles");
        assert_eq!(c.turn.enabled, Switch::Auto);
        assert_eq!(
            c.turn.relay_address,
            [
                "192.0.2.2".parse::<IpAddr>().expect("ip"),
                "fd00::2".parse().expect("ip")
            ]
        );
        assert_eq!(c.sip.domain, "192.0.2.2");
        assert_eq!(c.sip.realm(), "farside", "one realm with TURN");
        let listen: Vec<String> = c
            .sip
            .listen
            .iter()
            .map(|l| format!("{:?} {}", l.transport, l.address))
            .collect();
        assert!(
            listen.contains(&"Udp 192.0.2.2:5060".to_string()),
            "{listen:?}"
        );
        assert!(
            listen.contains(&"Tcp 127.0.0.1:5060".to_string()),
            "{listen:?}"
        );
        assert!(
            listen.contains(&"Udp [fd00::2]:5060".to_string()),
            "{listen:?}"
        );
        assert!(!listen.iter().any(|l| l.contains("fe80")), "{listen:?}");
        assert_eq!(c.rtp.address, c.turn.relay_address);
        assert!(
            notices
                .0
                .iter()
                .any(|n| n.starts_with("S012 SIP domain 192.0.2.2"))
        );
    }

    #[test]
    fn two_choices_turn_the_parts_off_naming_the_key() {
        let h = host(&["127.0.0.1", "192.0.2.2", "198.51.100.7"], "");
        let (c, notices) = settle("", &h).expect("settles");
        assert_eq!(c.turn.enabled, Switch::Off);
        assert_eq!(c.sip.enabled, Switch::Off);
        assert_eq!(c.rtp.enabled, Switch::Off);
        let all = notices.0.join("\n");
        assert!(
            all.contains("(IPv4: 192.0.2.2, 198.51.100.7; IPv6: none): set turn.relay_address"),
            "{all}"
        );
        assert!(all.contains("set sip.domain"), "{all}");
        assert!(all.contains("set rtp.address"), "{all}");
        // A host name gives SIP its domain all the same.
        let (c, _) = settle(
            "",
            &host(
                &["127.0.0.1", "192.0.2.2", "198.51.100.7"],
                "pbx.example.org",
            ),
        )
        .expect("settles");
        assert_eq!(c.sip.domain, "pbx.example.org");
        assert!(c.sip.enabled.wanted());
    }

    #[test]
    fn a_turn_left_to_the_host_yields_its_ports_to_the_rtp_relay() {
        let h = host(&["127.0.0.1", "192.0.2.2"], "");
        let text = "[stun]\nlisten = [\"192.0.2.2:3478\"]\n[rtp]\naddress = [\"192.0.2.2\"]\nports = \"10000-59999\"\n";
        let (c, notices) = settle(text, &h).expect("settles");
        assert_eq!(c.turn.enabled, Switch::Off);
        assert!(
            notices.0.iter().any(|n| n.contains("overlap rtp.ports")),
            "{notices:?}"
        );
        let e = settle(&format!("{text}[turn]\nenabled = true\n"), &h).expect_err("asked for");
        assert!(e.contains("rtp.ports"), "{e}");
    }

    #[test]
    fn a_part_the_file_asks_for_fails_the_start_instead() {
        let h = host(&["127.0.0.1"], "");
        let e = settle("[turn]\nenabled = true\n", &h).expect_err("no relay address");
        assert!(
            e.starts_with("f.toml: turn.relay_address: the host has no single address"),
            "{e}"
        );
        let e = settle("[rtp]\nenabled = true\n", &h).expect_err("no media address");
        assert!(e.contains("rtp.address"), "{e}");
        // What the file says is kept, and a part it turns off stays off.
        let (c, notices) = settle(
            "[stun]\nlisten = [\"127.0.0.1:3478\"]\n[turn]\nenabled = true\n[sip]\nenabled = false\n[rtp]\nenabled = false\n",
            &h,
        )
        .expect("settles");
        let v4 = "127.0.0.1".parse::<IpAddr>().expect("ip");
        assert_eq!(c.turn.relay_addresses(&c.stun), (Some(v4), None));
        assert_eq!(c.sip.enabled, Switch::Off);
        assert!(notices.0.is_empty(), "{notices:?}");
    }
}
