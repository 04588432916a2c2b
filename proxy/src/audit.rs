//! The append-only JSON-lines audit log.
//!
//! Callers on the hot path only push an [`Event`] into a channel; one writer
//! thread assigns the sequence number, serialises an
//! [`boundary_contract::AuditRecord`] per line and flushes whenever the
//! channel runs dry. The sequence continues from the last record already in
//! the file, so a restarted sidecar never reuses a number. Header values,
//! bodies and key material are never part of an event.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use boundary_contract::AuditRecord;

/// Bytes read back from the end of the log to find the last record.
const TAIL_WINDOW: u64 = 64 * 1024;

/// One decision to record. `kind` is `http`, `https`, `connect`, `dns`,
/// `tcp`, `tls`, ...
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub kind: &'static str,
    pub allowed: bool,
    pub method: Option<String>,
    pub url: Option<String>,
    pub host: Option<String>,
    pub rule: Option<String>,
    pub reason: Option<String>,
    pub status: Option<u16>,
    pub bytes: Option<u64>,
}

impl Event {
    /// A denial of `kind` for `reason`, other fields empty.
    pub fn deny(kind: &'static str, reason: impl Into<String>) -> Event {
        Event { kind, allowed: false, reason: Some(reason.into()), ..Event::default() }
    }
}

enum Msg {
    Record { time: String, ev: Event },
    Flush(mpsc::SyncSender<()>),
}

/// Handle to the audit log; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Takes over `file` (opened read + append) and starts the writer thread.
    pub fn open(mut file: File, container_id: &str) -> io::Result<AuditLog> {
        let (last_seq, needs_newline) = last_seq(&mut file)?;
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            out: BufWriter::with_capacity(64 * 1024, file),
            container_id: container_id.to_owned(),
            seq: last_seq,
            needs_newline,
        };
        std::thread::Builder::new().name("audit-writer".into()).spawn(move || writer.run(rx))?;
        Ok(AuditLog { tx })
    }

    /// Queues `ev` with the current time. Never blocks on disk.
    pub fn record(&self, ev: Event) {
        let time = rfc3339(SystemTime::now());
        if self.tx.send(Msg::Record { time, ev }).is_err() {
            log::error!("audit writer has stopped; an audit record was lost");
        }
    }

    /// Blocks until every record queued before this call is on disk.
    pub fn flush(&self) {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        if self.tx.send(Msg::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
    }
}

struct Writer {
    out: BufWriter<File>,
    container_id: String,
    seq: u64,
    needs_newline: bool,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(msg) = next {
                match msg {
                    Msg::Record { time, ev } => self.write(time, ev),
                    Msg::Flush(done) => {
                        self.flush();
                        let _ = done.try_send(());
                    }
                }
                next = rx.try_recv().ok();
            }
            self.flush();
        }
        self.flush();
    }

    fn write(&mut self, time: String, ev: Event) {
        self.seq += 1;
        let rec = AuditRecord {
            time,
            container_id: self.container_id.clone(),
            seq: self.seq,
            kind: ev.kind.to_owned(),
            decision: if ev.allowed { "allow" } else { "deny" }.to_owned(),
            method: ev.method,
            url: ev.url,
            host: ev.host,
            rule: ev.rule,
            reason: ev.reason,
            status: ev.status,
            bytes: ev.bytes,
        };
        let mut line = match serde_json::to_vec(&rec) {
            Ok(line) => line,
            Err(e) => {
                log::error!("serialising audit record {}: {e}", self.seq);
                return;
            }
        };
        line.push(b'\n');
        let res = if std::mem::take(&mut self.needs_newline) {
            self.out.write_all(b"\n").and_then(|()| self.out.write_all(&line))
        } else {
            self.out.write_all(&line)
        };
        if let Err(e) = res {
            log::error!("writing audit record {}: {e}", self.seq);
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            log::error!("flushing the audit log: {e}");
        }
    }
}

/// The highest `seq` in the log, and whether the file ends mid-line.
fn last_seq(file: &mut File) -> io::Result<(u64, bool)> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok((0, false));
    }
    let start = len.saturating_sub(TAIL_WINDOW);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::with_capacity((len - start) as usize);
    file.take(TAIL_WINDOW).read_to_end(&mut tail)?;
    let needs_newline = tail.last() != Some(&b'\n');
    let found = tail
        .split(|b| *b == b'\n')
        .rev()
        .find_map(|line| serde_json::from_slice::<AuditRecord>(line).ok())
        .map(|r| r.seq);
    let seq = match found {
        Some(seq) => seq,
        None => {
            // The tail holds no whole record: scan everything for the maximum.
            file.seek(SeekFrom::Start(0))?;
            let mut max = 0;
            for line in BufReader::new(&mut *file).split(b'\n') {
                if let Ok(r) = serde_json::from_slice::<AuditRecord>(&line?) {
                    max = max.max(r.seq);
                }
            }
            max
        }
    };
    file.seek(SeekFrom::End(0))?;
    Ok((seq, needs_newline))
}

/// RFC 3339 UTC with milliseconds, e.g. `2024-05-01T12:00:00.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::time::Duration;

    fn open(path: &std::path::Path) -> AuditLog {
        let f = OpenOptions::new().read(true).append(true).create(true).open(path).unwrap();
        AuditLog::open(f, "c1").unwrap()
    }

    fn records(path: &std::path::Path) -> Vec<AuditRecord> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_000 + 3_723_456); // 2000-02-29 01:02:03.456
        assert_eq!(rfc3339(t), "2000-02-29T01:02:03.456Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(4_102_444_799)), "2099-12-31T23:59:59.000Z");
    }

    #[test]
    fn writes_in_order_and_continues_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = open(&path);
        let l2 = log.clone();
        let t = std::thread::spawn(move || {
            for _ in 0..50 {
                l2.record(Event::deny("dns", "not allowed"));
            }
        });
        for _ in 0..50 {
            log.record(Event { kind: "http", allowed: true, status: Some(200), bytes: Some(5), ..Event::default() });
        }
        t.join().unwrap();
        log.flush();
        let recs = records(&path);
        assert_eq!(recs.len(), 100);
        assert!(recs.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1 && r.container_id == "c1"));
        assert_eq!(recs.iter().filter(|r| r.decision == "allow" && r.status == Some(200)).count(), 50);
        drop(log);

        // A torn last line (crash mid-write) must not break the next start.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"time\":\"x").unwrap();
        let log = open(&path);
        log.record(Event::deny("tcp", "non-HTTP bytes"));
        log.flush();
        let recs = records(&path);
        assert_eq!(recs.last().unwrap().seq, 101);
        assert_eq!(recs.last().unwrap().reason.as_deref(), Some("non-HTTP bytes"));
    }
}
