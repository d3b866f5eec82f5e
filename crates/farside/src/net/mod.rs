//! Shared networking that no protocol owns: binding listeners, sending UDP batches, TLS
//! configuration, its reload and its reads, the client side SIP dials with, and a TLS listener
//! for the admin endpoint.

pub mod bind;
pub mod stream;
pub mod tls_client;
pub mod tls_config;
pub mod tls_io;
pub mod tls_listener;
pub mod tls_reload;
pub mod udp;
