//! The SIP shell: the thread that owns the SIP sockets and connections and drives
//! `farside_sip::server::SipServer`, and the store writer that keeps its registrations.

mod registrations;
mod thread;

pub use thread::{SipSettings, SipShell, spawn};
