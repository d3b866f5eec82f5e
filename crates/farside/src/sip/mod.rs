//! The SIP shell: the thread that owns the SIP sockets and connections and drives the cores of
//! `farside-sip`.

mod streams;
pub mod thread;
