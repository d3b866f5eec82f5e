//! The users and shared secrets every TURN worker and the SIP thread authenticate against:
//! read from the store at start, published to all of them, and published again when the store
//! changes (a watcher thread polls its generation).

use std::sync::Arc;
use std::time::Duration;

use farside_turn::Credentials;

use crate::config::Config;

/// The credentials all workers use, replaced as a whole when the store changes.
pub type CredentialsCell = crate::runtime::versioned::Versioned<Credentials>;

/// The users and secrets of the store (for TURN and SIP), kept current by a watcher thread;
/// `None` when neither is on.
pub fn from_store(config: &Config) -> anyhow::Result<Option<Arc<CredentialsCell>>> {
    if !config.turn.enabled.wanted() && !config.sip.enabled.wanted() {
        return Ok(None);
    }
    let secrets = if config.turn.enabled.wanted() {
        config.turn.auth_secrets.clone()
    } else {
        Vec::new()
    };
    let cell = Arc::new(CredentialsCell::default());
    let mut store = farside_store::open(&config.store.url)
        .map_err(|e| anyhow::anyhow!("S303 cannot open the store: {e}"))?;
    let snapshot = store
        .load()
        .map_err(|e| anyhow::anyhow!("S303 cannot read the store: {e}"))?;
    tracing::info!(
        "S304 store {}: {} users, {} shared secrets",
        farside_store::redact(&config.store.url),
        snapshot.users.len(),
        snapshot.secrets.len()
    );
    let generation = snapshot.generation;
    cell.publish(credentials(&snapshot, &secrets));
    watch_store(store, generation, Arc::clone(&cell), secrets);
    Ok(Some(cell))
}

/// The TURN core's credentials: the store's users and secrets, and the configuration's secrets.
fn credentials(
    snapshot: &farside_store::Snapshot,
    config_secrets: &[String],
) -> farside_turn::Credentials {
    let mut c = farside_turn::Credentials::new();
    for u in &snapshot.users {
        c.add_user(
            &u.realm,
            &u.name,
            farside_turn::UserKeys {
                md5: u.md5,
                sha256: u.sha256,
            },
        );
    }
    for s in snapshot.secrets.iter().chain(config_secrets) {
        c.add_secret(s.as_bytes());
    }
    c
}

/// Polls the store's generation once a second, or at once when the store tells of a write
/// (PostgreSQL's NOTIFY, from any node), and republishes the credentials after a change
/// (`farside user add` while the server runs). A thread of its own: store calls block.
fn watch_store(
    mut store: Box<dyn farside_store::Store>,
    mut generation: u64,
    cell: Arc<CredentialsCell>,
    config_secrets: Vec<String>,
) {
    let spawned = std::thread::Builder::new()
        .name("store-watch".into())
        .spawn(move || {
            let mut failing = false;
            loop {
                // At most a second; at once when the store says it changed (PostgreSQL).
                store.wait_for_change(Duration::from_secs(1));
                let g = match store.generation() {
                    Ok(g) => g,
                    Err(e) => {
                        if !failing {
                            tracing::warn!(
                                "S305 cannot read the store (keeping the last credentials): {e}"
                            );
                        }
                        failing = true;
                        continue;
                    }
                };
                failing = false;
                if g == generation {
                    continue;
                }
                match store.load() {
                    Ok(snap) => {
                        generation = snap.generation;
                        // Published before it is said: whoever reads S306 finds them in use.
                        cell.publish(credentials(&snap, &config_secrets));
                        tracing::info!(
                            "S306 store changed: {} users, {} shared secrets",
                            snap.users.len(),
                            snap.secrets.len()
                        );
                    }
                    Err(e) => tracing::warn!("S305 cannot read the store: {e}"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("S305 cannot start the store watcher; changes need a restart: {e}");
    }
}
