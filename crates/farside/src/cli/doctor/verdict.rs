//! The verdict on what `farside doctor` found: problems and advice in plain words, and the exit
//! status. Pure: the checks fill the report, this reads it.

use super::report::{Report, Verdict};

/// Exit status: all is well.
pub const EXIT_OK: u8 = 0;
/// Exit status: the target or an argument is wrong, or DNS found no server.
pub const EXIT_USAGE: u8 = 2;
/// Exit status: problems a user can fix were found (a SIP ALG, a short binding lifetime, UDP
/// blocked, a relay losing audio).
pub const EXIT_PROBLEMS: u8 = 3;
/// Exit status: the SIP server answered over no transport.
pub const EXIT_UNREACHABLE: u8 = 4;
/// Exit status: the registration with the given credentials failed.
pub const EXIT_NOT_REGISTERED: u8 = 5;

/// An idle UDP binding that dies within this long is short: phones that refresh their
/// registration or send keep-alives less often than every 30 s (many) lose their calls.
pub const SHORT_LIFETIME_S: u64 = 25;

/// Audio through the relay losing this share or more is a problem (1 %).
const LOSS_PROBLEM_PERCENT: f64 = 1.0;

/// The verdict on `r`.
pub fn verdict(r: &Report) -> Verdict {
    let mut v = Verdict::default();
    let unreachable = !r.sip.is_empty() && r.sip.iter().all(|p| !p.reachable);
    if unreachable {
        v.problems
            .push("the SIP server answered over no transport (UDP, TCP, TLS)".into());
        v.advice.push(
            "check the server's address, and that your network lets SIP out (ports 5060 and 5061)"
                .into(),
        );
    } else if r.sip.iter().any(|p| p.transport == "udp" && !p.reachable) {
        v.problems
            .push("SIP over UDP gets no answer, though the server answers over TCP or TLS".into());
        v.advice
            .push("set your phone to use TCP or TLS for SIP".into());
    }
    for p in r.sip.iter().filter(|p| p.alg) {
        let mut fields: Vec<&str> = Vec::new();
        for c in &p.changes {
            if !fields.contains(&c.field.as_str()) {
                fields.push(&c.field);
            }
        }
        v.problems.push(format!(
            "a SIP ALG on your router rewrites SIP over {} ({} changed on the way)",
            p.transport.to_uppercase(),
            fields.join(", ")
        ));
    }
    if r.sip.iter().any(|p| p.alg) {
        let mut advice =
            "disable SIP ALG (also called SIP helper or SIP fixup) on your router".to_string();
        if r.sip
            .iter()
            .any(|p| p.transport == "tls" && p.reachable && !p.alg)
        {
            advice.push_str(", or use TLS for SIP: the router cannot read it");
        }
        v.advice.push(advice);
    }
    if let Some(n) = &r.nat {
        if !n.reachable {
            v.problems
                .push("STUN got no answer: UDP to the server's STUN port is blocked".into());
        }
        match (n.lifetime_at_least_s, n.lifetime_less_than_s) {
            (lo, Some(hi)) if hi <= SHORT_LIFETIME_S => {
                let every = keepalive_interval(lo.unwrap_or(0));
                v.problems.push(format!(
                    "your router forgets an idle UDP mapping within {hi} s: calls to your phone stop arriving"
                ));
                v.advice.push(format!(
                    "register or send keep-alives at most every {every} s (or use TCP or TLS)"
                ));
            }
            (Some(lo), _) if lo > 0 => v.advice.push(format!(
                "keep-alives at most every {} s keep your router's UDP mapping open",
                keepalive_interval(lo)
            )),
            _ => {}
        }
        let dependent =
            |b: &Option<String>| b.as_deref().is_some_and(|b| b != "endpoint-independent");
        if dependent(&n.mapping) {
            v.advice.push(format!(
                "needs TURN: your NAT's mapping is {} (a new public port for each peer), so direct media with other NATed phones fails; use the server's RTP relay or TURN",
                n.mapping.as_deref().unwrap_or("")
            ));
        }
    }
    if let Some(reg) = &r.registration {
        if reg.stale_loop {
            v.problems.push(
                "the server challenges again and again with stale=true (a router rewriting SIP, or a clock far off)"
                    .into(),
            );
        }
        if !reg.registered {
            v.problems.push(format!(
                "the registration of {} failed: {}",
                reg.aor,
                reg.error.as_deref().unwrap_or("refused")
            ));
            v.advice.push(
                "check the user name and password; ask your provider if they are right".into(),
            );
        }
    }
    for t in r.turn.iter().filter(|t| !t.allocated) {
        v.problems.push(format!(
            "TURN over {} gave no allocation: {}",
            t.transport.to_uppercase(),
            t.error.as_deref().unwrap_or("refused")
        ));
    }
    for a in r
        .audio
        .iter()
        .chain(&r.rtp_relay_audio)
        .chain(&r.direct_audio)
    {
        if a.loss_percent >= LOSS_PROBLEM_PERCENT {
            v.problems.push(format!(
                "audio over the {} lost {:.1} % of its packets (MOS {:.2})",
                a.path, a.loss_percent, a.mos
            ));
        }
    }
    v.ok = v.problems.is_empty();
    // The worst thing found names the exit status: no server, then no registration, then the
    // rest.
    let unregistered = r.registration.as_ref().is_some_and(|reg| !reg.registered);
    v.exit_code = if unreachable {
        EXIT_UNREACHABLE
    } else if unregistered {
        EXIT_NOT_REGISTERED
    } else if !v.ok {
        EXIT_PROBLEMS
    } else {
        EXIT_OK
    };
    v
}

/// How often to refresh a mapping that lived `lived` seconds idle: 5 s short of it above 20 s,
/// two thirds of it below, 10 s when only its upper bound is known.
fn keepalive_interval(lived: u64) -> u64 {
    match lived {
        0 => 10,
        1..=20 => (lived * 2 / 3).max(1),
        _ => lived - 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::doctor::report::{Audio, Change, Nat, Registration, SipPath};

    fn path(transport: &str, reachable: bool, alg: bool) -> SipPath {
        SipPath {
            transport: transport.into(),
            reachable,
            alg,
            changes: alg
                .then(|| Change {
                    field: "Via".into(),
                    sent: Some("Via: SIP/2.0/UDP 192.168.6.10:5070".into()),
                    arrived: Some("Via: SIP/2.0/UDP 198.51.100.16:5070".into()),
                })
                .into_iter()
                .collect(),
            ..SipPath::default()
        }
    }

    fn nat(mapping: &str, lived: Option<u64>, died: Option<u64>) -> Nat {
        Nat {
            reachable: true,
            mapping: Some(mapping.into()),
            filtering: Some("address-and-port-dependent".into()),
            lifetime_at_least_s: lived,
            lifetime_less_than_s: died,
            ..Nat::default()
        }
    }

    #[test]
    fn a_clean_path_behind_a_cone_nat_is_all_well() {
        let r = Report {
            sip: vec![path("udp", true, false), path("tcp", true, false)],
            nat: Some(nat("endpoint-independent", Some(25), None)),
            ..Report::default()
        };
        let v = verdict(&r);
        assert!(v.ok, "{v:?}");
        assert_eq!(v.exit_code, EXIT_OK);
        assert_eq!(
            v.advice,
            ["keep-alives at most every 20 s keep your router's UDP mapping open"]
        );
    }

    #[test]
    fn an_alg_a_short_lifetime_and_a_symmetric_nat_are_each_named() {
        let r = Report {
            sip: vec![path("udp", true, true), path("tls", true, false)],
            nat: Some(nat("address-and-port-dependent", None, Some(25))),
            ..Report::default()
        };
        let v = verdict(&r);
        assert_eq!(v.exit_code, EXIT_PROBLEMS);
        assert_eq!(
            v.problems,
            [
                "a SIP ALG on your router rewrites SIP over UDP (Via changed on the way)",
                "your router forgets an idle UDP mapping within 25 s: calls to your phone stop arriving"
            ]
        );
        assert!(v.advice[0].starts_with("disable SIP ALG") && v.advice[0].contains("use TLS"));
        assert_eq!(
            v.advice[1],
            "register or send keep-alives at most every 10 s (or use TCP or TLS)"
        );
        assert!(v.advice[2].starts_with("needs TURN"), "{v:?}");
    }

    #[test]
    fn unreachable_beats_unregistered_beats_problems() {
        let mut r = Report {
            sip: vec![path("udp", false, false), path("tcp", true, false)],
            registration: Some(Registration {
                aor: "sip:alice@example.org".into(),
                error: Some("403 Forbidden".into()),
                ..Registration::default()
            }),
            audio: Some(Audio {
                loss_percent: 2.0,
                ..Audio::default()
            }),
            ..Report::default()
        };
        assert_eq!(verdict(&r).exit_code, EXIT_NOT_REGISTERED);
        r.sip[1].reachable = false;
        assert_eq!(verdict(&r).exit_code, EXIT_UNREACHABLE);
        r.registration = None;
        r.sip[1].reachable = true;
        let v = verdict(&r);
        assert_eq!(v.exit_code, EXIT_PROBLEMS);
        assert!(v.problems.iter().any(|p| p.contains("lost 2.0 %")), "{v:?}");
    }
}
