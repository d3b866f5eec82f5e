//! `farside user …` and `farside secret …`: manage the store the server uses (found through
//! `--config`). A running server picks the change up within a second.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use farside_store::Store;

use crate::config::Config;

/// Which configuration to read the store's location (and the default realm) from.
#[derive(Args, Debug)]
pub struct StoreArgs {
    /// The server's configuration file (default: the embedded defaults).
    #[arg(short, long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
}

/// `farside user`.
#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user (for TURN long-term credentials, and SIP digest later).
    Add(UserPassword),
    /// Change a user's password.
    Passwd(UserPassword),
    /// Remove a user.
    Remove(UserName),
    /// List users (never their keys).
    List {
        /// Only this realm.
        #[arg(long)]
        realm: Option<String>,
    },
}

/// A user and a password.
#[derive(Args, Debug)]
pub struct UserPassword {
    /// The username.
    name: String,
    #[command(flatten)]
    password: Password,
    /// The realm (default: TURN's, `turn.realm`, and the SIP registrar's when `[sip]` is
    /// enabled and its realm differs: one command serves both).
    #[arg(long)]
    realm: Option<String>,
}

/// A user.
#[derive(Args, Debug)]
pub struct UserName {
    /// The username.
    name: String,
    /// The realm (default: TURN's and the SIP registrar's, as for `add`).
    #[arg(long)]
    realm: Option<String>,
}

/// `farside admin`.
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Set the dashboard's password (its Argon2id hash goes to the store; it replaces the
    /// first-run password at the next login).
    Passwd(Password),
}

/// A password, given or read from standard input.
#[derive(Args, Debug)]
pub struct Password {
    /// The password (visible to other local users in `ps`; prefer --password-stdin).
    #[arg(
        long,
        conflicts_with = "password_stdin",
        required_unless_present = "password_stdin"
    )]
    password: Option<String>,
    /// Read the password from standard input (its first line, without the line end).
    #[arg(long)]
    password_stdin: bool,
}

/// Runs a `farside admin` command.
pub fn admin(cmd: AdminCommand, args: &StoreArgs) -> ExitCode {
    finish((|| {
        let AdminCommand::Passwd(given) = cmd;
        let pw = password(&given)?;
        if pw.len() < 8 {
            return Err("the dashboard password needs 8 characters or more".into());
        }
        let (_, mut store) = open(args)?;
        let hash = crate::control::dashboard::auth::hash(&pw)?;
        store.set_admin_password(&hash).map_err(|e| e.to_string())?;
        Ok("dashboard password set".into())
    })())
}

/// `farside secret`.
#[derive(Subcommand, Debug)]
pub enum SecretCommand {
    /// Add a shared secret for ephemeral (REST) credentials.
    Add {
        /// The secret (16 bytes or more).
        #[arg(required_unless_present = "generate", conflicts_with = "generate")]
        secret: Option<String>,
        /// Make a random 256-bit secret (64 hex digits), store it and print it once.
        #[arg(long)]
        generate: bool,
    },
    /// List shared secrets (masked).
    List,
    /// Remove a shared secret by its id.
    Remove {
        /// The id `farside secret list` shows.
        id: i64,
    },
}

fn open(args: &StoreArgs) -> Result<(Config, Box<dyn Store>), String> {
    // Settled as `serve` settles it: the SIP realm may be the host's default.
    let (config, _) = Config::load_settled(args.config.as_deref()).map_err(|e| e.to_string())?;
    let store = farside_store::open(&config.store.url)
        .map_err(|e| format!("cannot open the store: {e}"))?;
    Ok((config, store))
}

fn finish(r: Result<String, String>) -> ExitCode {
    match r {
        Ok(msg) => {
            if !msg.is_empty() {
                println!("{msg}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("farside: {e}");
            ExitCode::FAILURE
        }
    }
}

fn password(p: &Password) -> Result<String, String> {
    match &p.password {
        Some(pw) => Ok(pw.clone()),
        None => {
            // One line, not to end of input: typed at a terminal, Enter ends it.
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| format!("reading the password from stdin: {e}"))?;
            let line = line.strip_suffix('\n').unwrap_or(&line);
            Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
        }
    }
}

/// Unix seconds as an RFC 3339 UTC time, `2026-11-21T17:54:35Z` (Howard Hinnant's
/// days-to-civil algorithm, proleptic Gregorian calendar).
fn utc(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Runs `change` in each of `realms` where user `name` is; the realms it ran in, or the
/// error if the user is in none of them.
fn each_realm(
    realms: &[String],
    name: &str,
    mut change: impl FnMut(&str) -> Result<(), farside_store::StoreError>,
) -> Result<String, String> {
    let mut done = Vec::new();
    let mut missing = None;
    for realm in realms {
        match change(realm) {
            Ok(()) => done.push(realm.as_str()),
            Err(e @ farside_store::StoreError::NotFound(_)) => missing = Some(e),
            Err(e) => return Err(e.to_string()),
        }
    }
    match (done.is_empty(), missing) {
        (true, Some(e)) => Err(e.to_string()),
        (true, None) => Err(format!("user {name}: no realm")),
        (false, _) => Ok(done.join(" and ")),
    }
}

/// Runs a `farside user` command.
pub fn user(cmd: UserCommand, args: &StoreArgs) -> ExitCode {
    finish((|| {
        let (config, mut store) = open(args)?;
        // The realms a command acts in: the one named, else TURN's and, when SIP runs, the
        // registrar's (a user's long-term key is per realm: one password, a key for each).
        let realms = |r: &Option<String>| match r {
            Some(r) => vec![r.clone()],
            None => config.user_realms(),
        };
        match cmd {
            UserCommand::Add(u) => {
                let password = password(&u.password)?;
                let (mut added, mut kept, mut exists) = (Vec::new(), Vec::new(), None);
                // All or none: a realm that cannot hold users is refused before any write.
                for realm in realms(&u.realm) {
                    farside_store::check_realm(&realm).map_err(|e| e.to_string())?;
                }
                for realm in realms(&u.realm) {
                    match store.add_user(&realm, &u.name, &password) {
                        Ok(()) => added.push(realm),
                        // Already there (added before SIP ran, say): the other realms still
                        // get it; only a user in every realm is refused.
                        Err(e @ farside_store::StoreError::Exists { .. }) => {
                            kept.push(realm);
                            exists = Some(e);
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
                if let (true, Some(e)) = (added.is_empty(), exists) {
                    return Err(e.to_string());
                }
                let note = if kept.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (already in realm {}: its password there is unchanged)",
                        kept.join(" and ")
                    )
                };
                Ok(format!(
                    "added user {} in realm {}{note}",
                    u.name,
                    added.join(" and ")
                ))
            }
            UserCommand::Passwd(u) => {
                let password = password(&u.password)?;
                let done = each_realm(&realms(&u.realm), &u.name, |realm| {
                    store.set_password(realm, &u.name, &password)
                })?;
                Ok(format!(
                    "changed the password of {} in realm {done}",
                    u.name
                ))
            }
            UserCommand::Remove(u) => {
                let done = each_realm(&realms(&u.realm), &u.name, |realm| {
                    store.remove_user(realm, &u.name)
                })?;
                Ok(format!("removed user {} from realm {done}", u.name))
            }
            UserCommand::List { realm } => {
                let rows = store
                    .list_users(realm.as_deref())
                    .map_err(|e| e.to_string())?;
                Ok(rows
                    .iter()
                    .map(|r| format!("{}\t{}\tadded {}", r.realm, r.name, utc(r.created)))
                    .collect::<Vec<_>>()
                    .join("\n"))
            }
        }
    })())
}

/// Runs a `farside secret` command.
pub fn secret(cmd: SecretCommand, args: &StoreArgs) -> ExitCode {
    finish((|| {
        let (_, mut store) = open(args)?;
        match cmd {
            SecretCommand::Add { secret, generate } => {
                let secret = match secret {
                    Some(s) => s,
                    None => crate::runtime::seed::random_hex()
                        .map_err(|e| format!("no randomness: {e}"))?,
                };
                let id = store.add_secret(&secret).map_err(|e| e.to_string())?;
                Ok(if generate {
                    format!("added secret {id}: {secret}")
                } else {
                    format!("added secret {id}")
                })
            }
            SecretCommand::List => {
                let rows = store.list_secrets().map_err(|e| e.to_string())?;
                Ok(rows
                    .iter()
                    .map(|r| format!("{}\t{}\tadded {}", r.id, r.masked, utc(r.created)))
                    .collect::<Vec<_>>()
                    .join("\n"))
            }
            SecretCommand::Remove { id } => {
                store.remove_secret(id).map_err(|e| e.to_string())?;
                Ok(format!("removed secret {id}"))
            }
        }
    })())
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_763_747_675), "2025-11-21T17:54:35Z");
        assert_eq!(utc(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59Z");
    }
}
