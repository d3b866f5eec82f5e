//! The STUN and TURN data plane: one worker thread per core on the UDP sockets and the relay
//! sockets of its allocations; STUN and TURN over TCP and TLS, with RFC 6062's peer
//! connections, on a thread of their own.

pub mod relay_ports;
pub mod tcp;
pub mod turn;
pub mod udp;
