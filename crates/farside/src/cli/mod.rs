//! The commands besides `farside serve`: `probe`, `user` and `secret`.

mod dns;
pub mod probe;
pub mod store;
