//! Farside's store: who may use the relay (and, later, register SIP phones).
//!
//! Users are kept as their two long-term keys (RFC 8489 §9.2.2: `MD5(user:realm:password)`
//! and its SHA-256 twin), never as passwords; the same MD5 key is a SIP digest HA1. Shared
//! secrets serve coturn-style ephemeral credentials. Every write bumps a generation number, so
//! a running server polls one integer and reloads only after a change; the data plane works
//! from an in-memory snapshot ([`Snapshot`]) and never queries the database per packet.
//!
//! [`Store`] is the interface; [`SqliteStore`] the default implementation (one file),
//! [`PostgresStore`] the one several nodes share.

mod postgres;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Longest username or realm, bytes.
pub const MAX_NAME: usize = 256;
/// Longest password, bytes.
pub const MAX_PASSWORD: usize = 1024;
/// Shortest and longest shared secret, bytes.
pub const SECRET_LEN: std::ops::RangeInclusive<usize> = 16..=1024;

/// A store error, one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no store this build can open.
    #[error("{0}")]
    Url(String),
    /// A value that cannot be stored.
    #[error("{0}")]
    Invalid(String),
    /// The user exists already.
    #[error(
        "user {name} already exists in realm {realm} (use `farside user passwd` to change the password)"
    )]
    Exists {
        /// Realm.
        realm: String,
        /// Username.
        name: String,
    },
    /// The user or secret does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The store could not be opened (its directory, its file, or its schema).
    #[error("{}: {reason}", path.display())]
    Open {
        /// The file.
        path: std::path::PathBuf,
        /// Why, one line.
        reason: String,
    },
    /// The database server could not be reached or refused us (its URL without the password).
    #[error("{url}: {reason}")]
    Server {
        /// The URL, password removed.
        url: String,
        /// Why, one line.
        reason: String,
    },
    /// The database failed.
    #[error("store: {0}")]
    Database(#[from] rusqlite::Error),
    /// The PostgreSQL database failed.
    #[error("store: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// The file or its directory could not be made.
    #[error("store: {0}")]
    Io(#[from] std::io::Error),
}

/// A user as listed (no keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    /// Realm.
    pub realm: String,
    /// Username.
    pub name: String,
    /// When added, Unix seconds.
    pub created: i64,
}

/// A shared secret as listed (masked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRow {
    /// Its id, for `farside secret remove`.
    pub id: i64,
    /// The first 4 characters and an ellipsis.
    pub masked: String,
    /// When added, Unix seconds.
    pub created: i64,
}

/// A user's keys, as the server needs them.
#[derive(Clone, PartialEq, Eq)]
pub struct UserKeys {
    /// Realm.
    pub realm: String,
    /// Username.
    pub name: String,
    /// `MD5(user:realm:password)`.
    pub md5: [u8; 16],
    /// `SHA-256(user:realm:password)`.
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for UserKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserKeys({}@{})", self.name, self.realm)
    }
}

/// Everything the server loads, at one generation.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The generation it was read at.
    pub generation: u64,
    /// Users.
    pub users: Vec<UserKeys>,
    /// Shared secrets.
    pub secrets: Vec<String>,
}

/// One registered contact, as the SIP registrar keeps it (the store does not interpret it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationRow {
    /// The address of record, `sip:user@domain`.
    pub aor: String,
    /// The Contact URI as the phone sent it.
    pub contact: String,
    /// The flow: transport name, Farside's address, the source address.
    pub transport: String,
    /// Farside's side of the flow, `ip:port`.
    pub local: String,
    /// The phone's side (its NAT's public address), `ip:port`.
    pub remote: String,
    /// Unix seconds when it lapses.
    pub expires_at: i64,
    /// `+sip.instance`.
    pub instance: Option<String>,
    /// `reg-id`.
    pub reg_id: Option<i64>,
    /// The REGISTER's Call-ID.
    pub call_id: String,
    /// Its CSeq number.
    pub cseq: i64,
    /// Path values, one per line.
    pub path: String,
    /// The NAT tests that fired (bits).
    pub nat: i64,
    /// Keep-alive pings it missed in a row (its keep-alive state).
    pub keepalive_failures: i64,
    /// The node that holds its flow (`store.node`; empty in rows from before nodes were
    /// recorded). Set by [`Store::save_registrations`]'s `node`, whatever the row says.
    pub node: String,
}

/// The store's operations.
pub trait Store: Send {
    /// Adds a user; [`StoreError::Exists`] if it exists.
    fn add_user(&mut self, realm: &str, name: &str, password: &str) -> Result<(), StoreError>;
    /// Changes a user's password.
    fn set_password(&mut self, realm: &str, name: &str, password: &str) -> Result<(), StoreError>;
    /// Removes a user.
    fn remove_user(&mut self, realm: &str, name: &str) -> Result<(), StoreError>;
    /// Users, of one realm or all, by realm and name.
    fn list_users(&mut self, realm: Option<&str>) -> Result<Vec<UserRow>, StoreError>;
    /// Adds a shared secret; returns its id.
    fn add_secret(&mut self, secret: &str) -> Result<i64, StoreError>;
    /// Shared secrets, masked.
    fn list_secrets(&mut self) -> Result<Vec<SecretRow>, StoreError>;
    /// Removes a shared secret.
    fn remove_secret(&mut self, id: i64) -> Result<(), StoreError>;
    /// The generation: changes after every write.
    fn generation(&mut self) -> Result<u64, StoreError>;
    /// Waits up to `limit` for a write that may have changed the generation (by any
    /// connection, on any node), so a watcher polling [`Store::generation`] can poll at once
    /// rather than on its next tick. Returns early only where the backend can tell
    /// (PostgreSQL's LISTEN/NOTIFY); by default it just waits.
    fn wait_for_change(&mut self, limit: std::time::Duration) {
        std::thread::sleep(limit);
    }
    /// Everything the server needs, in one read.
    fn load(&mut self) -> Result<Snapshot, StoreError>;
    /// Replaces the registrations of `aor` that `node` holds with `rows` (none: that node
    /// holds no binding of it any more); other nodes' rows of `aor` stay. Does not change the
    /// generation: credentials are not reread for it.
    fn save_registrations(
        &mut self,
        node: &str,
        aor: &str,
        rows: &[RegistrationRow],
    ) -> Result<(), StoreError>;
    /// Several [`Store::save_registrations`] of one node at once (one transaction where the
    /// store has them), in order.
    fn save_registrations_many(
        &mut self,
        node: &str,
        changes: &[(String, Vec<RegistrationRow>)],
    ) -> Result<(), StoreError> {
        for (aor, rows) in changes {
            self.save_registrations(node, aor, rows)?;
        }
        Ok(())
    }
    /// Every registration that has not lapsed at `now` (Unix seconds), of every node.
    fn load_registrations(&mut self, now: i64) -> Result<Vec<RegistrationRow>, StoreError>;
    /// The server key named `name`: `fresh` is kept under that name on first use and the
    /// kept key is returned ever after, so what it signs (SIP flow tokens in a registrar's
    /// Paths) stays valid across restarts.
    fn server_key(&mut self, name: &str, fresh: [u8; 32]) -> Result<[u8; 32], StoreError>;
    /// The dashboard's password hash (a PHC string), if one was set.
    fn admin_password(&mut self) -> Result<Option<String>, StoreError>;
    /// Sets the dashboard's password hash (a PHC string).
    fn set_admin_password(&mut self, hash: &str) -> Result<(), StoreError>;
}

/// Opens the store `url` names: `sqlite://PATH` (created with its directory if missing) or
/// `postgres://user:password@host:port/database` (its schema created or brought up to date).
pub fn open(url: &str) -> Result<Box<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(StoreError::Url(
                "sqlite:// without a file path (expected sqlite://PATH)".into(),
            ));
        }
        return Ok(Box::new(SqliteStore::open(std::path::Path::new(path))?));
    }
    // Name the scheme only: a database URL may carry a password.
    let scheme = url.split_once("://").map_or("no scheme", |(s, _)| s);
    if matches!(scheme, "postgres" | "postgresql") {
        return Ok(Box::new(PostgresStore::open(url)?));
    }
    Err(StoreError::Url(format!(
        "{scheme}: expected sqlite://PATH or postgres://user:password@host/database"
    )))
}

/// `url` fit to show: a password in it (`user:password@`, `password=...`) replaced by `***`.
pub fn redact(url: &str) -> String {
    let mut shown = match url.split_once("://") {
        Some((scheme, rest)) => {
            // The authority ends at the first '/', '?' or '#'; its userinfo at the last '@'.
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
                    None => url.to_owned(),
                },
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    };
    // A password given as a parameter (`?password=...&...`, or in a key=value string).
    let mut from = 0;
    while let Some(at) = shown[from..].find("password=").map(|i| from + i) {
        let start = at + "password=".len();
        let end = shown[start..]
            .find(['&', ' '])
            .map_or(shown.len(), |i| start + i);
        shown.replace_range(start..end, "***");
        from = start + 3;
    }
    shown
}

/// The keys of a new user, once its name, realm and password pass every check.
pub(crate) fn new_user_keys(
    realm: &str,
    name: &str,
    password: &str,
) -> Result<([u8; 16], [u8; 32]), StoreError> {
    check_username(name)?;
    check_name("realm", realm)?;
    keys(realm, name, password)
}

/// A shared secret the store takes: [`SECRET_LEN`] bytes.
pub(crate) fn check_secret(secret: &str) -> Result<(), StoreError> {
    if SECRET_LEN.contains(&secret.len()) {
        return Ok(());
    }
    Err(StoreError::Invalid(format!(
        "a shared secret must be {} to {} bytes (try `farside secret add --generate`)",
        SECRET_LEN.start(),
        SECRET_LEN.end()
    )))
}

/// A dashboard password hash the store takes: 1 to 1024 bytes.
pub(crate) fn check_admin_hash(hash: &str) -> Result<(), StoreError> {
    if hash.is_empty() || hash.len() > 1024 {
        return Err(StoreError::Invalid(
            "a password hash of 1 to 1024 bytes".into(),
        ));
    }
    Ok(())
}

/// Unix seconds now, for the rows' `created` and `updated`.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A username a long-term user can have: a valid name that does not read as an ephemeral one.
pub(crate) fn check_username(name: &str) -> Result<(), StoreError> {
    check_name("username", name)?;
    if name.bytes().all(|b| b.is_ascii_digit()) {
        // An ephemeral (REST) username is `expiry[:user]`: with a shared secret configured,
        // the relay would take a name of digits for an expiry time and never check its keys.
        return Err(StoreError::Invalid(format!(
            "username {name:?} is all digits, which reads as the expiry time of an ephemeral (REST) username"
        )));
    }
    Ok(())
}

/// Whether `realm` can hold users (the rule `add_user` applies): checked before a command
/// writes in several realms, so that it writes in all or none.
pub fn check_realm(realm: &str) -> Result<(), StoreError> {
    check_name("realm", realm)
}

pub(crate) fn check_name(what: &str, s: &str) -> Result<(), StoreError> {
    if s.is_empty() || s.len() > MAX_NAME {
        return Err(StoreError::Invalid(format!(
            "{what} must be 1 to {MAX_NAME} bytes"
        )));
    }
    if s.contains(':') {
        // The long-term key joins user:realm:password, and ephemeral usernames use ':'.
        return Err(StoreError::Invalid(format!(
            "{what} {s:?} must not contain ':'"
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(())
}

pub(crate) fn keys(
    realm: &str,
    name: &str,
    password: &str,
) -> Result<([u8; 16], [u8; 32]), StoreError> {
    if password.is_empty() || password.len() > MAX_PASSWORD {
        return Err(StoreError::Invalid(format!(
            "password must be 1 to {MAX_PASSWORD} bytes"
        )));
    }
    // Both keys put realm and password through OpaqueString (RFC 8489 §9.2.2); check each
    // alone first so the message says which one a client could never match.
    farside_stun::opaque_string(realm).map_err(|e| {
        StoreError::Invalid(format!(
            "realm {realm:?} is not allowed by RFC 8265 OpaqueString: {e}"
        ))
    })?;
    farside_stun::opaque_string(password).map_err(|e| {
        StoreError::Invalid(format!(
            "password not allowed by RFC 8265 OpaqueString (no control characters or unassigned code points): {e}"
        ))
    })?;
    let bad = |e: farside_stun::PasswordError| {
        StoreError::Invalid(format!(
            "password or realm not allowed by RFC 8265 OpaqueString: {e}"
        ))
    };
    Ok((
        farside_stun::long_term_key_md5(name, realm, password).map_err(bad)?,
        farside_stun::long_term_key_sha256(name, realm, password).map_err(bad)?,
    ))
}
