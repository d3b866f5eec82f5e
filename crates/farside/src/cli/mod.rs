//! The commands besides `farside serve`: `probe`, `doctor`, `user` and `secret`, and the admin API's
//! clients `status`, `sessions` and `reload`.

pub mod admin;
mod dns;
pub mod doctor;
pub mod probe;
pub mod store;
