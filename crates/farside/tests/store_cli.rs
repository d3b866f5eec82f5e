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
    let (_, out, _) = farside(&config, &["user", "list"], None);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("example.org\talice\t"), "{out}");
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
    let (code, _, err) = farside(
        &config,
        &["user", "passwd", "nobody", "--password", "x"],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
    let (code, _, _) = farside(&config, &["user", "remove", "alice"], None);
    assert_eq!(code, 0);
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
    let (_, out, _) = farside(&config, &["secret", "list"], None);
    assert!(out.contains("1\t0123…"), "{out}");
    assert!(
        !out.contains("0123456789abcdef-rotation") && !out.contains(&generated),
        "masked: {out}"
    );
    let (code, _, _) = farside(&config, &["secret", "remove", "1"], None);
    assert_eq!(code, 0);
    let (code, _, err) = farside(&config, &["secret", "remove", "1"], None);
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
