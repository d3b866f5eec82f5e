//! Packaging: the systemd unit's `ExecStart` line, run as systemd would run it (the shipped
//! configuration file, `$STATE_DIRECTORY` set), starts a server that answers STUN;
//! the Debian package `packaging/build-deb` makes holds the binary, the unit, the
//! configuration as a conffile, the manual page and the completions; and those come from the
//! command line itself.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{LOCALHOST, free_ports, stun};

const FARSIDE: &str = env!("CARGO_BIN_EXE_farside");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The unit's `ExecStart` command, split into words.
fn exec_start() -> Vec<String> {
    let unit = std::fs::read_to_string(format!("{ROOT}/packaging/farside.service")).unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    line.split_whitespace().map(str::to_owned).collect()
}

/// Whether a server on 127.0.0.1:`port` answers a Binding within 5 s (while starting).
fn answers_stun(port: u16) -> bool {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = SocketAddr::new(LOCALHOST, port);
    common::wait_until(Duration::from_secs(5), || {
        stun::udp_binding_once(&client, to, Duration::from_millis(200)).is_some()
    })
}

/// `packaging/build-deb` into `out`, with the binary under test (gzip: faster than xz); the
/// package's path.
fn build_deb(out: &Path) -> String {
    let built = Command::new(format!("{ROOT}/packaging/build-deb"))
        .arg(out)
        .env("BIN", FARSIDE)
        .env("DEB_COMPRESSION", "gzip")
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    String::from_utf8(built.stdout).unwrap().trim().to_owned()
}

#[test]
fn the_units_exec_start_with_the_shipped_configuration_answers_stun() {
    let test = "the_units_exec_start_with_the_shipped_configuration_answers_stun";
    let words = exec_start();
    assert_eq!(
        words[..3],
        ["/usr/bin/farside", "serve", "--config"],
        "{words:?}"
    );
    assert_eq!(words[3], "/etc/farside/farside.toml");
    // The shipped file sets nothing; this copy adds only ports free here (the defaults, 3478
    // and 9478 on every address, may be taken by another test).
    let dir = std::env::temp_dir().join(format!("farside-unit-{}", std::process::id()));
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let shipped = std::fs::read_to_string(format!("{ROOT}/packaging/farside.toml")).unwrap();
    assert!(
        shipped
            .lines()
            .all(|l| l.trim().is_empty() || l.starts_with('#')),
        "the shipped configuration sets nothing: the embedded defaults apply"
    );
    let port = free_ports(&[LOCALHOST], 2);
    let config = dir.join("farside.toml");
    std::fs::write(
        &config,
        format!(
            "{shipped}\n[stun]\nlisten = [\"127.0.0.1:{port}\"]\n[admin]\nlisten = \"127.0.0.1:{}\"\n",
            port + 1
        ),
    )
    .unwrap();
    let mut child = Command::new(FARSIDE)
        .args(&words[1..3])
        .arg(&config)
        .env("STATE_DIRECTORY", &state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let answered = answers_stun(port);
    let _ = child.kill();
    let _ = child.wait();
    assert!(answered, "no STUN answer from the unit's command");
    let _ = std::fs::remove_dir_all(&dir);
    common::note(
        test,
        "ExecStart with the shipped (empty) configuration answered a Binding",
    );
}

#[test]
fn the_debian_package_holds_the_binary_unit_conffile_manual_and_completions() {
    let test = "the_debian_package_holds_the_binary_unit_conffile_manual_and_completions";
    if !common::require_tool(test, "dpkg-deb") {
        return;
    }
    let out = std::env::temp_dir().join(format!("farside-deb-{}", std::process::id()));
    let deb = build_deb(&out);
    assert!(Path::new(&deb).exists(), "{deb}");
    let dpkg = |args: &[&str]| {
        let o = Command::new("dpkg-deb")
            .args(args)
            .arg(&deb)
            .output()
            .unwrap();
        assert!(o.status.success());
        String::from_utf8(o.stdout).unwrap()
    };
    let contents = dpkg(&["--contents"]);
    for path in [
        "./usr/bin/farside",
        "./lib/systemd/system/farside.service",
        "./etc/farside/farside.toml",
        "./usr/share/man/man1/farside.1.gz",
        "./usr/share/bash-completion/completions/farside",
        "./usr/share/zsh/vendor-completions/_farside",
        "./usr/share/fish/vendor_completions.d/farside.fish",
        "./usr/share/doc/farside/configuration.md",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "{path} missing:\n{contents}"
        );
    }
    let control = dpkg(&["--field"]);
    assert!(control.contains("Package: farside"), "{control}");
    let conffiles = dpkg(&["--info"]);
    assert!(conffiles.contains("conffiles"), "{conffiles}");
    // The manual and completions are the command line's own.
    let man = Command::new(FARSIDE).arg("manpage").output().unwrap();
    let man = String::from_utf8(man.stdout).unwrap();
    assert!(man.starts_with(".ie") && man.contains(".SH SUBCOMMANDS"));
    for sub in [
        "serve",
        "check-config",
        "probe",
        "user",
        "secret",
        "completions",
    ] {
        // roff writes a hyphen as `\-`.
        let written = format!("farside\\-{}(1)", sub.replace('-', "\\-"));
        assert!(man.contains(&written), "the manual names {written}");
    }
    let bash = Command::new(FARSIDE)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8(bash.stdout)
            .unwrap()
            .contains("check-config")
    );
    let _ = std::fs::remove_dir_all(&out);
    common::note(
        test,
        &format!(
            "{deb}: binary, unit, conffile, manual, bash/zsh/fish completions, docs ({} entries)",
            contents.lines().count()
        ),
    );
}

/// The package installed with `dpkg -i` on this machine (only where the test may change it:
/// `FARSIDE_SYSTEM_TESTS=1`, which `.ci/run` sets, as root): the `farside` user exists, the
/// unit and the conffile are in place, and the unit's `ExecStart`, run as that user with the
/// state directory systemd would make, answers STUN on the embedded defaults' port 3478.
/// Then the package is purged.
#[test]
fn the_installed_package_runs_as_its_own_user_and_answers_stun() {
    let test = "the_installed_package_runs_as_its_own_user_and_answers_stun";
    if std::env::var("FARSIDE_SYSTEM_TESTS").as_deref() != Ok("1") {
        common::skip(
            test,
            "installs a package system-wide: set FARSIDE_SYSTEM_TESTS=1 (as root) to run it",
        );
        return;
    }
    for tool in ["dpkg", "dpkg-deb", "setpriv", "adduser"] {
        if !common::require_tool(test, tool) {
            return;
        }
    }
    // The machine must not hold a Farside of its own, or a server on the port it checks: the
    // answer must come from the server this test starts.
    if Command::new("dpkg-query")
        .args(["-W", "farside"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        common::skip(test, "a farside package is installed here already");
        return;
    }
    if Path::new("/run/systemd/system").exists() {
        common::skip(
            test,
            "systemd runs here: the package's postinst would start its own server",
        );
        return;
    }
    if UdpSocket::bind("0.0.0.0:3478").is_err() {
        common::skip(test, "UDP port 3478 is taken here");
        return;
    }
    let user_before = Command::new("getent")
        .args(["passwd", "farside"])
        .output()
        .is_ok_and(|o| o.status.success());
    let out = std::env::temp_dir().join(format!("farside-install-{}", std::process::id()));
    let deb = build_deb(&out);
    let run = |program: &str, args: &[&str]| {
        let o = Command::new(program).args(args).output().unwrap();
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    // Whatever happens next, the machine is left as it was found.
    let _cleanup = Cleanup { user_before };
    let (ok, said) = run("dpkg", &["-i", &deb]);
    assert!(ok, "dpkg -i: {said}");
    let (user, said) = run("getent", &["passwd", "farside"]);
    assert!(user, "no farside user: {said}");
    for path in [
        "/usr/bin/farside",
        "/lib/systemd/system/farside.service",
        "/etc/farside/farside.toml",
        "/usr/share/man/man1/farside.1.gz",
    ] {
        assert!(Path::new(path).exists(), "{path} not installed");
    }
    // As systemd would: StateDirectory made and owned by the user, then ExecStart as it.
    let state = "/var/lib/farside";
    std::fs::create_dir_all(state).unwrap();
    // systemd gives the whole directory to the unit's user (what a root-run command left in
    // it too).
    assert!(run("chown", &["-R", "farside:farside", state]).0);
    let words = exec_start();
    // setpriv changes user and execs (runuser would fork, and killing it leave the server).
    let mut server = Command::new("setpriv")
        .args(["--reuid=farside", "--regid=farside", "--init-groups", "--"])
        .args(&words)
        .env("STATE_DIRECTORY", state)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let answered = answers_stun(3478);
    let still_running = server.try_wait().unwrap().is_none();
    let _ = server.kill();
    let output = server.wait_with_output().unwrap();
    assert!(
        still_running,
        "the server exited: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (purged, said) = run("dpkg", &["--purge", "farside"]);
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        answered,
        "the installed unit's ExecStart did not answer STUN on 3478: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(purged, "dpkg --purge: {said}");
    assert!(!Path::new("/usr/bin/farside").exists(), "purged");
    common::note(
        test,
        "dpkg -i made the farside user and installed the unit, conffile and manual; ExecStart as farside answered STUN on 3478; dpkg --purge removed it",
    );
}

/// Purges the package, removes the state directory and, if the package made it, the user.
struct Cleanup {
    user_before: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let quiet = |program: &str, args: &[&str]| {
            let _ = Command::new(program)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        quiet("dpkg", &["--purge", "farside"]);
        let _ = std::fs::remove_dir_all("/var/lib/farside");
        if !self.user_before {
            quiet("deluser", &["--system", "farside"]);
        }
    }
}
