//! Finding a STUN server from what a user types: an address, `host:port`, or a domain whose
//! `_stun._udp` SRV records name the servers (RFC 8489 §8.1, RFC 2782), as SIP phones do.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, bail};
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};

/// The STUN port when neither the user nor DNS names one (RFC 8489 §18.4).
pub const STUN_PORT: u16 = 3478;

/// One candidate server, with how it was found (for the report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Where to send.
    pub address: SocketAddr,
    /// How the address was found, e.g. "SRV _stun._udp.example.test → stun1.example.test".
    pub source: String,
}

/// What the user typed, before any lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An IP address, with or without a port.
    Address(SocketAddr),
    /// A name with an explicit port: A/AAAA only.
    HostPort(String, u16),
    /// A bare name: SRV first, then A/AAAA on the STUN port.
    Domain(String),
}

impl Target {
    /// Parses `1.2.3.4`, `1.2.3.4:3478`, `[2001:db8::1]:3478`, `2001:db8::1`, `host:port`, `domain`.
    pub fn parse(s: &str) -> anyhow::Result<Target> {
        let s = s.trim();
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Target::Address(a));
        }
        if let Ok(ip) = s.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
            return Ok(Target::Address(SocketAddr::new(ip, STUN_PORT)));
        }
        if let Some((host, port)) = s.rsplit_once(':') {
            let port: u16 = port
                .parse()
                .with_context(|| format!("{s:?}: the port must be a number"))?;
            check_name(host)?;
            return Ok(Target::HostPort(host.to_string(), port));
        }
        check_name(s)?;
        // RFC 6761 §6.3: "localhost" names this host; never ask DNS about it.
        let lower = s.trim_end_matches('.').to_ascii_lowercase();
        if lower == "localhost" || lower.ends_with(".localhost") {
            return Ok(Target::HostPort(s.to_string(), STUN_PORT));
        }
        Ok(Target::Domain(s.to_string()))
    }
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').filter(|l| !l.is_empty()).all(|l| {
            l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !ok {
        bail!("{name:?} is not an address or a domain name");
    }
    Ok(())
}

/// A resolver: the system's, or the one `--dns` names.
pub fn resolver(dns: Option<SocketAddr>) -> anyhow::Result<TokioResolver> {
    match dns {
        None => Ok(Resolver::builder_tokio()
            .context("read the system's DNS configuration (/etc/resolv.conf)")?
            .build()
            .context("start the DNS resolver")?),
        Some(server) => {
            let mut ns = NameServerConfig::udp_and_tcp(server.ip());
            for c in &mut ns.connections {
                c.port = server.port();
            }
            let config = ResolverConfig::from_parts(None, vec![], vec![ns]);
            Ok(
                Resolver::builder_with_config(config, TokioRuntimeProvider::default())
                    .build()
                    .context("start the DNS resolver")?,
            )
        }
    }
}

/// The STUN servers to try, in order.
pub async fn candidates(
    target: &Target,
    resolver: &TokioResolver,
    seed: u64,
) -> anyhow::Result<Vec<Candidate>> {
    service_candidates(target, "_stun._udp", STUN_PORT, resolver, seed).await
}

/// The servers of `service` (an SRV prefix: `_stun._udp`, `_sip._tcp`, ...) to try, in order:
/// a domain's SRV records, or its A/AAAA records on `default_port` when it has none.
pub async fn service_candidates(
    target: &Target,
    service: &str,
    default_port: u16,
    resolver: &TokioResolver,
    seed: u64,
) -> anyhow::Result<Vec<Candidate>> {
    match target {
        Target::Address(a) => Ok(vec![Candidate {
            address: *a,
            source: "given".into(),
        }]),
        Target::HostPort(host, port) => {
            addresses(resolver, host, *port, format!("A/AAAA {host}")).await
        }
        Target::Domain(domain) => {
            let srv_name = format!("{service}.{}.", domain.trim_end_matches('.'));
            match srv_candidates(&srv_name, resolver, seed).await? {
                Some(found) => Ok(found),
                None => {
                    addresses(
                        resolver,
                        domain,
                        default_port,
                        format!("A/AAAA {domain} (no {srv_name} SRV records)"),
                    )
                    .await
                }
            }
        }
    }
}

/// The servers `srv_name`'s SRV records name, in RFC 2782's order; `None` when it has none.
async fn srv_candidates(
    srv_name: &str,
    resolver: &TokioResolver,
    seed: u64,
) -> anyhow::Result<Option<Vec<Candidate>>> {
    let records: Vec<SrvRecord> = match resolver.srv_lookup(srv_name).await {
        Ok(lookup) => lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(srv) => Some(SrvRecord {
                    priority: srv.priority,
                    weight: srv.weight,
                    port: srv.port,
                    target: srv.target.to_string(),
                }),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    // RFC 2782: a single record with target "." means "no such service here".
    if records.len() == 1 && records[0].target == "." {
        let what = match srv_name.split('.').next().unwrap_or("") {
            "_stun" | "_stuns" => "STUN",
            "_sip" | "_sips" => "SIP",
            _ => "such",
        };
        bail!("{srv_name}: the domain says it offers no {what} service");
    }
    if records.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for r in srv_order(records, seed) {
        let via = format!(
            "SRV {srv_name} → {}:{}",
            r.target.trim_end_matches('.'),
            r.port
        );
        // A target that does not resolve is skipped; the next one may.
        if let Ok(found) = addresses(resolver, &r.target, r.port, via).await {
            out.extend(found);
        }
    }
    if out.is_empty() {
        bail!("{srv_name}: no SRV target resolves to an address");
    }
    Ok(Some(out))
}

/// The SIP transports a domain's NAPTR records offer (RFC 3263 §4.1: `SIP+D2U`, `SIP+D2T`,
/// `SIPS+D2T` with flag `s`), each with the servers of the SRV name it replaces to, in NAPTR
/// order; empty when it has no such records (then SRV, RFC 3263 §4.1's fallback).
pub async fn naptr_sip(
    domain: &str,
    resolver: &TokioResolver,
    seed: u64,
) -> Vec<(&'static str, Vec<Candidate>)> {
    let name = format!("{}.", domain.trim_end_matches('.'));
    let Ok(lookup) = resolver
        .lookup(
            name.as_str(),
            hickory_resolver::proto::rr::RecordType::NAPTR,
        )
        .await
    else {
        return Vec::new();
    };
    let mut rules: Vec<(u16, u16, &'static str, String)> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::NAPTR(n) if n.flags.eq_ignore_ascii_case(b"s") => {
                let transport = match n.services.to_ascii_uppercase().as_slice() {
                    b"SIP+D2U" => "udp",
                    b"SIP+D2T" => "tcp",
                    b"SIPS+D2T" => "tls",
                    _ => return None,
                };
                Some((n.order, n.preference, transport, n.replacement.to_string()))
            }
            _ => None,
        })
        .collect();
    rules.sort();
    let mut out: Vec<(&'static str, Vec<Candidate>)> = Vec::new();
    for (_, _, transport, srv_name) in rules {
        if out.iter().any(|(t, _)| *t == transport) {
            continue;
        }
        if let Ok(Some(found)) = srv_candidates(&srv_name, resolver, seed).await {
            let found = found
                .into_iter()
                .map(|c| Candidate {
                    address: c.address,
                    source: format!("NAPTR {} → {}", name.trim_end_matches('.'), c.source),
                })
                .collect();
            out.push((transport, found));
        }
    }
    out
}

async fn addresses(
    resolver: &TokioResolver,
    host: &str,
    port: u16,
    via: String,
) -> anyhow::Result<Vec<Candidate>> {
    let ips = resolver
        .lookup_ip(host)
        .await
        .with_context(|| format!("{host}: no address found"))?;
    let out: Vec<Candidate> = ips
        .iter()
        .map(|ip| Candidate {
            address: SocketAddr::new(ip, port),
            source: via.clone(),
        })
        .collect();
    if out.is_empty() {
        bail!("{host}: no address found");
    }
    Ok(out)
}

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// Lower is tried first.
    pub priority: u16,
    /// Among equal priorities, the share of selections.
    pub weight: u16,
    /// The server's port.
    pub port: u16,
    /// The server's name.
    pub target: String,
}

/// Orders SRV records as RFC 2782 says: ascending priority; within a priority, a random order
/// in which each record's chance of coming next is its share of the weights.
pub fn srv_order(mut records: Vec<SrvRecord>, seed: u64) -> Vec<SrvRecord> {
    let mut rng = SplitMix64(seed);
    records.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let same = rest
            .iter()
            .take_while(|r| r.priority == first.priority)
            .count();
        let (group, tail) = rest.split_at(same);
        let mut group: Vec<SrvRecord> = group.to_vec();
        // Weighted without replacement, each pick in proportion to weight. RFC 2782's own
        // recipe (a number in [0, sum], zero weights first) skews toward the first record;
        // here zero-weight records simply come after the weighted ones, in random order.
        while !group.is_empty() {
            let total: u64 = group.iter().map(|r| u64::from(r.weight)).sum();
            let i = if total == 0 {
                (rng.next() % group.len() as u64) as usize
            } else {
                let pick = rng.next() % total;
                let mut sum = 0u64;
                group
                    .iter()
                    .position(|r| {
                        sum += u64::from(r.weight);
                        sum > pick
                    })
                    .unwrap_or(0)
            };
            out.push(group.remove(i));
        }
        rest = tail;
    }
    out
}

/// A tiny seedable generator: enough to spread clients over SRV weights.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A `--dns` value: `IP` (port 53) or `IP:port`.
pub fn parse_server(s: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let ip: IpAddr = s
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .with_context(|| format!("--dns {s:?}: expected IP or IP:port"))?;
    Ok(SocketAddr::new(ip, 53))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(priority: u16, weight: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port: 3478,
            target: target.into(),
        }
    }

    #[test]
    fn targets_parse_as_users_type_them() {
        let a = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert_eq!(
            Target::parse("192.0.2.1").expect("ok"),
            Target::Address(a("192.0.2.1:3478"))
        );
        assert_eq!(
            Target::parse("192.0.2.1:3479").expect("ok"),
            Target::Address(a("192.0.2.1:3479"))
        );
        assert_eq!(
            Target::parse("2001:db8::1").expect("ok"),
            Target::Address(a("[2001:db8::1]:3478"))
        );
        assert_eq!(
            Target::parse("[2001:db8::1]:5").expect("ok"),
            Target::Address(a("[2001:db8::1]:5"))
        );
        assert_eq!(
            Target::parse("stun.example.test:3479").expect("ok"),
            Target::HostPort("stun.example.test".into(), 3479)
        );
        assert_eq!(
            Target::parse("example.test").expect("ok"),
            Target::Domain("example.test".into())
        );
        assert!(Target::parse("example.test:port").is_err());
        assert!(Target::parse("bad name!").is_err());
        assert!(Target::parse("").is_err());
    }

    #[test]
    fn srv_priority_comes_first() {
        let order = srv_order(vec![rec(20, 100, "c"), rec(10, 0, "a"), rec(10, 0, "b")], 7);
        assert_eq!(order.last().expect("three").target, "c");
    }

    #[test]
    fn zero_weight_records_come_after_weighted_ones() {
        for seed in 0..200 {
            let order = srv_order(vec![rec(10, 0, "zero"), rec(10, 5, "five")], seed);
            assert_eq!(order[0].target, "five");
            assert_eq!(order[1].target, "zero");
        }
    }

    #[test]
    fn srv_weights_share_the_first_place() {
        let mut first_heavy = 0;
        for seed in 0..2000 {
            let order = srv_order(vec![rec(10, 1, "light"), rec(10, 3, "heavy")], seed);
            assert_eq!(order.len(), 2);
            if order[0].target == "heavy" {
                first_heavy += 1;
            }
        }
        // Expected 3/4 of 2000; allow a wide margin.
        assert!((1300..1700).contains(&first_heavy), "{first_heavy}");
    }
}
