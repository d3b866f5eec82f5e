//! The SQLite store: one file, created on first use.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior, params};

use crate::{
    RegistrationRow, SecretRow, Snapshot, Store, StoreError, UserKeys, UserRow, check_admin_hash,
    check_secret, keys, new_user_keys, unix_now,
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
    keepalive_failures INTEGER NOT NULL DEFAULT 0,
    node TEXT NOT NULL DEFAULT ''
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
        // And those from before the node holding a flow was recorded, theirs.
        let has_node: bool = tx
            .prepare("SELECT 1 FROM pragma_table_info('registrations') WHERE name = 'node'")?
            .exists([])?;
        if !has_node {
            tx.execute_batch("ALTER TABLE registrations ADD COLUMN node TEXT NOT NULL DEFAULT ''")?;
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
        let (md5, sha256) = new_user_keys(realm, name, password)?;
        let tx = self.conn.transaction()?;
        let t = unix_now();
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
            params![realm, name, &md5[..], &sha256[..], unix_now()],
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
        check_secret(secret)?;
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO secrets (secret, created) VALUES (?1, ?2)",
            params![secret, unix_now()],
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
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (aor, rows) in changes {
            save_aor(&tx, node, aor, rows)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn load_registrations(&mut self, now: i64) -> Result<Vec<RegistrationRow>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT aor, contact, transport, local, remote, expires_at, instance, reg_id, \
             call_id, cseq, path, nat, keepalive_failures, node FROM registrations \
             WHERE expires_at > ?1 ORDER BY aor, node",
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
                node: r.get(13)?,
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
        check_admin_hash(hash)?;
        self.conn.execute(
            "INSERT INTO admin (id, password, updated) VALUES (1, ?1, ?2) \
             ON CONFLICT (id) DO UPDATE SET password = ?1, updated = ?2",
            params![hash, unix_now()],
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

/// Replaces the registrations of `aor` that `node` holds, inside `tx`.
fn save_aor(
    tx: &rusqlite::Transaction<'_>,
    node: &str,
    aor: &str,
    rows: &[RegistrationRow],
) -> Result<(), StoreError> {
    // Cached statements: the writer saves thousands of these a second under load.
    tx.prepare_cached("DELETE FROM registrations WHERE aor = ?1 AND node = ?2")?
        .execute([aor, node])?;
    for r in rows {
        tx.prepare_cached(
            "INSERT INTO registrations (aor, contact, transport, local, remote, expires_at, \
                 instance, reg_id, call_id, cseq, path, nat, keepalive_failures, node) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
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
            r.keepalive_failures,
            node
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! SQLite's own rules; what every backend does is in `tests/suite.rs`.

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
    fn the_file_and_its_logs_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let path = temp("mode");
        let mut s = SqliteStore::open(&path).expect("open");
        s.add_user("farside", "alice", "wonderland").expect("add");
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
    fn urls() {
        assert!(crate::open("mysql://x").is_err());
        let e = crate::open("sqlite://").err().expect("no path");
        assert!(e.to_string().contains("without a file path"), "{e}");
        let e = crate::open("mysql://u:hunter2@db/farside")
            .err()
            .expect("mysql");
        assert_eq!(
            e.to_string(),
            "mysql: expected sqlite://PATH or postgres://user:password@host/database"
        );
        let path = temp("url");
        assert!(crate::open(&format!("sqlite://{}", path.display())).is_ok());
    }
}
