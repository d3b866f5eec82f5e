//! `farside user …` and `farside secret …`: manage the store the server uses (found through
//! `--config`). A running server picks the change up within a second.

use std::io::Read as _;
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
    /// The password (visible to other local users in `ps`; prefer --password-stdin).
    #[arg(
        long,
        conflicts_with = "password_stdin",
        required_unless_present = "password_stdin"
    )]
    password: Option<String>,
    /// Read the password from standard input (one line).
    #[arg(long)]
    password_stdin: bool,
    /// The realm (default: `turn.realm` of the configuration).
    #[arg(long)]
    realm: Option<String>,
}

/// A user.
#[derive(Args, Debug)]
pub struct UserName {
    /// The username.
    name: String,
    /// The realm (default: `turn.realm` of the configuration).
    #[arg(long)]
    realm: Option<String>,
}

/// `farside secret`.
#[derive(Subcommand, Debug)]
pub enum SecretCommand {
    /// Add a shared secret for ephemeral (REST) credentials.
    Add {
        /// The secret (16 bytes or more).
        #[arg(required_unless_present = "generate", conflicts_with = "generate")]
        secret: Option<String>,
        /// Make a random 256-bit secret, store it and print it.
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
    let config = match &args.config {
        None => Config::default(),
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
    };
    let store = farside_store::open(&config.store.url).map_err(|e| e.to_string())?;
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

fn password(p: &UserPassword) -> Result<String, String> {
    match &p.password {
        Some(pw) => Ok(pw.clone()),
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("reading the password from stdin: {e}"))?;
            Ok(s.lines().next().unwrap_or("").to_owned())
        }
    }
}

/// Runs a `farside user` command.
pub fn user(cmd: UserCommand, args: &StoreArgs) -> ExitCode {
    finish((|| {
        let (config, mut store) = open(args)?;
        let realm = |r: &Option<String>| r.clone().unwrap_or_else(|| config.turn.realm.clone());
        match cmd {
            UserCommand::Add(u) => {
                let realm = realm(&u.realm);
                store
                    .add_user(&realm, &u.name, &password(&u)?)
                    .map_err(|e| e.to_string())?;
                Ok(format!("added user {} in realm {realm}", u.name))
            }
            UserCommand::Passwd(u) => {
                let realm = realm(&u.realm);
                store
                    .set_password(&realm, &u.name, &password(&u)?)
                    .map_err(|e| e.to_string())?;
                Ok(format!(
                    "changed the password of {} in realm {realm}",
                    u.name
                ))
            }
            UserCommand::Remove(u) => {
                let realm = realm(&u.realm);
                store
                    .remove_user(&realm, &u.name)
                    .map_err(|e| e.to_string())?;
                Ok(format!("removed user {} from realm {realm}", u.name))
            }
            UserCommand::List { realm } => {
                let rows = store
                    .list_users(realm.as_deref())
                    .map_err(|e| e.to_string())?;
                Ok(rows
                    .iter()
                    .map(|r| format!("{}\t{}\tadded {}", r.realm, r.name, r.created))
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
                let secret = match (secret, generate) {
                    (Some(s), _) => s,
                    (None, _) => (0..4)
                        .map(|_| format!("{:016x}", crate::seed::fresh_seed()))
                        .collect(),
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
                    .map(|r| format!("{}\t{}\tadded {}", r.id, r.masked, r.created))
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
