//! The control plane: the admin HTTP endpoint and its JSON API, the credentials every protocol
//! shell reads, reload, draining TURN, and what the API sees of sessions.

pub mod admin;
pub mod api;
pub mod credentials;
pub mod dashboard;
pub mod drain;
pub mod reload;
pub mod sessions;
pub mod token;
pub mod users;
