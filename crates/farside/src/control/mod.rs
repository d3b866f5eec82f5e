//! The control plane: the admin HTTP endpoint and the credentials every protocol shell reads.

pub mod admin;
pub mod credentials;
pub mod reload;
