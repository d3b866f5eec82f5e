//! `farside user …` and `farside secret …` against a store file, through the real binary.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

fn farside(config: &str, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_farside"))
        .args(args)
        .args(["--config", config])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The keys the store holds for `realm`/`name`, read as the server reads them.
fn keys(url: &str, realm: &str, name: &str) -> Option<([u8; 16], [u8; 32])> {
    let snapshot = farside_store::open(url).unwrap().load().unwrap();
    snapshot
        .users
        .iter()
        .find(|u| u.realm == realm && u.name == name)
        .map(|u| (u.md5, u.sha256))
}

/// The RFC 8489 §9.2.2 keys of a password.
fn expected(realm: &str, name: &str, password: &str) -> Option<([u8; 16], [u8; 32])> {
    Some((
        farside_stun::long_term_key_md5(name, realm, password).unwrap(),
        farside_stun::long_term_key_sha256(name, realm, password).unwrap(),
    ))
}

#[test]
fn users_and_secrets_through_the_cli() {
    let dir = std::env::temp_dir().join(format!("farside-store-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("sub/farside.db");
    let config = dir.join("farside.toml");
    std::fs::write(
        &config,
        format!(
            "[turn]\nrealm = \"example.org\"\n\n[store]\nurl = \"sqlite://{}\"\n",
            db.display()
        ),
    )
    .unwrap();
    let config = config.display().to_string();

    let (code, out, err) = farside(
        &config,
        &["user", "add", "alice", "--password", "pw1"],
        None,
    );
    assert_eq!(
        (code, out.trim()),
        (0, "added user alice in realm example.org"),
        "{err}"
    );
    assert!(db.exists(), "the store file and its directory are created");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&db).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "keys are for the owner only");
    }
    let url = format!("sqlite://{}", db.display());
    assert_eq!(
        keys(&url, "example.org", "alice"),
        expected("example.org", "alice", "pw1")
    );
    let (code, _, err) = farside(
        &config,
        &["user", "add", "alice", "--password", "pw2"],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    let (code, out, err) = farside(
        &config,
        &["user", "add", "bob", "--password-stdin", "--realm", "other"],
        Some("from stdin\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("added user bob in realm other"));
    assert_eq!(
        keys(&url, "other", "bob"),
        expected("other", "bob", "from stdin"),
        "the line end is not part of the password"
    );
    let (_, out, _) = farside(&config, &["user", "list"], None);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("example.org\talice\tadded 20"),
        "{out}"
    );
    assert!(lines[0].ends_with('Z'), "an RFC 3339 UTC time: {out}");
    assert!(lines[1].starts_with("other\tbob\t"), "{out}");
    assert!(
        !out.contains("pw1") && !out.contains("from stdin"),
        "no secrets listed"
    );
    let (code, out, _) = farside(
        &config,
        &["user", "passwd", "alice", "--password", "pw3"],
        None,
    );
    assert_eq!(code, 0);
    assert!(out.contains("changed the password of alice"));
    assert_eq!(
        keys(&url, "example.org", "alice"),
        expected("example.org", "alice", "pw3")
    );
    let (code, _, err) = farside(
        &config,
        &["user", "passwd", "alice", "--password-stdin"],
        Some("pw4\r\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        keys(&url, "example.org", "alice"),
        expected("example.org", "alice", "pw4")
    );
    let (code, _, err) = farside(
        &config,
        &["user", "passwd", "nobody", "--password", "x"],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
    let (code, out, _) = farside(&config, &["user", "remove", "alice"], None);
    assert_eq!(
        (code, out.trim()),
        (0, "removed user alice from realm example.org")
    );
    assert_eq!(keys(&url, "example.org", "alice"), None);
    let (_, out, _) = farside(&config, &["user", "list", "--realm", "example.org"], None);
    assert!(out.trim().is_empty(), "{out}");
    let (code, _, err) = farside(&config, &["user", "add", "a:b", "--password", "x"], None);
    assert_eq!(code, 1);
    assert!(err.contains("':'"), "{err}");

    let (code, _, err) = farside(&config, &["secret", "add", "short"], None);
    assert_eq!(code, 1, "{err}");
    let (code, out, err) = farside(
        &config,
        &["secret", "add", "0123456789abcdef-rotation"],
        None,
    );
    assert_eq!((code, out.trim()), (0, "added secret 1"), "{err}");
    let (code, out, _) = farside(&config, &["secret", "add", "--generate"], None);
    assert_eq!(code, 0);
    let generated = out.trim().rsplit(' ').next().unwrap().to_owned();
    assert_eq!(generated.len(), 64, "{out}");
    assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()), "{out}");
    let (_, out, _) = farside(&config, &["secret", "list"], None);
    assert!(out.contains("1\t0123…"), "{out}");
    assert!(
        !out.contains("0123456789abcdef-rotation") && !out.contains(&generated),
        "masked: {out}"
    );
    let (code, out, _) = farside(&config, &["secret", "remove", "1"], None);
    assert_eq!((code, out.trim()), (0, "removed secret 1"));
    let (_, out, _) = farside(&config, &["secret", "list"], None);
    assert!(out.starts_with("2\t"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code, _, err) = farside(&config, &["secret", "remove", "1"], None);
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without `--realm`, a user is added (and changed, and removed) in TURN's realm and, when SIP
/// runs, in the registrar's: one command and the user can relay and register. A user already
/// in one of them (added before SIP ran) gets the other.
#[test]
fn without_a_realm_a_user_serves_turn_and_sip() {
    let dir = std::env::temp_dir().join(format!("farside-store-cli-realms-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("farside.db");
    let url = format!("sqlite://{}", db.display());
    let config = dir.join("farside.toml");
    std::fs::write(
        &config,
        format!(
            "[turn]\nrealm = \"example.org\"\n\n[sip]\nenabled = true\ndomain = \"sip.example.net\"\n\n[store]\nurl = \"{url}\"\n"
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let (code, out, err) = farside(&config, &["user", "add", "bob", "--password", "pw1"], None);
    assert_eq!(
        (code, out.trim()),
        (0, "added user bob in realm example.org and sip.example.net"),
        "{err}"
    );
    for realm in ["example.org", "sip.example.net"] {
        assert_eq!(
            keys(&url, realm, "bob"),
            expected(realm, "bob", "pw1"),
            "{realm}"
        );
    }
    let (code, _, err) = farside(&config, &["user", "add", "bob", "--password", "pw1"], None);
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    let (code, out, _) = farside(
        &config,
        &["user", "passwd", "bob", "--password", "pw2"],
        None,
    );
    assert_eq!(
        (code, out.trim()),
        (
            0,
            "changed the password of bob in realm example.org and sip.example.net"
        )
    );
    assert_eq!(
        keys(&url, "sip.example.net", "bob"),
        expected("sip.example.net", "bob", "pw2")
    );
    // Carol was added to TURN's realm alone; the next add gives her SIP's.
    let (code, _, err) = farside(
        &config,
        &[
            "user",
            "add",
            "carol",
            "--password",
            "pw",
            "--realm",
            "example.org",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = farside(&config, &["user", "add", "carol", "--password", "pw"], None);
    assert_eq!(
        (code, out.trim()),
        (
            0,
            "added user carol in realm sip.example.net (already in realm example.org: its password there is unchanged)"
        ),
        "{err}"
    );
    let (code, out, _) = farside(&config, &["user", "remove", "bob"], None);
    assert_eq!(
        (code, out.trim()),
        (
            0,
            "removed user bob from realm example.org and sip.example.net"
        )
    );
    assert_eq!(keys(&url, "example.org", "bob"), None);
    let (code, _, err) = farside(&config, &["user", "remove", "bob"], None);
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn store_errors_are_one_line_with_exit_1() {
    let dir = std::env::temp_dir().join(format!("farside-store-cli-err-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("farside.toml");
    std::fs::write(
        &config,
        "[store]\nurl = \"postgres://farside:hunter2@db/farside\"\n",
    )
    .unwrap();
    let (code, out, err) = farside(&config.display().to_string(), &["user", "list"], None);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // No server named db here: the error names the URL without its password, and why.
    assert!(
        err.starts_with("farside: cannot open the store: postgres://farside:***@db/farside: error connecting to server: "),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    let missing = dir.join("missing.toml").display().to_string();
    let (code, _, err) = farside(&missing, &["secret", "list"], None);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("missing.toml: cannot read"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `farside admin passwd`: the dashboard's password goes to the store as an Argon2id hash
/// (never as given); one shorter than 8 characters is refused.
#[test]
fn the_dashboard_password_is_stored_as_an_argon2id_hash() {
    let dir = std::env::temp_dir().join(format!("farside-admin-passwd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("f.db").display());
    let config = dir.join("farside.toml");
    std::fs::write(&config, format!("[store]\nurl = \"{url}\"\n")).unwrap();
    let config = config.display().to_string();
    let (code, _, err) = farside(&config, &["admin", "passwd", "--password", "short"], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("8 characters"), "{err}");
    let (code, out, err) = farside(
        &config,
        &["admin", "passwd", "--password-stdin"],
        Some("a longer secret\n"),
    );
    assert_eq!((code, out.trim()), (0, "dashboard password set"), "{err}");
    let hash = farside_store::open(&url)
        .unwrap()
        .admin_password()
        .unwrap()
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("a longer secret"));
    let _ = std::fs::remove_dir_all(&dir);
}
