//! The commands besides `farside serve`: `probe`, `user` and `secret`, and the admin API's
//! clients `status`, `sessions` and `reload`.

pub mod admin;
mod dns;
pub mod probe;
pub mod store;
