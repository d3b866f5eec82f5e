//! Dashboard logins: the password, sessions, CSRF tokens and lockout.
//!
//! - The password's Argon2id hash lives in the store (`farside admin passwd`). Until one is
//!   set, a one-time password made at start is written (mode 0600) beside the store as
//!   `dashboard.password`, and the startup log names that file (as Jenkins' first-run
//!   password); a password set later wins at the next login.
//! - A login gives a session cookie (`HttpOnly`, `SameSite=Strict`, 12 h) and a CSRF token
//!   that every form carries; a POST without the session's token is refused.
//! - A source with [`MAX_FAILURES`] wrong passwords within [`LOCKOUT`] is refused, right
//!   password or not, until the window passes. Every refusal is counted
//!   (`farside_admin_login_failures_total`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::runtime::lock::lock;

/// Wrong passwords from one source before it is locked out.
pub const MAX_FAILURES: u32 = 5;
/// How long failures are remembered, and a lockout lasts.
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// How long a session lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions at once (the oldest goes first).
const MAX_SESSIONS: usize = 64;
/// Sources whose failures are remembered at once.
const MAX_TRACKED: usize = 4096;

/// A logged-in session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token its forms carry.
    pub csrf: String,
    started: Instant,
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The password is wrong.
    Wrong,
    /// Too many wrong passwords from this source lately.
    LockedOut,
}

/// The dashboard's logins.
#[derive(Debug)]
pub struct Auth {
    store_url: String,
    one_time: Option<String>,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Auth {
    /// Logins against the store at `store_url`; `one_time` is the first-run password, if the
    /// store had none at start.
    pub fn new(store_url: String, one_time: Option<String>) -> Auth {
        Auth {
            store_url,
            one_time,
            sessions: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// Checks `password` from `source`; a new session's cookie value on success. Blocking
    /// (Argon2 and the store): call off the async workers.
    pub fn login(&self, source: IpAddr, password: &str) -> Result<(String, Session), Refused> {
        let now = Instant::now();
        {
            let mut f = lock(&self.failures);
            if let Some(&(n, since)) = f.get(&source) {
                if now.duration_since(since) >= LOCKOUT {
                    f.remove(&source);
                } else if n >= MAX_FAILURES {
                    return Err(Refused::LockedOut);
                }
            }
        }
        if !self.password_ok(password) {
            let mut f = lock(&self.failures);
            if f.len() >= MAX_TRACKED {
                f.retain(|_, (_, since)| now.duration_since(*since) < LOCKOUT);
            }
            if f.len() < MAX_TRACKED || f.contains_key(&source) {
                f.entry(source).or_insert((0, now)).0 += 1;
            }
            return Err(Refused::Wrong);
        }
        lock(&self.failures).remove(&source);
        let session = Session {
            csrf: random_hex(),
            started: now,
        };
        let id = random_hex();
        let mut s = lock(&self.sessions);
        s.retain(|_, v| now.duration_since(v.started) < SESSION_LIFETIME);
        if s.len() >= MAX_SESSIONS
            && let Some(oldest) = s
                .iter()
                .min_by_key(|(_, v)| v.started)
                .map(|(k, _)| k.clone())
        {
            s.remove(&oldest);
        }
        s.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    /// The session a `Cookie` header names, if it is live.
    pub fn session(&self, cookie_header: Option<&str>) -> Option<Session> {
        let id = session_id(cookie_header?)?;
        let s = lock(&self.sessions);
        let session = s.get(id)?;
        (session.started.elapsed() < SESSION_LIFETIME).then(|| session.clone())
    }

    /// Ends the session a `Cookie` header names.
    pub fn logout(&self, cookie_header: Option<&str>) {
        if let Some(id) = cookie_header.and_then(session_id) {
            lock(&self.sessions).remove(id);
        }
    }

    fn password_ok(&self, password: &str) -> bool {
        let stored = farside_store::open(&self.store_url).and_then(|mut s| s.admin_password());
        match stored {
            Ok(Some(hash)) => PasswordHash::new(&hash).is_ok_and(|h| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            }),
            Ok(None) => self
                .one_time
                .as_deref()
                .is_some_and(|o| crate::control::api::same(o.as_bytes(), password.as_bytes())),
            Err(e) => {
                tracing::warn!("S015 dashboard login: cannot read the store: {e}");
                false
            }
        }
    }
}

/// The Argon2id hash (PHC string) of `password`, for the store.
pub fn hash(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    farside_io::random_bytes(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// A session id or CSRF token: 32 random bytes, hex.
pub fn random_hex() -> String {
    crate::runtime::seed::random_hex()
        .unwrap_or_else(|_| base16ct::lower::encode_string(&crate::runtime::seed::random_key()))
}

/// The cookie's name.
pub const COOKIE: &str = "farside_session";

fn session_id(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(name: &str) -> Auth {
        let dir = std::env::temp_dir().join(format!("farside-auth-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        Auth::new(
            format!("sqlite://{}", dir.join("f.db").display()),
            Some("first-run".into()),
        )
    }

    #[test]
    fn the_one_time_password_gives_a_session_until_one_is_set() {
        let a = auth("one-time");
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let (id, s) = a.login(ip, "first-run").expect("one-time password");
        let cookie = format!("other=1; {COOKIE}={id}");
        assert_eq!(a.session(Some(&cookie)).map(|x| x.csrf), Some(s.csrf));
        assert!(a.session(Some("farside_session=nope")).is_none());
        a.logout(Some(&cookie));
        assert!(a.session(Some(&cookie)).is_none());
        // A password set in the store replaces it.
        let mut store = farside_store::open(&a.store_url).expect("store");
        store
            .set_admin_password(&hash("s3cret").expect("hash"))
            .expect("set");
        assert_eq!(a.login(ip, "first-run").err(), Some(Refused::Wrong));
        assert!(a.login(ip, "s3cret").is_ok());
    }

    #[test]
    fn too_many_wrong_passwords_lock_the_source_out() {
        let a = auth("lockout");
        let ip: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..MAX_FAILURES {
            assert_eq!(a.login(ip, "guess").err(), Some(Refused::Wrong));
        }
        assert_eq!(a.login(ip, "first-run").err(), Some(Refused::LockedOut));
        let other: IpAddr = "192.0.2.3".parse().expect("ip");
        assert!(
            a.login(other, "first-run").is_ok(),
            "others are not locked out"
        );
    }
}
