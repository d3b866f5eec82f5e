//! Users and shared secrets as the dashboard and the API change them (`farside user` and
//! `farside secret` do the same from a shell). The running server picks every change up from
//! the store within a second (S306). Blocking (the store): call off the async workers.

use farside_store::{SecretRow, StoreError, UserRow};

/// Every user (by realm) and every shared secret (masked).
pub fn list(store_url: &str) -> Result<(Vec<UserRow>, Vec<SecretRow>), String> {
    let mut s = farside_store::open(store_url).map_err(|e| e.to_string())?;
    let users = s.list_users(None).map_err(|e| e.to_string())?;
    let secrets = s.list_secrets().map_err(|e| e.to_string())?;
    Ok((users, secrets))
}

/// Adds `name` with `password` in each of `realms` (TURN's and the registrar's); one already
/// there in a realm keeps its password there. An error if it was in every realm already.
pub fn add_user(
    store_url: &str,
    realms: &[String],
    name: &str,
    password: &str,
) -> Result<(), String> {
    let mut s = farside_store::open(store_url).map_err(|e| e.to_string())?;
    let mut added = 0;
    for realm in realms {
        match s.add_user(realm, name, password) {
            Ok(()) => added += 1,
            Err(StoreError::Exists { .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    if added == 0 {
        return Err(format!("user {name} exists"));
    }
    Ok(())
}

/// Removes `name` from every realm; how many it was in.
pub fn remove_user(store_url: &str, name: &str) -> Result<usize, String> {
    let mut s = farside_store::open(store_url).map_err(|e| e.to_string())?;
    let users = s.list_users(None).map_err(|e| e.to_string())?;
    let mut removed = 0;
    for u in users.iter().filter(|u| u.name == name) {
        s.remove_user(&u.realm, &u.name)
            .map_err(|e| e.to_string())?;
        removed += 1;
    }
    Ok(removed)
}

/// Adds `secret`, or a random 256-bit one (64 hex digits) when `None`; its id, and the
/// secret itself when it was made here (shown once).
pub fn add_secret(
    store_url: &str,
    secret: Option<String>,
) -> Result<(i64, Option<String>), String> {
    let made = match secret {
        Some(_) => None,
        None => {
            Some(crate::runtime::seed::random_hex().map_err(|e| format!("no randomness: {e}"))?)
        }
    };
    let value = secret.or_else(|| made.clone()).unwrap_or_default();
    let mut s = farside_store::open(store_url).map_err(|e| e.to_string())?;
    let id = s.add_secret(&value).map_err(|e| e.to_string())?;
    Ok((id, made))
}

/// Removes the shared secret `id`.
pub fn remove_secret(store_url: &str, id: i64) -> Result<(), String> {
    let mut s = farside_store::open(store_url).map_err(|e| e.to_string())?;
    s.remove_secret(id).map_err(|e| e.to_string())
}
