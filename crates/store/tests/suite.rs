//! The store's behaviour, the same on every backend: each test runs on SQLite (a file of its
//! own) and on PostgreSQL (a database of its own on the server `FARSIDE_TEST_POSTGRES` names,
//! e.g. as `scripts/start-postgres` prints it; skipped with a reason when unset, failed when
//! `FARSIDE_REQUIRE_PEERS=1`). PostgreSQL's own rules (migrations, reconnecting, the password
//! never shown) follow.

use farside_store::{RegistrationRow, Store, StoreError};

#[path = "common/postgres.rs"]
mod test_database;

use test_database::TestDatabase;

/// A store of one test's own, on one backend.
struct Db {
    url: String,
    /// PostgreSQL: dropped with it.
    _database: Option<TestDatabase>,
}

impl Db {
    fn sqlite(test: &str) -> Db {
        let dir = std::env::temp_dir().join(format!("farside-suite-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Db {
            url: format!("sqlite://{}/farside.db", dir.display()),
            _database: None,
        }
    }

    /// A new database on the test server, or `None` (skipped) when there is none.
    fn postgres(test: &str) -> Option<Db> {
        let database = TestDatabase::new(test)?;
        Some(Db {
            url: database.url.clone(),
            _database: Some(database),
        })
    }

    fn open(&self) -> Box<dyn Store> {
        farside_store::open(&self.url).unwrap_or_else(|e| panic!("open: {e}"))
    }
}

/// `test` on both backends: `NAME::sqlite` and `NAME::postgres`.
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[test]
            fn sqlite() {
                super::$test(&super::Db::sqlite(stringify!($test)));
            }
            #[test]
            fn postgres() {
                if let Some(db) = super::Db::postgres(stringify!($test)) {
                    super::$test(&db);
                }
            }
        }
    )*};
}

on_every_backend!(
    users_keys_generation_and_reopening,
    limits_and_messages,
    another_connection_sees_every_write,
    secrets_are_listed_masked_and_removed,
    registrations_replace_per_aor_survive_reopening_and_lapse,
    a_server_key_is_made_once_and_kept,
    the_admin_password_is_set_replaced_and_kept,
    each_node_replaces_only_the_registrations_it_holds,
);

fn users_keys_generation_and_reopening(db: &Db) {
    let mut s = db.open();
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
    let alice = |snap: &farside_store::Snapshot| {
        snap.users
            .iter()
            .find(|u| u.name == "alice" && u.realm == "farside")
            .expect("alice")
            .clone()
    };
    assert_eq!(
        alice(&snap).md5,
        farside_stun::long_term_key_md5("alice", "farside", "wonderland").expect("key")
    );
    assert_eq!(
        alice(&snap).sha256,
        farside_stun::long_term_key_sha256("alice", "farside", "wonderland").expect("key")
    );
    s.set_password("farside", "alice", "looking-glass")
        .expect("passwd");
    let snap2 = s.load().expect("load");
    assert!(snap2.generation > snap.generation);
    assert_eq!(
        alice(&snap2).md5,
        farside_stun::long_term_key_md5("alice", "farside", "looking-glass").expect("key")
    );
    assert!(matches!(
        s.set_password("farside", "nobody", "x"),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.list_users(Some("farside")).expect("list").len(), 1);
    assert_eq!(s.list_users(None).expect("list").len(), 2);
    drop(s);
    let mut s = db.open();
    assert_eq!(s.list_users(None).expect("list").len(), 2);
    s.remove_user("farside", "alice").expect("remove");
    assert!(matches!(
        s.remove_user("farside", "alice"),
        Err(StoreError::NotFound(_))
    ));
}

fn limits_and_messages(db: &Db) {
    let mut s = db.open();
    let g = s.generation().expect("g");
    let long = "u".repeat(farside_store::MAX_NAME + 1);
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
        .add_user(
            "farside",
            "bob",
            &"p".repeat(farside_store::MAX_PASSWORD + 1),
        )
        .expect_err("long password");
    assert!(e.to_string().contains("1 to 1024 bytes"), "{e}");
    s.add_user("farside", "bob", &"p".repeat(farside_store::MAX_PASSWORD))
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

/// The server keeps a connection open and polls the generation; the CLI (or another node)
/// writes through its own.
fn another_connection_sees_every_write(db: &Db) {
    let mut server = db.open();
    let mut cli = db.open();
    let mut seen = server.generation().expect("g");
    let mut changed = |server: &mut Box<dyn Store>| {
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

fn secrets_are_listed_masked_and_removed(db: &Db) {
    let mut s = db.open();
    assert!(s.add_secret("short").is_err());
    let id = s.add_secret("0123456789abcdef0123").expect("add");
    let e = s.add_secret("0123456789abcdef0123").expect_err("duplicate");
    assert!(e.to_string().contains("stored already"), "{e}");
    let second = s.add_secret("fedcba9876543210").expect("another");
    assert!(second > id, "ids grow");
    let list = s.list_secrets().expect("list");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].masked, "0123…");
    assert_eq!(
        s.load().expect("load").secrets,
        vec!["0123456789abcdef0123", "fedcba9876543210"]
    );
    s.remove_secret(id).expect("remove");
    assert_eq!(s.list_secrets().expect("list").len(), 1);
    assert!(matches!(s.remove_secret(id), Err(StoreError::NotFound(_))));
}

fn registrations_replace_per_aor_survive_reopening_and_lapse(db: &Db) {
    let row = |aor: &str, contact: &str, expires_at| RegistrationRow {
        aor: aor.into(),
        contact: contact.into(),
        transport: "udp".into(),
        local: "192.0.2.10:5060".into(),
        remote: "203.0.113.7:40123".into(),
        expires_at,
        instance: Some("\"<urn:uuid:1>\"".into()),
        reg_id: Some(1),
        call_id: "c1".into(),
        cseq: 2,
        path: "<sip:edge;lr>".into(),
        nat: 7,
        keepalive_failures: 2,
        node: "node-a".into(),
    };
    let alice = "sip:alice@example.org";
    let bob = "sip:bob@example.org";
    let mut s = db.open();
    let g = s.generation().expect("g");
    s.save_registrations(
        "node-a",
        alice,
        &[row(alice, "sip:a@1", 100), row(alice, "sip:a@2", 50)],
    )
    .expect("save");
    s.save_registrations("node-a", alice, &[row(alice, "sip:a@3", 100)])
        .expect("replace");
    s.save_registrations_many(
        "node-a",
        &[
            (bob.into(), vec![row(bob, "sip:b@1", 100)]),
            (
                bob.into(),
                vec![RegistrationRow {
                    instance: None,
                    reg_id: None,
                    ..row(bob, "sip:b@2", 100)
                }],
            ),
        ],
    )
    .expect("many, in order");
    assert_eq!(
        s.generation().expect("g"),
        g,
        "credentials are not reread for it"
    );
    drop(s);
    let mut s = db.open();
    assert_eq!(
        s.load_registrations(10).expect("load"),
        vec![
            row(alice, "sip:a@3", 100),
            RegistrationRow {
                instance: None,
                reg_id: None,
                ..row(bob, "sip:b@2", 100)
            }
        ]
    );
    assert!(
        s.load_registrations(100).expect("load").is_empty(),
        "lapsed"
    );
    s.save_registrations("node-a", alice, &[]).expect("gone");
    assert_eq!(s.load_registrations(0).expect("load").len(), 1);
}

/// Two nodes hold flows of one address of record (RFC 5626: a phone registered through both):
/// each node's writes replace its own rows only, and every row says which node holds it.
fn each_node_replaces_only_the_registrations_it_holds(db: &Db) {
    let row = |contact: &str, node: &str| RegistrationRow {
        aor: "sip:alice@example.org".into(),
        contact: contact.into(),
        transport: "tcp".into(),
        local: "192.0.2.10:5060".into(),
        remote: "203.0.113.7:40123".into(),
        expires_at: 100,
        instance: Some("\"<urn:uuid:1>\"".into()),
        reg_id: Some(1),
        call_id: "c1".into(),
        cseq: 2,
        path: String::new(),
        nat: 0,
        keepalive_failures: 0,
        node: node.into(),
    };
    let alice = "sip:alice@example.org";
    let mut a = db.open();
    let mut b = db.open();
    a.save_registrations("node-a", alice, &[row("sip:a@1;ob", "node-a")])
        .expect("a");
    b.save_registrations("node-b", alice, &[row("sip:a@2;ob", "node-b")])
        .expect("b");
    // The node column is the writer's, whatever the row says.
    a.save_registrations("node-a", alice, &[row("sip:a@3;ob", "node-z")])
        .expect("a again");
    let rows = b.load_registrations(0).expect("load");
    assert_eq!(
        rows.iter()
            .map(|r| (r.contact.as_str(), r.node.as_str()))
            .collect::<Vec<_>>(),
        [("sip:a@3;ob", "node-a"), ("sip:a@2;ob", "node-b")]
    );
    b.save_registrations("node-b", alice, &[]).expect("b gone");
    assert_eq!(a.load_registrations(0).expect("load").len(), 1, "a's stays");
}

fn a_server_key_is_made_once_and_kept(db: &Db) {
    let mut s = db.open();
    let first = s.server_key("sip-flow-tokens", [1; 32]).expect("key");
    assert_eq!(first, [1; 32]);
    assert_eq!(
        s.server_key("sip-flow-tokens", [2; 32]).expect("key"),
        [1; 32]
    );
    assert_eq!(s.server_key("other", [3; 32]).expect("key"), [3; 32]);
    drop(s);
    // Another node, or the next start, gets the same key.
    let mut s = db.open();
    assert_eq!(
        s.server_key("sip-flow-tokens", [4; 32]).expect("key"),
        [1; 32]
    );
}

fn the_admin_password_is_set_replaced_and_kept(db: &Db) {
    let mut s = db.open();
    assert_eq!(s.admin_password().expect("read"), None);
    s.set_admin_password("$argon2id$first").expect("set");
    s.set_admin_password("$argon2id$second").expect("replace");
    assert!(s.set_admin_password("").is_err());
    drop(s);
    let mut s = db.open();
    assert_eq!(
        s.admin_password().expect("read").as_deref(),
        Some("$argon2id$second")
    );
}

/// The schema is versioned: a new database gets every step once, nodes opening it together
/// all succeed (the advisory lock), and a database from a newer build is refused by name.
#[test]
fn postgres_migrations_are_versioned_and_a_newer_schema_is_refused() {
    let Some(db) = Db::postgres("migrations") else {
        return;
    };
    let opened: Vec<bool> = std::thread::scope(|s| {
        let nodes: Vec<_> = (0..4)
            .map(|_| s.spawn(|| farside_store::open(&db.url).is_ok()))
            .collect();
        nodes.into_iter().map(|n| n.join().expect("node")).collect()
    });
    assert_eq!(
        opened, [true; 4],
        "four nodes opening a new database at once"
    );
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).expect("connect");
    let versions: Vec<i32> = c
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .expect("versions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2], "each step once");
    c.execute(
        "INSERT INTO schema_migrations (version, applied) VALUES (99, 0)",
        &[],
    )
    .expect("a newer build's step");
    let e = farside_store::open(&db.url).err().expect("refused");
    assert!(e.to_string().contains("schema version 99 is newer"), "{e}");
}

/// The connection breaks (the database restarted, a network failure): the call that finds it
/// broken fails, and the next one connects again, with nothing lost.
#[test]
fn postgres_a_broken_connection_is_made_again() {
    let Some(db) = Db::postgres("reconnect") else {
        return;
    };
    let mut s = db.open();
    s.add_user("farside", "alice", "wonderland").expect("add");
    let mut admin = postgres::Client::connect(&db.url, postgres::NoTls).expect("connect");
    let killed = admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .expect("terminate");
    assert_eq!(killed, 1, "the store's connection");
    // The first call may see the break; within a few the store is back.
    let users = (0..3).find_map(|_| s.list_users(None).ok());
    assert_eq!(users.expect("reconnected").len(), 1);
    s.add_user("farside", "bob", "builder")
        .expect("writes again");
    assert_eq!(s.load().expect("load").users.len(), 2);
}

/// A URL's password shows nowhere: not in an error for a server that refuses it, nor in one
/// for a server that is not there, nor in what `redact` makes of it.
#[test]
fn postgres_errors_never_show_the_password() {
    let refused = farside_store::open("postgres://farside_test:hunter2-wrong@127.0.0.1:1/farside")
        .err()
        .expect("nothing listens on port 1");
    assert!(!refused.to_string().contains("hunter2"), "{refused}");
    assert!(
        refused.to_string().contains("farside_test:***@127.0.0.1:1"),
        "{refused}"
    );
    if let Ok(server) = std::env::var("FARSIDE_TEST_POSTGRES") {
        let (_, host) = server.rsplit_once('@').expect("user@host");
        let url = format!("postgres://farside_test:hunter2-wrong@{host}");
        let e = farside_store::open(&url).err().expect("a wrong password");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(
            e.to_string().contains("password authentication failed"),
            "{e}"
        );
    }
    assert_eq!(
        farside_store::redact("postgres://u:p%40ss@db:5432/x?sslmode=disable&password=p2"),
        "postgres://u:***@db:5432/x?sslmode=disable&password=***"
    );
    assert_eq!(
        farside_store::redact("sqlite:///var/lib/farside/users.db"),
        "sqlite:///var/lib/farside/users.db"
    );
}

/// A watcher waiting for a change (the server's credential watcher, on another node) wakes as
/// soon as another connection writes (NOTIFY at commit), not at the end of its wait; with no
/// write, it waits the whole time; after its connection is killed it does not spin.
#[test]
fn postgres_a_write_wakes_a_waiting_watcher() {
    use std::time::{Duration, Instant};
    let Some(db) = Db::postgres("wakes") else {
        return;
    };
    let mut watcher = db.open();
    let mut writer = db.open();
    let idle = Instant::now();
    watcher.wait_for_change(Duration::from_millis(300));
    assert!(
        idle.elapsed() >= Duration::from_millis(300),
        "no write, the whole wait"
    );
    let woke = std::thread::scope(|s| {
        let waiting = s.spawn(move || {
            let started = Instant::now();
            watcher.wait_for_change(Duration::from_secs(10));
            (started.elapsed(), watcher)
        });
        std::thread::sleep(Duration::from_millis(200));
        writer
            .add_user("farside", "alice", "wonderland")
            .expect("add");
        waiting.join().expect("watcher")
    });
    let (waited, mut watcher) = woke;
    assert!(
        waited < Duration::from_secs(2),
        "woken by the write, not the 10 s limit: {waited:?}"
    );
    assert_eq!(watcher.load().expect("load").users.len(), 1);
    // Its connection killed: the next waits neither fail nor spin.
    let mut admin = postgres::Client::connect(&db.url, postgres::NoTls).expect("connect");
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .expect("terminate");
    let started = Instant::now();
    for _ in 0..3 {
        watcher.wait_for_change(Duration::from_millis(200));
    }
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "a broken connection does not spin: {:?}",
        started.elapsed()
    );
}
