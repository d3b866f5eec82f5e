//! Registrations in the store: read back at start, and kept in step with the registrar by a
//! writer thread of its own (SQLite calls block; the SIP thread must not).

use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use farside_sip::nat::{NatTests, Transport};
use farside_sip::registrar::{Binding, Flow};
use farside_store::{RegistrationRow, Store};
use farside_time::Timestamp;

/// What the SIP thread hands the writer: an address of record and its bindings now.
pub type Change = (String, Vec<RegistrationRow>);

/// The stored registrations that are still live at `now`, by address of record.
pub fn load(store: &mut dyn Store, now: Timestamp) -> anyhow::Result<Vec<(String, Vec<Binding>)>> {
    let rows = store
        .load_registrations(i64::try_from(now.unix_secs()).unwrap_or(i64::MAX))
        .map_err(|e| anyhow::anyhow!("S303 cannot read registrations from the store: {e}"))?;
    let mut by_aor: std::collections::BTreeMap<String, Vec<Binding>> = Default::default();
    for row in rows {
        if let Some(b) = binding_of(&row) {
            by_aor.entry(row.aor).or_default().push(b);
        }
    }
    Ok(by_aor.into_iter().collect())
}

/// The store rows of `aor`'s bindings.
pub fn rows(aor: &str, bindings: &[Binding]) -> Vec<RegistrationRow> {
    bindings.iter().map(|b| row_of(aor, b)).collect()
}

/// The store writer: a thread of its own, since SQLite calls block.
/// Starts the writer; it ends (and its handle returns) once the sender is dropped and what was
/// queued is written.
pub fn spawn_writer(
    mut store: Box<dyn Store>,
) -> anyhow::Result<(SyncSender<Change>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Change>(WRITE_QUEUE);
    let handle = std::thread::Builder::new()
        .name("sip-store".into())
        .spawn(move || {
            // Whatever queued up meanwhile goes in the same transaction (one disk sync for
            // many changes under load), the last change of each address of record winning.
            let mut last_write: Option<Instant> = None;
            while let Ok(first) = rx.recv() {
                // Under load, at most one transaction per WRITE_INTERVAL: the rest queue up
                // and are coalesced (a kill -9 loses at most that much more).
                if let Some(t) = last_write {
                    std::thread::sleep(WRITE_INTERVAL.saturating_sub(t.elapsed()));
                }
                last_write = Some(Instant::now());
                let mut batch = vec![first];
                while batch.len() < WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(change) => batch.push(change),
                        Err(_) => break,
                    }
                }
                let mut latest = std::collections::HashMap::with_capacity(batch.len());
                for (i, (aor, _)) in batch.iter().enumerate() {
                    latest.insert(aor.clone(), i);
                }
                let mut i = 0;
                batch.retain(|(aor, _)| {
                    i += 1;
                    latest.get(aor) == Some(&(i - 1))
                });
                let rows: usize = batch.iter().map(|(_, r)| r.len()).sum();
                match store.save_registrations_many(&batch) {
                    Ok(()) => tracing::debug!(
                        "S408 saved the registrations of {} addresses of record ({rows} bindings)",
                        batch.len()
                    ),
                    Err(e) => tracing::warn!(
                        "S407 cannot save the registrations of {} addresses of record: {e}",
                        batch.len()
                    ),
                }
            }
        })
        .context("spawn the SIP store writer")?;
    Ok((tx, handle))
}

/// Registration changes waiting for the store writer at most.
const WRITE_QUEUE: usize = 4096;
/// Most changes the store writer puts in one transaction.
const WRITE_BATCH: usize = 4096;
/// Least time between two transactions of the store writer.
const WRITE_INTERVAL: Duration = Duration::from_millis(20);

fn row_of(aor: &str, b: &Binding) -> farside_store::RegistrationRow {
    farside_store::RegistrationRow {
        aor: aor.to_owned(),
        contact: b.contact.clone(),
        transport: match b.flow.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
        .to_owned(),
        local: b.flow.local.to_string(),
        remote: b.flow.remote.to_string(),
        expires_at: i64::try_from(b.expires_at.unix_secs()).unwrap_or(i64::MAX),
        instance: b.instance.clone(),
        reg_id: b.reg_id.map(i64::from),
        call_id: b.call_id.clone(),
        cseq: i64::from(b.cseq),
        path: b.path.join("\n"),
        nat: i64::from(b.nat.0),
        keepalive_failures: i64::from(b.keepalive_failures),
    }
}

/// A stored registration back as a binding; `None` if a field does not parse (skipped).
fn binding_of(r: &farside_store::RegistrationRow) -> Option<Binding> {
    let transport = match r.transport.as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        "ws" => Transport::Ws,
        "wss" => Transport::Wss,
        _ => return None,
    };
    Some(Binding {
        contact: r.contact.clone(),
        flow: Flow {
            transport,
            local: r.local.parse().ok()?,
            remote: r.remote.parse().ok()?,
        },
        expires_at: farside_time::Timestamp::from_unix_secs(u64::try_from(r.expires_at).ok()?),
        instance: r.instance.clone(),
        reg_id: r.reg_id.and_then(|n| u32::try_from(n).ok()),
        call_id: r.call_id.clone(),
        cseq: u32::try_from(r.cseq).ok()?,
        path: r
            .path
            .lines()
            .map(str::to_owned)
            .filter(|p| !p.is_empty())
            .collect(),
        nat: NatTests(u16::try_from(r.nat).ok()?),
        keepalive_failures: u32::try_from(r.keepalive_failures).unwrap_or(0),
    })
}
