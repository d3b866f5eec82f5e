//! The PostgreSQL store, for several nodes sharing users, secrets, keys and registrations.
//!
//! The schema is versioned: [`MIGRATIONS`] are applied in order, each once, under an advisory
//! lock so that nodes starting together do not race, and a database migrated by a newer build
//! is refused. A connection that breaks (the server restarted, the network failed) is made
//! again on the next call; the caller's own retry rules (the SIP store writer's, the
//! credential watcher's) decide when that is. Errors and logs never carry the URL's password
//! ([`crate::redact`]).

use postgres::fallible_iterator::FallibleIterator as _;
use postgres::{Client, IsolationLevel, NoTls, Transaction};

use crate::{
    RegistrationRow, SecretRow, Snapshot, Store, StoreError, UserKeys, UserRow, check_admin_hash,
    check_secret, keys, new_user_keys, unix_now,
};

/// The schema, one step per version (version = index + 1): 1, the tables; 2, the node holding
/// each registration's flow. Steps are never edited once released: a change is a new step.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE generation (id INTEGER PRIMARY KEY CHECK (id = 1), value BIGINT NOT NULL);
INSERT INTO generation (id, value) VALUES (1, 1);
CREATE TABLE users (
    realm TEXT NOT NULL,
    name TEXT NOT NULL,
    key_md5 BYTEA NOT NULL,
    key_sha256 BYTEA NOT NULL,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    PRIMARY KEY (realm, name)
);
CREATE TABLE secrets (
    id BIGSERIAL PRIMARY KEY,
    secret TEXT NOT NULL UNIQUE,
    created BIGINT NOT NULL
);
CREATE TABLE registrations (
    aor TEXT NOT NULL,
    contact TEXT NOT NULL,
    transport TEXT NOT NULL,
    local TEXT NOT NULL,
    remote TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    instance TEXT,
    reg_id BIGINT,
    call_id TEXT NOT NULL,
    cseq BIGINT NOT NULL,
    path TEXT NOT NULL,
    nat BIGINT NOT NULL,
    keepalive_failures BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX registrations_aor ON registrations (aor);
CREATE TABLE server_keys (name TEXT PRIMARY KEY, key BYTEA NOT NULL);
CREATE TABLE admin (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    password TEXT NOT NULL,
    updated BIGINT NOT NULL
);
",
    "
ALTER TABLE registrations ADD COLUMN node TEXT NOT NULL DEFAULT '';
CREATE INDEX registrations_aor_node ON registrations (aor, node);
",
];

/// The channel every write that bumps the generation notifies (LISTEN/NOTIFY), so the other
/// nodes' watchers reread at once.
const CHANNEL: &str = "farside_store";

/// The advisory lock migrations run under (any constant; "farside" in ASCII).
const MIGRATION_LOCK: i64 = 0x0066_6172_7369_6465;

/// Users, secrets, keys and registrations in a PostgreSQL database.
pub struct PostgresStore {
    /// The URL, password and all (never shown: see [`crate::redact`]).
    url: String,
    client: Client,
    /// This connection LISTENs on [`CHANNEL`] (lost with the connection).
    listening: bool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresStore({})", crate::redact(&self.url))
    }
}

impl PostgresStore {
    /// Connects to the database `url` names (`postgres://user:password@host:port/db`) and
    /// brings its schema up to date. Errors name the URL without its password.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let failed = |e: StoreError| StoreError::Server {
            url: crate::redact(url),
            reason: match e {
                StoreError::Postgres(e) => postgres_reason(&e),
                other => other.to_string(),
            },
        };
        let mut client = connect(url).map_err(failed)?;
        migrate(&mut client).map_err(failed)?;
        Ok(PostgresStore {
            url: url.to_owned(),
            client,
            listening: false,
        })
    }

    /// The connection, made again if it broke.
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.is_closed() {
            self.client = connect(&self.url)?;
            self.listening = false;
        }
        Ok(&mut self.client)
    }

    /// Runs `f` in a transaction that bumps the generation (a change credentials are
    /// reread for).
    fn write<T>(
        &mut self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut tx = self.client()?.transaction()?;
        let t = f(&mut tx)?;
        tx.execute("UPDATE generation SET value = value + 1 WHERE id = 1", &[])?;
        // Delivered to every listener when the transaction commits.
        tx.batch_execute(&format!("NOTIFY {CHANNEL}"))?;
        tx.commit()?;
        Ok(t)
    }
}

fn connect(url: &str) -> Result<Client, StoreError> {
    Ok(Client::connect(url, NoTls)?)
}

/// A PostgreSQL error in one line: the server's message when it sent one, else the error and
/// its causes ("error connecting to server: Connection refused (os error 111)").
fn postgres_reason(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_owned();
    }
    let mut reason = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        reason.push_str(&format!(": {c}"));
        cause = c.source();
    }
    reason.replace('\n', " ")
}

/// Applies what [`MIGRATIONS`] has that the database has not, in one transaction.
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied BIGINT NOT NULL)",
    )?;
    let at: i32 = tx
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM schema_migrations",
            &[],
        )?
        .get(0);
    let known = MIGRATIONS.len() as i32;
    if at > known {
        return Err(StoreError::Invalid(format!(
            "schema version {at} is newer than this farside understands ({known})"
        )));
    }
    for (version, step) in (1..).zip(MIGRATIONS).skip(at as usize) {
        tx.batch_execute(step)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied) VALUES ($1, $2)",
            &[&version, &unix_now()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

impl Store for PostgresStore {
    fn add_user(&mut self, realm: &str, name: &str, password: &str) -> Result<(), StoreError> {
        let (md5, sha256) = new_user_keys(realm, name, password)?;
        self.write(|tx| {
            let n = tx.execute(
                "INSERT INTO users (realm, name, key_md5, key_sha256, created, updated) \
                 VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING",
                &[&realm, &name, &&md5[..], &&sha256[..], &unix_now()],
            )?;
            match n {
                0 => Err(StoreError::Exists {
                    realm: realm.into(),
                    name: name.into(),
                }),
                _ => Ok(()),
            }
        })
    }

    fn set_password(&mut self, realm: &str, name: &str, password: &str) -> Result<(), StoreError> {
        let (md5, sha256) = keys(realm, name, password)?;
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE users SET key_md5 = $3, key_sha256 = $4, updated = $5 \
                 WHERE realm = $1 AND name = $2",
                &[&realm, &name, &&md5[..], &&sha256[..], &unix_now()],
            )?;
            match n {
                0 => Err(StoreError::NotFound(format!(
                    "user {name} in realm {realm}"
                ))),
                _ => Ok(()),
            }
        })
    }

    fn remove_user(&mut self, realm: &str, name: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM users WHERE realm = $1 AND name = $2",
                &[&realm, &name],
            )?;
            match n {
                0 => Err(StoreError::NotFound(format!(
                    "user {name} in realm {realm}"
                ))),
                _ => Ok(()),
            }
        })
    }

    fn list_users(&mut self, realm: Option<&str>) -> Result<Vec<UserRow>, StoreError> {
        let rows = self.client()?.query(
            "SELECT realm, name, created FROM users WHERE $1::TEXT IS NULL OR realm = $1 \
             ORDER BY realm, name",
            &[&realm],
        )?;
        Ok(rows
            .iter()
            .map(|r| UserRow {
                realm: r.get(0),
                name: r.get(1),
                created: r.get(2),
            })
            .collect())
    }

    fn add_secret(&mut self, secret: &str) -> Result<i64, StoreError> {
        check_secret(secret)?;
        self.write(|tx| {
            let row = tx.query_opt(
                "INSERT INTO secrets (secret, created) VALUES ($1, $2) \
                 ON CONFLICT (secret) DO NOTHING RETURNING id",
                &[&secret, &unix_now()],
            )?;
            row.map(|r| r.get(0))
                .ok_or_else(|| StoreError::Invalid("that secret is stored already".into()))
        })
    }

    fn list_secrets(&mut self) -> Result<Vec<SecretRow>, StoreError> {
        let rows = self
            .client()?
            .query("SELECT id, secret, created FROM secrets ORDER BY id", &[])?;
        Ok(rows
            .iter()
            .map(|r| {
                let secret: &str = r.get(1);
                SecretRow {
                    id: r.get(0),
                    masked: format!("{}…", secret.chars().take(4).collect::<String>()),
                    created: r.get(2),
                }
            })
            .collect())
    }

    fn remove_secret(&mut self, id: i64) -> Result<(), StoreError> {
        self.write(
            |tx| match tx.execute("DELETE FROM secrets WHERE id = $1", &[&id])? {
                0 => Err(StoreError::NotFound(format!("secret {id}"))),
                _ => Ok(()),
            },
        )
    }

    fn generation(&mut self) -> Result<u64, StoreError> {
        let g: i64 = self
            .client()?
            .query_one("SELECT value FROM generation WHERE id = 1", &[])?
            .get(0);
        Ok(g as u64)
    }

    fn wait_for_change(&mut self, limit: std::time::Duration) {
        let started = std::time::Instant::now();
        if !self.listening {
            let listened = self
                .client()
                .and_then(|c| Ok(c.batch_execute(&format!("LISTEN {CHANNEL}"))?));
            self.listening = listened.is_ok();
        }
        if self.listening {
            match self.client.notifications().timeout_iter(limit).next() {
                // Notified, or the time is up.
                Ok(_) => return,
                // The connection broke: LISTEN again once it is made anew.
                Err(_) => self.listening = false,
            }
        }
        if let Some(left) = limit.checked_sub(started.elapsed()) {
            std::thread::sleep(left);
        }
    }

    fn load(&mut self) -> Result<Snapshot, StoreError> {
        // One snapshot of the database: the generation and the rows agree.
        let mut tx = self
            .client()?
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let generation: i64 = tx
            .query_one("SELECT value FROM generation WHERE id = 1", &[])?
            .get(0);
        let users = tx
            .query("SELECT realm, name, key_md5, key_sha256 FROM users", &[])?
            .iter()
            .filter_map(|r| {
                // A row with keys of the wrong size was not written by us: skipped.
                Some(UserKeys {
                    realm: r.get(0),
                    name: r.get(1),
                    md5: r.get::<_, &[u8]>(2).try_into().ok()?,
                    sha256: r.get::<_, &[u8]>(3).try_into().ok()?,
                })
            })
            .collect();
        let secrets = tx
            .query("SELECT secret FROM secrets ORDER BY id", &[])?
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.commit()?;
        Ok(Snapshot {
            generation: generation as u64,
            users,
            secrets,
        })
    }

    fn save_registrations(
        &mut self,
        node: &str,
        aor: &str,
        rows: &[RegistrationRow],
    ) -> Result<(), StoreError> {
        self.save_registrations_many(node, &[(aor.to_owned(), rows.to_vec())])
    }

    fn save_registrations_many(
        &mut self,
        node: &str,
        changes: &[(String, Vec<RegistrationRow>)],
    ) -> Result<(), StoreError> {
        let mut tx = self.client()?.transaction()?;
        let delete = tx.prepare("DELETE FROM registrations WHERE aor = $1 AND node = $2")?;
        let insert = tx.prepare(
            "INSERT INTO registrations (aor, contact, transport, local, remote, expires_at, \
             instance, reg_id, call_id, cseq, path, nat, keepalive_failures, node) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )?;
        for (aor, rows) in changes {
            tx.execute(&delete, &[aor, &node])?;
            for r in rows {
                tx.execute(
                    &insert,
                    &[
                        aor,
                        &r.contact,
                        &r.transport,
                        &r.local,
                        &r.remote,
                        &r.expires_at,
                        &r.instance,
                        &r.reg_id,
                        &r.call_id,
                        &r.cseq,
                        &r.path,
                        &r.nat,
                        &r.keepalive_failures,
                        &node,
                    ],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn load_registrations(&mut self, now: i64) -> Result<Vec<RegistrationRow>, StoreError> {
        let rows = self.client()?.query(
            "SELECT aor, contact, transport, local, remote, expires_at, instance, reg_id, \
             call_id, cseq, path, nat, keepalive_failures, node FROM registrations \
             WHERE expires_at > $1 ORDER BY aor, node",
            &[&now],
        )?;
        Ok(rows
            .iter()
            .map(|r| RegistrationRow {
                aor: r.get(0),
                contact: r.get(1),
                transport: r.get(2),
                local: r.get(3),
                remote: r.get(4),
                expires_at: r.get(5),
                instance: r.get(6),
                reg_id: r.get(7),
                call_id: r.get(8),
                cseq: r.get(9),
                path: r.get(10),
                nat: r.get(11),
                keepalive_failures: r.get(12),
                node: r.get(13),
            })
            .collect())
    }

    fn server_key(&mut self, name: &str, fresh: [u8; 32]) -> Result<[u8; 32], StoreError> {
        let mut tx = self.client()?.transaction()?;
        tx.execute(
            "INSERT INTO server_keys (name, key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&name, &&fresh[..]],
        )?;
        let key: Vec<u8> = tx
            .query_one("SELECT key FROM server_keys WHERE name = $1", &[&name])?
            .get(0);
        tx.commit()?;
        key.try_into().map_err(|_| {
            StoreError::Invalid(format!("server key {name:?} in the store is not 32 bytes"))
        })
    }

    fn admin_password(&mut self) -> Result<Option<String>, StoreError> {
        let row = self
            .client()?
            .query_opt("SELECT password FROM admin WHERE id = 1", &[])?;
        Ok(row.map(|r| r.get(0)))
    }

    fn set_admin_password(&mut self, hash: &str) -> Result<(), StoreError> {
        check_admin_hash(hash)?;
        self.client()?.execute(
            "INSERT INTO admin (id, password, updated) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET password = $1, updated = $2",
            &[&hash, &unix_now()],
        )?;
        Ok(())
    }
}
