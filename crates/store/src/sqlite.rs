//! The SQLite store: one file, created on first use.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, TransactionBehavior, params};

use crate::{
    RegistrationRow, SECRET_LEN, SecretRow, Snapshot, Store, StoreError, UserKeys, UserRow,
    check_name, check_username, keys,
};

/// Schema version this build writes.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS generation (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
INSERT OR IGNORE INTO generation (id, value) VALUES (1, 1);
CREATE TABLE IF NOT EXISTS users (
    realm TEXT NOT NULL,
    name TEXT NOT NULL,
    key_md5 BLOB NOT NULL,
    key_sha256 BLOB NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (realm, name)
);
CREATE TABLE IF NOT EXISTS secrets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    secret TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS registrations (
    aor TEXT NOT NULL,
    contact TEXT NOT NULL,
    transport TEXT NOT NULL,
    local TEXT NOT NULL,
    remote TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    instance TEXT,
    reg_id INTEGER,
    call_id TEXT NOT NULL,
    cseq INTEGER NOT NULL,
    path TEXT NOT NULL,
    nat INTEGER NOT NULL,
    keepalive_failures INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS registrations_aor ON registrations (aor);
CREATE TABLE IF NOT EXISTS server_keys (
    name TEXT PRIMARY KEY,
    key BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS admin (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    password TEXT NOT NULL,
    updated INTEGER NOT NULL
);
";

/// Users and secrets in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`; a new file is readable by its
    /// owner only, since it holds keys. Errors name the file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_at(path).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            reason: match e {
                StoreError::Io(e) => e.to_string(),
                StoreError::Database(e) => e.to_string(),
                other => other.to_string(),
            },
        })
    }

    fn open_at(path: &Path) -> Result<Self, StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Invalid(format!(
                    "cannot create its directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        // Create the file ourselves, 0600 from its first instant (no window in which a
        // umask-wide file exists); SQLite gives its -wal and -shm files the database file's
        // mode. An existing file keeps the mode its owner chose, and is not opened here at
        // all: closing any descriptor of a file drops every POSIX lock this process holds on
        // it, so opening and closing it beside a live connection would release that
        // connection's locks, and another process could then delete the WAL under it.
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        let mut conn = Connection::open(path)?;
        // Readers (the server) and the CLI may use the file at once.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // One write transaction, so two processes opening a new file at once cannot both
        // record a schema version.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(SCHEMA)?;
        let version: Option<i64> =
            tx.query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))?;
        match version {
            None => {
                tx.execute(
                    "INSERT INTO schema_version (version) VALUES (?1)",
                    [SCHEMA_VERSION],
                )?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::Invalid(format!(
                    "schema version {v} is newer than this farside understands ({SCHEMA_VERSION})"
                )));
            }
            Some(_) => {}
        }
        // Files from before keep-alive state was stored get its column.
        let has_failures: bool = tx
            .prepare("SELECT 1 FROM pragma_table_info('registrations') WHERE name = 'keepalive_failures'")?
            .exists([])?;
        if !has_failures {
            tx.execute_batch(
                "ALTER TABLE registrations ADD COLUMN keepalive_failures INTEGER NOT NULL DEFAULT 0",
            )?;
        }
        tx.commit()?;
        Ok(SqliteStore { conn })
    }

    fn bump(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
        tx.execute("UPDATE generation SET value = value + 1 WHERE id = 1", [])?;
        Ok(())
    }
}

impl Store for SqliteStore {
    fn add_user(&mut self, realm: &str, name: &str, password: &str) -> Result<(), StoreError> {
        check_username(name)?;
        check_name("realm", realm)?;
        let (md5, sha256) = keys(realm, name, password)?;
        let tx = self.conn.transaction()?;
        let t = now();
        let n = tx.execute(
            "INSERT OR IGNORE INTO users (realm, name, key_md5, key_sha256, created, updated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![realm, name, &md5[..], &sha256[..], t],
        )?;
        if n == 0 {
            return Err(StoreError::Exists {
                realm: realm.into(),
                name: name.into(),
            });
        }
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(())
    }

    fn set_password(&mut self, realm: &str, name: &str, password: &str) -> Result<(), StoreError> {
        let (md5, sha256) = keys(realm, name, password)?;
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE users SET key_md5 = ?3, key_sha256 = ?4, updated = ?5 WHERE realm = ?1 AND name = ?2",
            params![realm, name, &md5[..], &sha256[..], now()],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "user {name} in realm {realm}"
            )));
        }
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(())
    }

    fn remove_user(&mut self, realm: &str, name: &str) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM users WHERE realm = ?1 AND name = ?2",
            params![realm, name],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "user {name} in realm {realm}"
            )));
        }
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(())
    }

    fn list_users(&mut self, realm: Option<&str>) -> Result<Vec<UserRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT realm, name, created FROM users WHERE ?1 IS NULL OR realm = ?1 ORDER BY realm, name",
        )?;
        let rows = stmt.query_map([realm], |r| {
            Ok(UserRow {
                realm: r.get(0)?,
                name: r.get(1)?,
                created: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn add_secret(&mut self, secret: &str) -> Result<i64, StoreError> {
        if !SECRET_LEN.contains(&secret.len()) {
            return Err(StoreError::Invalid(format!(
                "a shared secret must be {} to {} bytes (try `farside secret add --generate`)",
                SECRET_LEN.start(),
                SECRET_LEN.end()
            )));
        }
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO secrets (secret, created) VALUES (?1, ?2)",
            params![secret, now()],
        )?;
        if n == 0 {
            return Err(StoreError::Invalid("that secret is stored already".into()));
        }
        let id = tx.last_insert_rowid();
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(id)
    }

    fn list_secrets(&mut self) -> Result<Vec<SecretRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, secret, created FROM secrets ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            let secret: String = r.get(1)?;
            Ok(SecretRow {
                id: r.get(0)?,
                masked: format!("{}…", secret.chars().take(4).collect::<String>()),
                created: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn remove_secret(&mut self, id: i64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let n = tx.execute("DELETE FROM secrets WHERE id = ?1", [id])?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("secret {id}")));
        }
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(())
    }

    fn generation(&mut self) -> Result<u64, StoreError> {
        let g: i64 = self
            .conn
            .query_row("SELECT value FROM generation WHERE id = 1", [], |r| {
                r.get(0)
            })?;
        Ok(g as u64)
    }

    fn load(&mut self) -> Result<Snapshot, StoreError> {
        let tx = self.conn.transaction()?;
        let generation: i64 =
            tx.query_row("SELECT value FROM generation WHERE id = 1", [], |r| {
                r.get(0)
            })?;
        let users = {
            let mut stmt = tx.prepare("SELECT realm, name, key_md5, key_sha256 FROM users")?;
            let rows = stmt.query_map([], |r| {
                let md5: Vec<u8> = r.get(2)?;
                let sha256: Vec<u8> = r.get(3)?;
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, md5, sha256))
            })?;
            let mut users = Vec::new();
            for row in rows {
                let (realm, name, md5, sha256) = row?;
                // A row with keys of the wrong size was not written by us: skip it.
                if let (Ok(md5), Ok(sha256)) = (md5.try_into(), sha256.try_into()) {
                    users.push(UserKeys {
                        realm,
                        name,
                        md5,
                        sha256,
                    });
                }
            }
            users
        };
        let secrets = {
            let mut stmt = tx.prepare("SELECT secret FROM secrets ORDER BY id")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        tx.commit()?;
        Ok(Snapshot {
            generation: generation as u64,
            users,
            secrets,
        })
    }

    fn save_registrations(
        &mut self,
        aor: &str,
        rows: &[RegistrationRow],
    ) -> Result<(), StoreError> {
        self.save_registrations_many(&[(aor.to_owned(), rows.to_vec())])
    }

    fn save_registrations_many(
        &mut self,
        changes: &[(String, Vec<RegistrationRow>)],
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (aor, rows) in changes {
            save_aor(&tx, aor, rows)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn load_registrations(&mut self, now: i64) -> Result<Vec<RegistrationRow>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT aor, contact, transport, local, remote, expires_at, instance, reg_id, \
             call_id, cseq, path, nat, keepalive_failures FROM registrations \
             WHERE expires_at > ?1 ORDER BY aor",
        )?;
        let rows = st.query_map([now], |r| {
            Ok(RegistrationRow {
                aor: r.get(0)?,
                contact: r.get(1)?,
                transport: r.get(2)?,
                local: r.get(3)?,
                remote: r.get(4)?,
                expires_at: r.get(5)?,
                instance: r.get(6)?,
                reg_id: r.get(7)?,
                call_id: r.get(8)?,
                cseq: r.get(9)?,
                path: r.get(10)?,
                nat: r.get(11)?,
                keepalive_failures: r.get(12)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn admin_password(&mut self) -> Result<Option<String>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT password FROM admin WHERE id = 1")?;
        let mut rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.next().transpose()?)
    }

    fn set_admin_password(&mut self, hash: &str) -> Result<(), StoreError> {
        if hash.is_empty() || hash.len() > 1024 {
            return Err(StoreError::Invalid(
                "a password hash of 1 to 1024 bytes".into(),
            ));
        }
        self.conn.execute(
            "INSERT INTO admin (id, password, updated) VALUES (1, ?1, ?2) \
             ON CONFLICT (id) DO UPDATE SET password = ?1, updated = ?2",
            params![hash, now()],
        )?;
        Ok(())
    }

    fn server_key(&mut self, name: &str, fresh: [u8; 32]) -> Result<[u8; 32], StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT OR IGNORE INTO server_keys (name, key) VALUES (?1, ?2)",
            params![name, &fresh[..]],
        )?;
        let key: Vec<u8> =
            tx.query_row("SELECT key FROM server_keys WHERE name = ?1", [name], |r| {
                r.get(0)
            })?;
        tx.commit()?;
        key.try_into().map_err(|_| {
            StoreError::Invalid(format!("server key {name:?} in the store is not 32 bytes"))
        })
    }
}

/// Replaces the registrations of `aor` inside `tx`.
fn save_aor(
    tx: &rusqlite::Transaction<'_>,
    aor: &str,
    rows: &[RegistrationRow],
) -> Result<(), StoreError> {
    // Cached statements: the writer saves thousands of these a second under load.
    tx.prepare_cached("DELETE FROM registrations WHERE aor = ?1")?
        .execute([aor])?;
    for r in rows {
        tx.prepare_cached(
            "INSERT INTO registrations (aor, contact, transport, local, remote, expires_at, \
                 instance, reg_id, call_id, cseq, path, nat, keepalive_failures) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?
        .execute(params![
            aor,
            r.contact,
            r.transport,
            r.local,
            r.remote,
            r.expires_at,
            r.instance,
            r.reg_id,
            r.call_id,
            r.cseq,
            r.path,
            r.nat,
            r.keepalive_failures
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!(
            "farside-store-{}-{name}/farside.db",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(p.parent().expect("dir"));
        p
    }

    #[test]
    fn a_file_from_before_keepalive_state_gets_its_column() {
        let path = temp("old-registrations");
        std::fs::create_dir_all(path.parent().expect("dir")).expect("dir");
        {
            let old = Connection::open(&path).expect("open");
            old.execute_batch(
                "CREATE TABLE registrations (aor TEXT NOT NULL, contact TEXT NOT NULL, \
                 transport TEXT NOT NULL, local TEXT NOT NULL, remote TEXT NOT NULL, \
                 expires_at INTEGER NOT NULL, instance TEXT, reg_id INTEGER, call_id TEXT NOT NULL, \
                 cseq INTEGER NOT NULL, path TEXT NOT NULL, nat INTEGER NOT NULL); \
                 INSERT INTO registrations VALUES ('sip:a@x', 'sip:a@1', 'udp', '1.2.3.4:5', \
                 '5.6.7.8:9', 9999999999, NULL, NULL, 'c', 1, '', 0);",
            )
            .expect("old schema");
        }
        let mut s = SqliteStore::open(&path).expect("opens and migrates");
        let rows = s.load_registrations(0).expect("load");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].keepalive_failures, 0);
    }

    #[test]
    fn a_server_key_is_made_once_and_kept() {
        let path = temp("server-key");
        let mut s = SqliteStore::open(&path).expect("open");
        let first = s.server_key("sip-flow-tokens", [1; 32]).expect("key");
        assert_eq!(first, [1; 32]);
        assert_eq!(
            s.server_key("sip-flow-tokens", [2; 32]).expect("key"),
            [1; 32]
        );
        assert_eq!(s.server_key("other", [3; 32]).expect("key"), [3; 32]);
        drop(s);
        let mut s = SqliteStore::open(&path).expect("reopen");
        assert_eq!(
            s.server_key("sip-flow-tokens", [4; 32]).expect("key"),
            [1; 32]
        );
    }

    #[test]
    fn the_admin_password_is_set_replaced_and_kept() {
        let path = temp("admin-password");
        let mut s = SqliteStore::open(&path).expect("open");
        assert_eq!(s.admin_password().expect("read"), None);
        s.set_admin_password("$argon2id$first").expect("set");
        s.set_admin_password("$argon2id$second").expect("replace");
        assert!(s.set_admin_password("").is_err());
        drop(s);
        let mut s = SqliteStore::open(&path).expect("reopen");
        assert_eq!(
            s.admin_password().expect("read").as_deref(),
            Some("$argon2id$second")
        );
    }

    #[test]
    fn registrations_replace_per_aor_survive_reopening_and_lapse() {
        let dir = std::env::temp_dir().join(format!("farside-store-reg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("s.db");
        let row = |contact: &str, expires_at| RegistrationRow {
            aor: "sip:alice@example.org".into(),
            contact: contact.into(),
            transport: "udp".into(),
            local: "192.0.2.10:5060".into(),
            remote: "203.0.113.7:40123".into(),
            expires_at,
            instance: Some("\"<urn:uuid:1>\"".into()),
            reg_id: Some(1),
            call_id: "c1".into(),
            cseq: 2,
            path: String::new(),
            nat: 7,
            keepalive_failures: 2,
        };
        let mut s = SqliteStore::open(&path).expect("open");
        let g = s.generation().expect("g");
        s.save_registrations(
            "sip:alice@example.org",
            &[row("sip:a@1", 100), row("sip:a@2", 50)],
        )
        .expect("save");
        s.save_registrations("sip:alice@example.org", &[row("sip:a@3", 100)])
            .expect("replace");
        assert_eq!(
            s.generation().expect("g"),
            g,
            "credentials are not reread for it"
        );
        drop(s);
        let mut s = SqliteStore::open(&path).expect("reopen");
        assert_eq!(
            s.load_registrations(10).expect("load"),
            vec![row("sip:a@3", 100)]
        );
        assert!(
            s.load_registrations(100).expect("load").is_empty(),
            "lapsed"
        );
        s.save_registrations("sip:alice@example.org", &[])
            .expect("gone");
        assert!(s.load_registrations(0).expect("load").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn users_keys_generation_and_reopen() {
        let path = temp("users");
        let mut s = SqliteStore::open(&path).expect("open");
        let g0 = s.generation().expect("generation");
        s.add_user("farside", "alice", "wonderland").expect("add");
        assert!(s.generation().expect("g") > g0);
        let e = s.add_user("farside", "alice", "x").expect_err("duplicate");
        assert!(e.to_string().contains("already exists"), "{e}");
        assert!(s.add_user("farside", "a:b", "x").is_err());
        assert!(s.add_user("farside", "", "x").is_err());
        assert!(s.add_user("farside", "bob", "").is_err());
        s.add_user("other", "alice", "elsewhere")
            .expect("another realm");

        let snap = s.load().expect("load");
        let alice = snap
            .users
            .iter()
            .find(|u| u.name == "alice" && u.realm == "farside")
            .expect("alice");
        assert_eq!(
            alice.md5,
            farside_stun::long_term_key_md5("alice", "farside", "wonderland").expect("key")
        );
        assert_eq!(
            alice.sha256,
            farside_stun::long_term_key_sha256("alice", "farside", "wonderland").expect("key")
        );
        s.set_password("farside", "alice", "looking-glass")
            .expect("passwd");
        let snap2 = s.load().expect("load");
        assert!(snap2.generation > snap.generation);
        assert_ne!(
            snap2
                .users
                .iter()
                .find(|u| u.name == "alice" && u.realm == "farside")
                .expect("a")
                .md5,
            alice.md5
        );
        assert_eq!(s.list_users(Some("farside")).expect("list").len(), 1);
        assert_eq!(s.list_users(None).expect("list").len(), 2);
        drop(s);

        let mut s = SqliteStore::open(&path).expect("reopen");
        assert_eq!(s.list_users(None).expect("list").len(), 2);
        s.remove_user("farside", "alice").expect("remove");
        assert!(matches!(
            s.remove_user("farside", "alice"),
            Err(StoreError::NotFound(_))
        ));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The write-ahead log and its index hold keys too; SQLite gives them the database
        // file's mode.
        for ext in ["db-wal", "db-shm"] {
            let mode = std::fs::metadata(path.with_extension(ext))
                .expect(ext)
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{ext}");
        }
    }

    #[test]
    fn limits_and_messages() {
        let path = temp("limits");
        let mut s = SqliteStore::open(&path).expect("open");
        let g = s.generation().expect("g");
        let long = "u".repeat(crate::MAX_NAME + 1);
        let e = s.add_user("farside", &long, "pw").expect_err("long name");
        assert!(e.to_string().contains("1 to 256 bytes"), "{e}");
        s.add_user("farside", &long[1..], "pw").expect("256 bytes");
        assert!(s.add_user(&long, "bob", "pw").is_err(), "long realm");
        assert!(s.add_user("a:b", "bob", "pw").is_err(), "':' in realm");
        assert!(s.add_user("farside", "bob\n", "pw").is_err(), "control");
        let e = s
            .add_user("farside", "1700000000", "pw")
            .expect_err("digits");
        assert!(e.to_string().contains("ephemeral"), "{e}");
        s.add_user("farside", "1700000000x", "pw")
            .expect("not only digits");
        let e = s
            .add_user("farside", "bob", &"p".repeat(crate::MAX_PASSWORD + 1))
            .expect_err("long password");
        assert!(e.to_string().contains("1 to 1024 bytes"), "{e}");
        s.add_user("farside", "bob", &"p".repeat(crate::MAX_PASSWORD))
            .expect("1024 bytes");
        let e = s
            .add_user("farside", "carol", "bell\u{7}")
            .expect_err("OpaqueString");
        assert!(
            e.to_string()
                .starts_with("password not allowed by RFC 8265 OpaqueString"),
            "{e}"
        );
        let e = s
            .set_password("farside", "bob", "tab\there")
            .expect_err("OpaqueString");
        assert!(e.to_string().contains("OpaqueString"), "{e}");
        assert!(s.add_secret(&"s".repeat(15)).is_err());
        assert!(s.add_secret(&"s".repeat(1025)).is_err());
        s.add_secret(&"s".repeat(16)).expect("16 bytes");
        s.add_secret(&"t".repeat(1024)).expect("1024 bytes");
        // Five successful writes, five bumps; the refused ones changed nothing.
        assert_eq!(s.generation().expect("g"), g + 5);
    }

    #[test]
    fn another_connection_sees_every_write() {
        // The server keeps a connection open and polls the generation; the CLI writes
        // through its own.
        let path = temp("watch");
        let mut server = SqliteStore::open(&path).expect("server");
        let mut cli = SqliteStore::open(&path).expect("cli");
        let mut seen = server.generation().expect("g");
        let mut changed = |server: &mut SqliteStore| {
            let g = server.generation().expect("g");
            let moved = g > seen;
            seen = g;
            moved
        };
        assert!(!changed(&mut server));
        cli.add_user("farside", "alice", "pw").expect("add");
        assert!(changed(&mut server));
        assert_eq!(server.load().expect("load").users.len(), 1);
        cli.set_password("farside", "alice", "pw2").expect("passwd");
        assert!(changed(&mut server));
        let id = cli.add_secret("0123456789abcdef").expect("secret");
        assert!(changed(&mut server));
        assert_eq!(server.load().expect("load").secrets.len(), 1);
        cli.remove_secret(id).expect("remove secret");
        assert!(changed(&mut server));
        cli.remove_user("farside", "alice").expect("remove user");
        assert!(changed(&mut server));
        let snap = server.load().expect("load");
        assert!(snap.users.is_empty() && snap.secrets.is_empty());
        assert_eq!(snap.generation, seen);
    }

    #[test]
    fn open_errors_name_the_file() {
        let path = temp("blocked");
        let dir = path.parent().expect("dir");
        std::fs::create_dir_all(dir).expect("dir");
        // A regular file where the directory should be.
        let blocker = dir.join("file");
        std::fs::write(&blocker, b"").expect("file");
        let db = blocker.join("farside.db");
        let e = SqliteStore::open(&db).expect_err("cannot open");
        assert!(
            e.to_string().starts_with(&format!("{}: ", db.display())),
            "{e}"
        );
        assert!(e.to_string().contains("cannot create its directory"), "{e}");
        assert!(!e.to_string().contains('\n'), "{e}");
    }

    #[test]
    fn secrets_list_masked_and_remove() {
        let path = temp("secrets");
        let mut s = SqliteStore::open(&path).expect("open");
        assert!(s.add_secret("short").is_err());
        let id = s.add_secret("0123456789abcdef0123").expect("add");
        assert!(s.add_secret("0123456789abcdef0123").is_err(), "duplicate");
        let list = s.list_secrets().expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].masked, "0123…");
        assert_eq!(
            s.load().expect("load").secrets,
            vec!["0123456789abcdef0123"]
        );
        s.remove_secret(id).expect("remove");
        assert!(s.list_secrets().expect("list").is_empty());
        assert!(s.remove_secret(id).is_err());
    }

    #[test]
    fn urls() {
        assert!(crate::open("postgres://x").is_err());
        assert!(crate::open("mysql://x").is_err());
        let e = crate::open("sqlite://").err().expect("no path");
        assert!(e.to_string().contains("without a file path"), "{e}");
        let e = crate::open("postgres://u:hunter2@db/farside")
            .err()
            .expect("postgres");
        assert!(e.to_string().contains("not supported yet"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let path = temp("url");
        assert!(crate::open(&format!("sqlite://{}", path.display())).is_ok());
    }
}
