//! The media shell: the thread that owns the ng control sockets and the relay's port pairs and
//! drives `farside_media::relay::Relay` through `farside_media::control`.

pub mod link;
mod ports;
mod thread;

pub use thread::{MediaShell, spawn};
