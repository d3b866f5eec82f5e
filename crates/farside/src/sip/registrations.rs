//! Registrations in the store: read back at start, and kept in step with the registrar by a
//! writer thread of its own (SQLite calls block; the SIP thread must not).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use farside_sip::nat::{NatTests, Transport};
use farside_sip::registrar::{Binding, Flow};
use farside_store::{RegistrationRow, Store};
use farside_time::Timestamp;

/// What the SIP thread hands the writer.
#[derive(Debug)]
pub enum Job {
    /// An address of record and its bindings now.
    Change(String, Vec<RegistrationRow>),
    /// Acknowledge `seq` once every change handed in before it is in the store (or say that
    /// it could not be written).
    Mark(u64),
}

/// The writer's answer to a [`Job::Mark`]: its number, and whether everything before it is
/// in the store.
pub type Ack = (u64, bool);

/// The writer's ends: where jobs go, where acknowledgements come back, and whether the store
/// takes writes now.
pub struct Writer {
    /// Jobs.
    pub jobs: SyncSender<Job>,
    /// Acknowledgements of marks.
    pub acks: Receiver<Ack>,
    /// False while the store refuses writes (a full disk, a file that cannot be written).
    pub healthy: Arc<AtomicBool>,
}

/// Bindings by address of record.
pub type ByAor = Vec<(String, Vec<Binding>)>;

/// The stored registrations still live at `now` whose flows `node` holds (and those stored
/// before nodes were recorded), by address of record. Other nodes' are theirs to serve and
/// ping.
pub fn load(store: &mut dyn Store, now: Timestamp, node: &str) -> anyhow::Result<ByAor> {
    let rows = store
        .load_registrations(i64::try_from(now.unix_secs()).unwrap_or(i64::MAX))
        .map_err(|e| anyhow::anyhow!("S303 cannot read registrations from the store: {e}"))?;
    Ok(by_aor(rows.iter().filter(|r| held_by(r, node))))
}

/// Reads the bindings other nodes hold from the shared store at `url` about once a second, on
/// a thread of its own (store calls block), and publishes them when they change; the SIP
/// thread hands them to the server (`SipServer::set_bindings_elsewhere`). A read that fails
/// is tried again each second (the store connects again by itself), its failure logged once
/// (S423); the last bindings read stay meanwhile.
pub fn watch_elsewhere(
    url: &str,
    node: String,
) -> anyhow::Result<Arc<crate::runtime::versioned::Versioned<ByAor>>> {
    let mut store =
        farside_store::open(url).map_err(|e| anyhow::anyhow!("S303 cannot open the store: {e}"))?;
    let cell = Arc::new(crate::runtime::versioned::Versioned::new(Vec::new()));
    let out = Arc::clone(&cell);
    std::thread::Builder::new()
        .name("sip-nodes".into())
        .spawn(move || {
            let mut last: Vec<RegistrationRow> = Vec::new();
            let mut failing = false;
            loop {
                std::thread::sleep(ELSEWHERE_POLL);
                if Arc::strong_count(&out) == 1 {
                    return; // the SIP thread is gone
                }
                let now = i64::try_from(crate::runtime::clock::now().unix_secs()).unwrap_or(i64::MAX);
                let rows = match store.load_registrations(now) {
                    Ok(rows) => rows,
                    Err(e) => {
                        if !failing {
                            tracing::warn!(
                                "S423 cannot read the other nodes' registrations from the store: {e}; \
                                 the last ones read stay in use, tried again every second"
                            );
                        }
                        failing = true;
                        continue;
                    }
                };
                failing = false;
                let theirs: Vec<RegistrationRow> =
                    rows.into_iter().filter(|r| !held_by(r, &node)).collect();
                if theirs != last {
                    out.publish(by_aor(&theirs));
                    last = theirs;
                }
            }
        })
        .context("spawn the SIP thread's reader of other nodes' registrations")?;
    Ok(cell)
}

/// Whether `node` holds the flow of `row`: rows stored before nodes were recorded are every
/// node's own.
fn held_by(row: &RegistrationRow, node: &str) -> bool {
    row.node == node || row.node.is_empty()
}

/// `rows` as bindings by address of record; a row with a field that does not parse is skipped.
fn by_aor<'a>(rows: impl IntoIterator<Item = &'a RegistrationRow>) -> ByAor {
    let mut by_aor: std::collections::BTreeMap<String, Vec<Binding>> = Default::default();
    for row in rows {
        if let Some(b) = binding_of(row) {
            by_aor.entry(row.aor.clone()).or_default().push(b);
        }
    }
    by_aor.into_iter().collect()
}

/// How often [`watch_elsewhere`] reads the store.
const ELSEWHERE_POLL: Duration = Duration::from_secs(1);

/// The store rows of `aor`'s bindings.
pub fn rows(aor: &str, bindings: &[Binding]) -> Vec<RegistrationRow> {
    bindings.iter().map(|b| row_of(aor, b)).collect()
}

/// The store writer: a thread of its own, since SQLite calls block. It ends (and its handle
/// returns) once the job sender is dropped and what it holds is written, or tried once more.
///
/// Its failure rule: a change that cannot be written is not dropped. The writer keeps the
/// latest bindings of every address of record it could not write, tries again every
/// [`RETRY`] while taking in new jobs (the newer change of an address of record replaces the
/// older), logs the failure once (S407) and the recovery once (S420), and says meanwhile
/// through [`Writer::healthy`] that the store takes no writes, which the SIP thread passes to the
/// server (`SipServer::set_store_writable`), which answers
/// REGISTERs 500 with Retry-After instead of acknowledging what would not last a restart.
pub fn spawn_writer(
    mut store: Box<dyn Store>,
    node: String,
) -> anyhow::Result<(Writer, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(WRITE_QUEUE);
    let (ack_tx, ack_rx) = std::sync::mpsc::channel::<Ack>();
    let healthy = Arc::new(AtomicBool::new(true));
    let ok = Arc::clone(&healthy);
    let handle = std::thread::Builder::new()
        .name("sip-store".into())
        .spawn(move || {
            // The latest bindings of each address of record not yet written.
            let mut pending: HashMap<String, Vec<RegistrationRow>> = HashMap::new();
            let mut marks: Vec<u64> = Vec::new();
            let mut failing = false;
            let mut last_write: Option<Instant> = None;
            let mut open = true;
            while open || !pending.is_empty() {
                // Wait for work: as long as it takes when nothing is held, until the next
                // retry while the store fails.
                let first = match (pending.is_empty() && marks.is_empty(), failing) {
                    _ if !open => None,
                    (true, _) => match rx.recv() {
                        Ok(job) => Some(job),
                        Err(_) => break,
                    },
                    (false, true) => match rx.recv_timeout(RETRY) {
                        Ok(job) => Some(job),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => {
                            open = false;
                            None
                        }
                    },
                    (false, false) => None,
                };
                // Under load, at most one transaction per WRITE_INTERVAL: the rest queue up
                // and are coalesced (a kill -9 loses at most that much more).
                if let Some(t) = last_write.filter(|_| !failing && open) {
                    std::thread::sleep(WRITE_INTERVAL.saturating_sub(t.elapsed()));
                }
                let mut take = |job: Job| match job {
                    Job::Change(aor, rows) => {
                        pending.insert(aor, rows);
                    }
                    Job::Mark(seq) => marks.push(seq),
                };
                if let Some(job) = first {
                    take(job);
                }
                for _ in 0..WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(job) => take(job),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                }
                if !pending.is_empty() {
                    last_write = Some(Instant::now());
                    // Taken out while written; put back whole if the store refuses (nothing else
                    // touches `pending` meanwhile: this thread alone takes jobs).
                    let batch: Vec<(String, Vec<RegistrationRow>)> = pending.drain().collect();
                    let rows: usize = batch.iter().map(|(_, r)| r.len()).sum();
                    let result = store.save_registrations_many(&node, &batch);
                    let aors = batch.len();
                    if result.is_err() {
                        pending.extend(batch);
                    }
                    match result {
                        Ok(()) => {
                            tracing::debug!(
                                "S408 saved the registrations of {aors} addresses of record ({rows} bindings)"
                            );
                            if failing {
                                failing = false;
                                ok.store(true, Relaxed);
                                tracing::info!(
                                    "S420 the store takes writes again: every registration held back is saved"
                                );
                            }
                        }
                        Err(e) if !failing => {
                            failing = true;
                            ok.store(false, Relaxed);
                            tracing::warn!(
                                "S407 cannot save the registrations of {aors} addresses of record: {e}; \
                                 they are kept and tried again every second, and REGISTERs are answered \
                                 500 until the store takes writes"
                            );
                        }
                        Err(_) => {}
                    }
                    if !open && failing {
                        // Shutting down with a store that takes nothing: nothing more to try.
                        break;
                    }
                }
                for seq in marks.drain(..) {
                    let _ = ack_tx.send((seq, !failing));
                }
            }
        })
        .context("spawn the SIP store writer")?;
    Ok((
        Writer {
            jobs: tx,
            acks: ack_rx,
            healthy,
        },
        handle,
    ))
}

/// Registration changes waiting for the store writer at most.
const WRITE_QUEUE: usize = 4096;
/// Most changes the store writer puts in one transaction.
const WRITE_BATCH: usize = 4096;
/// Least time between two transactions of the store writer.
const WRITE_INTERVAL: Duration = Duration::from_millis(20);
/// How often the writer tries again while the store refuses writes.
const RETRY: Duration = Duration::from_secs(1);

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
        // The writer's node is what is stored.
        node: String::new(),
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
