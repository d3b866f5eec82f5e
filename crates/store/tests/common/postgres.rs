//! A PostgreSQL database of one test's own, on the server `FARSIDE_TEST_POSTGRES` names (as
//! `scripts/start-postgres` prints it), dropped afterwards. Shared by the store's suite and the
//! binary's tests (`#[path]`): without that variable a test is skipped with the reason, or fails
//! when `FARSIDE_REQUIRE_PEERS=1` (CI).

/// A database made for one test.
pub(crate) struct TestDatabase {
    /// Its URL, for `[store] url`.
    pub(crate) url: String,
    server: String,
    name: String,
}

impl TestDatabase {
    /// A new, empty database for `test`, or `None` (skipped, the reason printed).
    pub(crate) fn new(test: &str) -> Option<TestDatabase> {
        let Ok(server) = std::env::var("FARSIDE_TEST_POSTGRES") else {
            assert!(
                std::env::var("FARSIDE_REQUIRE_PEERS").as_deref() != Ok("1"),
                "{test}: FARSIDE_REQUIRE_PEERS=1 but FARSIDE_TEST_POSTGRES is not set (export it as scripts/start-postgres prints it)"
            );
            eprintln!(
                "SKIP {test} on PostgreSQL: FARSIDE_TEST_POSTGRES is not set (scripts/start-postgres starts one and prints it)"
            );
            return None;
        };
        let name = format!("farside_t{}_{}", std::process::id(), test.to_lowercase())
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(63)
            .collect::<String>();
        let mut admin = postgres::Client::connect(&server, postgres::NoTls).unwrap_or_else(|e| {
            panic!(
                "FARSIDE_TEST_POSTGRES={:?}: {e}",
                farside_store::redact(&server)
            )
        });
        // One statement at a time: a batch is one transaction, which these cannot be in.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin
                .batch_execute(&sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let (base, _) = server.rsplit_once('/').expect("a URL with a database");
        Some(TestDatabase {
            url: format!("{base}/{name}"),
            server,
            name,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.server, postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
