//! `SIGHUP` (`kill -HUP`, `systemctl reload`): the configuration file is read again while the
//! server runs. A new `log.level` applies at once; other changed sections are named as taking
//! effect at the next restart; an invalid file is refused with its line and the server keeps
//! running on what it had.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{LOCALHOST, free_ports, stun};

#[test]
fn sighup_applies_the_log_level_names_the_rest_and_refuses_an_invalid_file() {
    let test = "sighup_applies_the_log_level_names_the_rest_and_refuses_an_invalid_file";
    if !common::require_tool(test, "kill") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("farside-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_ports(&[LOCALHOST], 2);
    let path = dir.join("farside.toml");
    let config = |level: &str, workers: u32| {
        common::only_named_parts(&format!(
            "[stun]\nlisten = [\"127.0.0.1:{port}\"]\ntcp = false\nworkers = {workers}\n\n[admin]\nlisten = \"off\"\n\n[log]\nlevel = \"{level}\"\n\n[store]\nurl = \"sqlite://{}/f.db\"\n",
            dir.display()
        ))
    };
    std::fs::write(&path, config("info", 2)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_farside"))
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let reader = {
        let log = Arc::clone(&log);
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        })
    };
    let has = |text: &str| log.lock().unwrap().contains(text);
    let seen = |text: &str| common::wait_until(Duration::from_secs(5), || has(text));
    let hup = || {
        let ok = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP");
    };
    assert!(seen("S001 STUN listening"), "{}", log.lock().unwrap());

    // The same file: nothing changed.
    hup();
    assert!(seen("nothing changed"), "{}", log.lock().unwrap());
    // A new level applies at once (the debug line shows only under it); the workers wait.
    std::fs::write(&path, config("debug", 1)).unwrap();
    hup();
    assert!(
        seen("applied log.level; [stun] changed, applies at the next restart"),
        "{}",
        log.lock().unwrap()
    );
    assert!(seen("S006 log level now debug"), "{}", log.lock().unwrap());
    // An invalid file is refused with its line; the server runs on.
    std::fs::write(&path, "[stun]\nlisten = []\n").unwrap();
    hup();
    assert!(
        seen("S007 reload refused, the running configuration stays"),
        "{}",
        log.lock().unwrap()
    );
    assert!(
        has("farside.toml:2: stun.listen"),
        "{}",
        log.lock().unwrap()
    );
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let answered = stun::udp_binding(&client, SocketAddr::new(LOCALHOST, port), &[]).is_some();
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        alive && answered,
        "the server stopped answering after a refused reload"
    );
    common::note(
        test,
        "SIGHUP: same file 'nothing changed'; log.level applied live (a debug line appeared) and [stun] named for the next restart; an invalid file refused with its line while STUN kept answering",
    );
}
