//! Two nodes sharing a store: node B, asked for a user whose flow node A holds, sends the
//! request to A with a Route naming A and the flow's token (the nodes share the token key),
//! and A sends it down the flow; a phone instance B holds a flow of is reached over B's own.

mod sim;

use farside_sip::nat::{NatTests, Transport};
use farside_sip::registrar::{Binding, Flow};
use farside_sip::server::SipServer;
use farside_time::Timestamp;
use sim::{DOMAIN, SERVER, T0, addr, config, server};

/// Node A's address (node B is [`SERVER`]).
const NODE_A: &str = "192.0.2.20:5060";
const BOB: &str = "198.51.100.5:5060";

/// alice's binding over a TCP flow to node A, phone instance `instance`.
fn alice_at_a(instance: &str, remote: &str) -> Binding {
    Binding {
        contact: format!("sip:alice@{remote};transport=tcp;ob"),
        flow: Flow {
            transport: Transport::Tcp,
            local: addr(NODE_A),
            remote: addr(remote),
        },
        expires_at: T0 + std::time::Duration::from_secs(600),
        instance: Some(format!("\"<urn:uuid:{instance}>\"")),
        reg_id: Some(1),
        call_id: "reg-a".into(),
        cseq: 1,
        path: Vec::new(),
        nat: NatTests(0),
        keepalive_failures: 0,
    }
}

/// The node at `me`, listening there over UDP and TCP.
fn node(me: &str) -> SipServer {
    let mut cfg = config(None);
    cfg.listeners = vec![(addr(me), Transport::Udp), (addr(me), Transport::Tcp)];
    server(cfg, 1)
}

/// bob's INVITE for alice (call `call_id`), sent to `to`; what the node sends on (after its
/// 100 Trying).
fn invite_alice(
    s: &mut SipServer,
    to: &str,
    now: Timestamp,
    call_id: &str,
) -> Vec<farside_sip::Transmit> {
    let invite = format!(
        "INVITE sip:alice@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {BOB};branch=z9hG4bK-{call_id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bob@{DOMAIN}>;tag=b1\r\nTo: <sip:alice@{DOMAIN}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@{BOB}>\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes();
    let from_bob = Flow {
        transport: Transport::Udp,
        local: addr(to),
        remote: addr(BOB),
    };
    s.handle_input(now, from_bob, &invite);
    std::iter::from_fn(|| s.poll_transmit())
        .filter(|t| !t.bytes.starts_with(b"SIP/2.0 100 "))
        .collect()
}

#[test]
fn a_call_at_node_b_for_a_phone_on_node_a_goes_through_a_down_its_flow() {
    let mut b = node(SERVER);
    b.set_bindings_elsewhere(vec![(
        format!("sip:alice@{DOMAIN}"),
        vec![alice_at_a("1", "203.0.113.9:41000")],
    )]);
    let out = invite_alice(&mut b, SERVER, T0, "call-1");
    assert_eq!(out.len(), 1, "one branch");
    let to_a = &out[0];
    assert_eq!(
        (to_a.transport, to_a.from, to_a.to),
        (Transport::Udp, addr(SERVER), addr(NODE_A))
    );
    let text = String::from_utf8_lossy(&to_a.bytes).into_owned();
    assert!(
        text.starts_with("INVITE sip:alice@203.0.113.9:41000;transport=tcp;ob SIP/2.0\r\n"),
        "{text}"
    );
    let route = text
        .lines()
        .find(|l| l.starts_with("Route: "))
        .expect("a Route naming node A");
    assert!(route.ends_with(&format!("@{NODE_A};lr>")), "{route}");

    // Node A: alice's flow restored from the store; B's request goes down it.
    let mut a = node(NODE_A);
    a.restore(
        format!("sip:alice@{DOMAIN}"),
        vec![alice_at_a("1", "203.0.113.9:41000")],
    );
    let from_b = Flow {
        transport: Transport::Udp,
        local: addr(NODE_A),
        remote: addr(SERVER),
    };
    a.handle_input(T0, from_b, &to_a.bytes);
    let sent: Vec<_> = std::iter::from_fn(|| a.poll_transmit())
        .filter(|t| !t.bytes.starts_with(b"SIP/2.0 100 "))
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        (sent[0].transport, sent[0].from, sent[0].to),
        (Transport::Tcp, addr(NODE_A), addr("203.0.113.9:41000")),
        "down alice's flow"
    );
    assert!(
        sent[0]
            .bytes
            .starts_with(b"INVITE sip:alice@203.0.113.9:41000;transport=tcp;ob ")
    );
}

/// A phone registered through both nodes (RFC 5626: one instance, a flow to each): node B
/// reaches it over its own flow, not through A, so a call still reaches it when A is gone.
#[test]
fn a_phone_with_a_flow_to_each_node_is_reached_over_the_nodes_own() {
    let mut b = node(SERVER);
    b.set_bindings_elsewhere(vec![(
        format!("sip:alice@{DOMAIN}"),
        vec![alice_at_a("1", "203.0.113.9:41000")],
    )]);
    let mut own = alice_at_a("1", "203.0.113.9:41001");
    own.flow.local = addr(SERVER);
    own.reg_id = Some(2);
    b.restore(format!("sip:alice@{DOMAIN}"), vec![own]);
    let out = invite_alice(&mut b, SERVER, T0, "call-2");
    assert_eq!(out.len(), 1, "one branch: the instance's flow to this node");
    assert_eq!(
        (out[0].transport, out[0].to),
        (Transport::Tcp, addr("203.0.113.9:41001"))
    );
    // Another phone of alice's, held by A only, is still forked to through A.
    b.set_bindings_elsewhere(vec![(
        format!("sip:alice@{DOMAIN}"),
        vec![
            alice_at_a("1", "203.0.113.9:41000"),
            alice_at_a("2", "203.0.113.9:41002"),
        ],
    )]);
    let out = invite_alice(&mut b, SERVER, T0, "call-3");
    let to: Vec<_> = out.iter().map(|t| t.to).collect();
    assert_eq!(to, [addr("203.0.113.9:41001"), addr(NODE_A)], "{to:?}");
}
