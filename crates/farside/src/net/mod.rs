//! Shared networking that no protocol owns: binding listeners, sending UDP batches, TLS
//! configuration, its reload and its reads.

pub mod bind;
pub mod stream;
pub mod tls_config;
pub mod tls_io;
pub mod tls_reload;
pub mod udp;
