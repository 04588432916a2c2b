//! The append-only JSON-lines audit log.
//!
//! Callers on the hot path only push an [`Event`] (and the time) onto a
//! queue; one writer thread assigns the sequence number, serialises an
//! [`boundary_contract::AuditRecord`] per line and writes. The writer takes
//! everything queued at once and writes it with one `write(2)`, without
//! waiting for more (coalescing, never delaying): a record is on its way to
//! the file as soon as the writer is free. A sender wakes the writer only
//! when it sleeps; while it is busy, records just queue up behind it. On
//! the worker's runtime thread the wake is deferred to the end of the
//! runtime's round of ready work ([`AuditLog::wake_deferred`], called as
//! the runtime parks) or until [`DEFER_MAX`] records wait, whichever comes
//! first: one wake per round instead of one per request. The
//! sequence continues from the last record already in the file, so a
//! restarted sidecar never reuses a number. Header values, bodies and key
//! material are never part of an event.
//!
//! A log may have a size limit (`[audit] max_bytes`): a container that
//! floods the sidecar with DNS questions or denied requests must not fill
//! the host's disk. Once the next record would take the file past the
//! limit, the writer writes one notice instead and from then on counts the
//! records it does not write, by decision and kind, and writes the counts
//! as summary records (`kind` `audit`): at most once a minute while
//! records are being counted (and whenever a million wait), on every
//! [`AuditLog::flush`] (the worker flushes when it stops) and when the log
//! closes. Nothing is dropped without being counted, except the counts
//! not yet written when the worker is killed rather than stopped; only the
//! summaries go past the limit. A single record over an eighth of the limit
//! (possible only with a small limit) is counted alone, without ending
//! the records one by one.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use boundary_contract::AuditRecord;
use serde::Serialize;

/// Bytes read back from the end of the log to find the last record.
const TAIL_WINDOW: u64 = 64 * 1024;
/// A batch is written out early once its lines reach this size.
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Room kept under a size limit for the notice that the limit is reached.
const NOTICE_ROOM: u64 = 1024;
/// While records are being counted instead of written, their counts are
/// written at most this often (and on every flush and at the end).
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);
/// ... and as soon as this many records wait to be counted in one: a worker
/// killed rather than stopped loses at most these.
pub const SUMMARY_AFTER: u64 = 1_000_000;
/// The smallest size limit a log may have.
pub const MIN_LIMIT: u64 = boundary_contract::AUDIT_MIN_MAX_BYTES;
/// On a deferring thread, this many waiting records wake the writer without
/// waiting for the end of the round (a runtime that never runs out of
/// ready work still gets its records written).
pub const DEFER_MAX: usize = 64;

thread_local! {
    /// Set on the worker's runtime thread ([`AuditLog::defer_wakes_here`]).
    static DEFER_WAKES: Cell<bool> = const { Cell::new(false) };
}

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
    Record { time: SystemTime, ev: Event },
    /// Answered (the flag set, the condvar notified) once every record
    /// queued before it is written.
    Flush(Arc<(Mutex<bool>, Condvar)>),
}

/// What the senders and the writer share.
struct Queue {
    state: Mutex<Pending>,
    /// Wakes the writer.
    wake: Condvar,
    /// A deferring thread queued a record for a sleeping writer and did not
    /// wake it: [`AuditLog::wake_deferred`] owes the wake.
    owed: AtomicBool,
}

#[derive(Default)]
struct Pending {
    msgs: Vec<Msg>,
    /// The writer sleeps on `wake` and must be notified.
    writer_idle: bool,
    /// Every [`AuditLog`] handle is gone: the writer drains and stops.
    closed: bool,
    /// The writer thread has ended (a panic): records can no longer land.
    writer_gone: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves the queue consistent
        // (pushes and swaps only), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `msg`; false when the writer is gone. `defer`: leave a
    /// sleeping writer asleep (the wake is owed) unless [`DEFER_MAX`]
    /// messages wait.
    fn push(&self, msg: Msg, defer: bool) -> bool {
        let mut p = self.lock();
        if p.writer_gone {
            return false;
        }
        p.msgs.push(msg);
        if p.writer_idle {
            if defer && p.msgs.len() < DEFER_MAX {
                self.owed.store(true, Ordering::Relaxed);
                return true;
            }
            p.writer_idle = false;
            drop(p);
            self.wake.notify_one();
        }
        true
    }

    /// Wakes the writer if it sleeps with messages waiting.
    fn wake_if_waiting(&self) {
        let mut p = self.lock();
        if p.writer_idle && !p.msgs.is_empty() {
            p.writer_idle = false;
            drop(p);
            self.wake.notify_one();
        }
    }
}

/// The last handle's drop closes the queue.
struct Sender {
    queue: Arc<Queue>,
    /// Records queued so far (for [`AuditLog::recorded`]).
    recorded: AtomicU64,
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut p = self.queue.lock();
        p.closed = true;
        drop(p);
        self.queue.wake.notify_one();
    }
}

/// Handle to the audit log; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct AuditLog {
    tx: Arc<Sender>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Takes over `file` (opened read + append) and starts the writer thread.
    pub fn open(file: File, container_id: &str) -> io::Result<AuditLog> {
        let (log, writer) = AuditLog::open_unstarted(file, container_id)?;
        writer.start()?;
        Ok(log)
    }

    /// [`AuditLog::open`] without the writer thread, which
    /// [`UnstartedWriter::start`] starts: records queue until then. The
    /// worker starts it once its privileges are dropped, so that no other
    /// thread exists while it changes credentials (glibc makes every thread
    /// change them too, and waits for each to be scheduled).
    pub fn open_unstarted(file: File, container_id: &str) -> io::Result<(AuditLog, UnstartedWriter)> {
        AuditLog::open_unstarted_limited(file, container_id, None)
    }

    /// [`AuditLog::open`] with a size limit (see the module's doc); `None`:
    /// no limit. A limit under [`MIN_LIMIT`] is raised to it.
    pub fn open_limited(file: File, container_id: &str, limit: Option<u64>) -> io::Result<AuditLog> {
        let (log, writer) = AuditLog::open_unstarted_limited(file, container_id, limit)?;
        writer.start()?;
        Ok(log)
    }

    /// [`AuditLog::open_unstarted`] with a size limit.
    pub fn open_unstarted_limited(mut file: File, container_id: &str, limit: Option<u64>) -> io::Result<(AuditLog, UnstartedWriter)> {
        let (last_seq, needs_newline) = last_seq(&mut file)?;
        let len = file.metadata()?.len();
        let queue = Arc::new(Queue { state: Mutex::new(Pending::default()), wake: Condvar::new(), owed: AtomicBool::new(false) });
        let writer = Writer {
            out: file,
            buf: Vec::with_capacity(64 * 1024),
            container_id: container_id.to_owned(),
            seq: last_seq,
            needs_newline,
            clock: Clock::default(),
            limit: limit.map(|l| Limit::new(l, len)),
        };
        let unstarted = UnstartedWriter { writer, queue: queue.clone() };
        Ok((AuditLog { tx: Arc::new(Sender { queue, recorded: AtomicU64::new(0) }) }, unstarted))
    }

    /// Queues `ev` with the current time. Never blocks on disk.
    pub fn record(&self, ev: Event) {
        self.tx.recorded.fetch_add(1, Ordering::Relaxed);
        let time = SystemTime::now();
        if !self.tx.queue.push(Msg::Record { time, ev }, DEFER_WAKES.get()) {
            log::error!("audit writer has stopped; an audit record was lost");
        }
    }

    /// How many records were queued through this log so far: every
    /// decision the sidecar makes is one, so an unchanged count means no
    /// request and no DNS question was judged meanwhile.
    pub fn recorded(&self) -> u64 {
        self.tx.recorded.load(Ordering::Relaxed)
    }

    /// From now on, records queued by this thread wake a sleeping writer
    /// only through [`AuditLog::wake_deferred`] or once [`DEFER_MAX`] wait.
    /// For a runtime thread whose park hook calls `wake_deferred`.
    pub fn defer_wakes_here() {
        DEFER_WAKES.set(true);
    }

    /// Wakes the writer if a deferring thread left records for it. Cheap
    /// when nothing is owed (one atomic swap): fit for a runtime's
    /// `on_thread_park`.
    pub fn wake_deferred(&self) {
        if self.tx.queue.owed.swap(false, Ordering::Relaxed) {
            self.tx.queue.wake_if_waiting();
        }
    }

    /// Blocks until every record queued before this call is on disk.
    pub fn flush(&self) {
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        if self.tx.queue.push(Msg::Flush(done.clone()), false) {
            let (flag, cv) = &*done;
            let mut flushed = flag.lock().unwrap_or_else(|p| p.into_inner());
            while !*flushed {
                flushed = cv.wait(flushed).unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}

/// An audit log's writer, not yet running (see [`AuditLog::open_unstarted`]).
pub struct UnstartedWriter {
    writer: Writer,
    queue: Arc<Queue>,
}

impl UnstartedWriter {
    /// Starts the writer thread.
    pub fn start(self) -> io::Result<()> {
        let UnstartedWriter { writer, queue } = self;
        std::thread::Builder::new().name("audit-writer".into()).spawn(move || {
            let _gone = WriterGone(queue.clone());
            writer.run(&queue);
        })?;
        Ok(())
    }
}

/// Marks the queue when the writer thread ends, however it ends, and
/// answers the flushes still waiting (their records cannot land).
struct WriterGone(Arc<Queue>);

impl Drop for WriterGone {
    fn drop(&mut self) {
        let mut p = self.0.lock();
        p.writer_gone = true;
        let left = std::mem::take(&mut p.msgs);
        drop(p);
        let lost = left.iter().filter(|m| matches!(m, Msg::Record { .. })).count();
        if lost > 0 {
            log::error!("audit writer has stopped; {lost} audit records were lost");
        }
        for msg in left {
            if let Msg::Flush(done) = msg {
                answer(&done);
            }
        }
    }
}

fn answer(done: &(Mutex<bool>, Condvar)) {
    *done.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
    done.1.notify_all();
}

/// One line as written: the fields of [`AuditRecord`], in its order and
/// with its names, borrowed (no copies per record). A test checks that both
/// serialise to the same bytes.
#[derive(Serialize)]
struct Line<'a> {
    time: &'a str,
    container_id: &'a str,
    seq: u64,
    kind: &'a str,
    decision: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
}

struct Writer {
    out: File,
    /// Lines of the current batch, written with one `write(2)`.
    buf: Vec<u8>,
    container_id: String,
    seq: u64,
    needs_newline: bool,
    clock: Clock,
    /// The size limit and what it has kept out, if the log has one.
    limit: Option<Limit>,
}

/// A log's size limit and the records counted instead of written.
struct Limit {
    max: u64,
    /// Bytes in the file, as far as this writer knows (what it found when
    /// it opened the file, plus what it wrote).
    len: u64,
    /// The limit is reached: records are counted, not written.
    full: bool,
    allowed: Tally,
    denied: Tally,
    /// When the first record of the current counts was kept out.
    since: Option<SystemTime>,
    /// When counts were last written (or the limit reached).
    last_summary: Instant,
    /// [`SUMMARY_EVERY`] (shorter in tests).
    every: Duration,
}

impl Limit {
    fn new(max: u64, len: u64) -> Limit {
        let max = max.max(MIN_LIMIT);
        Limit {
            max,
            len,
            // A file already at its limit stays there across restarts.
            full: len.saturating_add(NOTICE_ROOM) > max,
            allowed: Tally::default(),
            denied: Tally::default(),
            since: None,
            last_summary: Instant::now(),
            every: SUMMARY_EVERY,
        }
    }

    fn count(&mut self, time: SystemTime, ev: &Event) {
        self.since.get_or_insert(time);
        if ev.allowed { &mut self.allowed } else { &mut self.denied }.add(ev.kind);
    }

    /// How long until the counts are due to be written; `None` if there
    /// are none. Due at once when [`SUMMARY_AFTER`] wait.
    fn summary_due_in(&self) -> Option<Duration> {
        self.since?;
        if self.allowed.total + self.denied.total >= SUMMARY_AFTER {
            return Some(Duration::ZERO);
        }
        Some(self.every.saturating_sub(self.last_summary.elapsed()))
    }
}

/// Records kept out by a size limit, in all and by kind.
#[derive(Default)]
struct Tally {
    total: u64,
    kinds: Vec<(&'static str, u64)>,
}

impl Tally {
    fn add(&mut self, kind: &'static str) {
        self.total += 1;
        match self.kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => self.kinds.push((kind, 1)),
        }
    }

    /// "dns 120, https 3".
    fn by_kind(&self) -> String {
        let mut kinds = self.kinds.clone();
        kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        kinds.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
    }
}

impl Writer {
    fn run(mut self, queue: &Queue) {
        let mut batch = Vec::new();
        loop {
            let done;
            {
                let mut p = queue.lock();
                while p.msgs.is_empty() && !p.closed {
                    let due = self.limit.as_ref().and_then(Limit::summary_due_in);
                    if due.is_some_and(|d| d.is_zero()) {
                        break; // only the counts to write
                    }
                    p.writer_idle = true;
                    p = match due {
                        Some(d) => queue.wake.wait_timeout(p, d).unwrap_or_else(|poisoned| poisoned.into_inner()).0,
                        None => queue.wake.wait(p).unwrap_or_else(|poisoned| poisoned.into_inner()),
                    };
                }
                p.writer_idle = false;
                done = p.closed && p.msgs.is_empty();
                std::mem::swap(&mut p.msgs, &mut batch);
            }
            self.write_batch(&mut batch);
            if done {
                // Closed and drained: the counts, if any, go last.
                self.summarise();
                self.write_out();
                return;
            }
        }
    }

    /// Writes `batch` in order (emptying it), answering each flush once
    /// everything before it is written.
    fn write_batch(&mut self, batch: &mut Vec<Msg>) {
        for msg in batch.drain(..) {
            match msg {
                Msg::Record { time, ev } => {
                    self.record(time, &ev);
                    if self.limit.as_ref().is_some_and(|l| l.allowed.total + l.denied.total >= SUMMARY_AFTER) {
                        self.summarise();
                    }
                    if self.buf.len() >= MAX_BATCH_BYTES {
                        self.write_out();
                    }
                }
                Msg::Flush(done) => {
                    self.summarise();
                    self.write_out();
                    answer(&done);
                }
            }
        }
        if self.limit.as_ref().and_then(Limit::summary_due_in).is_some_and(|d| d.is_zero()) {
            self.summarise();
        }
        self.write_out();
    }

    /// Appends the line for `ev` to the batch, or counts it if the size
    /// limit keeps it out.
    fn record(&mut self, time: SystemTime, ev: &Event) {
        let Some(limit) = &mut self.limit else {
            self.format(time, ev);
            return;
        };
        if limit.full {
            limit.count(time, ev);
            return;
        }
        let (max, len) = (limit.max, limit.len);
        let (mark, seq, newline) = (self.buf.len(), self.seq, self.needs_newline);
        self.format(time, ev);
        let line = (self.buf.len() - mark) as u64;
        if len + self.buf.len() as u64 + NOTICE_ROOM <= max && line <= max / 8 {
            return;
        }
        // Taken back (the newline owed to a torn last line included).
        self.buf.truncate(mark);
        self.seq = seq;
        self.needs_newline = newline;
        if line > max / 8 {
            // One record too big for a small limit does not end the log's
            // records one by one: it alone is counted.
            if let Some(limit) = &mut self.limit {
                limit.count(time, ev);
            }
            return;
        }
        // This record would take the file past its limit: the notice
        // takes its place, and it is the first one counted.
        let notice = Event::deny(
            "audit",
            format!(
                "this audit log reached its size limit ({max} bytes, [audit] max_bytes): from here on decisions are \
                 counted and their counts written here at most once a minute, not written one by one"
            ),
        );
        self.format(time, &notice);
        if let Some(limit) = &mut self.limit {
            limit.full = true;
            limit.last_summary = Instant::now();
            limit.count(time, ev);
        }
    }

    /// Appends the counts of the records kept out since the last summary
    /// (one line for the allowed, one for the denied) and resets them.
    fn summarise(&mut self) {
        let Some(limit) = &mut self.limit else { return };
        let Some(since) = limit.since.take() else { return };
        limit.last_summary = Instant::now();
        let max = limit.max;
        let tallies = [(true, std::mem::take(&mut limit.allowed)), (false, std::mem::take(&mut limit.denied))];
        let now = SystemTime::now();
        for (allowed, tally) in tallies {
            if tally.total == 0 {
                continue;
            }
            let ev = Event {
                kind: "audit",
                allowed,
                reason: Some(format!(
                    "{} {} decisions since {} not written one by one (this log's size limit is {max} bytes, [audit] max_bytes): {}",
                    tally.total,
                    if allowed { "allowed" } else { "denied" },
                    rfc3339(since),
                    tally.by_kind()
                )),
                ..Event::default()
            };
            self.format(now, &ev);
        }
    }

    /// Appends the line for `ev` to the batch.
    fn format(&mut self, time: SystemTime, ev: &Event) {
        self.seq += 1;
        let line = Line {
            time: self.clock.format(time),
            container_id: &self.container_id,
            seq: self.seq,
            kind: ev.kind,
            decision: if ev.allowed { "allow" } else { "deny" },
            method: ev.method.as_deref(),
            url: ev.url.as_deref(),
            host: ev.host.as_deref(),
            rule: ev.rule.as_deref(),
            reason: ev.reason.as_deref(),
            status: ev.status,
            bytes: ev.bytes,
        };
        if std::mem::take(&mut self.needs_newline) {
            self.buf.push(b'\n');
        }
        let mark = self.buf.len();
        match serde_json::to_writer(&mut self.buf, &line) {
            Ok(()) => self.buf.push(b'\n'),
            Err(e) => {
                self.buf.truncate(mark);
                log::error!("serialising audit record {}: {e}", self.seq);
            }
        }
    }

    fn write_out(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if let Err(e) = self.out.write_all(&self.buf) {
            log::error!("writing {} bytes of audit records (up to seq {}): {e}", self.buf.len(), self.seq);
        }
        if let Some(limit) = &mut self.limit {
            limit.len += self.buf.len() as u64;
        }
        self.buf.clear();
    }
}

/// Formats record times, the part up to the second computed once a second.
#[derive(Default)]
struct Clock {
    second: Option<u64>,
    text: String,
}

impl Clock {
    fn format(&mut self, t: SystemTime) -> &str {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        if self.second != Some(d.as_secs()) {
            self.second = Some(d.as_secs());
            self.text = rfc3339(UNIX_EPOCH + std::time::Duration::from_secs(d.as_secs()));
        }
        // "....:SS.000Z": replace the milliseconds.
        let ms = d.subsec_millis();
        let digits = [b'0' + (ms / 100) as u8, b'0' + (ms / 10 % 10) as u8, b'0' + (ms % 10) as u8];
        let len = self.text.len();
        self.text.replace_range(len - 4..len - 1, std::str::from_utf8(&digits).unwrap_or("000"));
        &self.text
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

    /// Drops the last handle and waits (up to 2 s) for the writer to end.
    fn close_and_wait(log: AuditLog) -> bool {
        let queue = log.tx.queue.clone();
        drop(log);
        for _ in 0..200 {
            if queue.lock().writer_gone {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
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

    #[test]
    fn line_serialises_like_the_contract_record() {
        let mut w = Writer {
            out: tempfile::tempfile().unwrap(),
            buf: Vec::new(),
            container_id: "c\"1".into(),
            seq: 6,
            needs_newline: false,
            clock: Clock::default(),
            limit: None,
        };
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_000 + 3_723_056);
        let full = Event {
            kind: "https",
            allowed: true,
            method: Some("GET".into()),
            url: Some("https://a.example/\u{e9}?q=\"x\"".into()),
            host: Some("a.example".into()),
            rule: Some("domain=a.example".into()),
            reason: Some("why\n".into()),
            status: Some(200),
            bytes: Some(1024),
        };
        for ev in [full, Event::deny("dns", "not allowed"), Event::default()] {
            w.buf.clear();
            w.format(t, &ev);
            let rec = AuditRecord {
                time: rfc3339(t),
                container_id: "c\"1".into(),
                seq: w.seq,
                kind: ev.kind.into(),
                decision: if ev.allowed { "allow" } else { "deny" }.into(),
                method: ev.method,
                url: ev.url,
                host: ev.host,
                rule: ev.rule,
                reason: ev.reason,
                status: ev.status,
                bytes: ev.bytes,
            };
            let mut want = serde_json::to_vec(&rec).unwrap();
            want.push(b'\n');
            assert_eq!(String::from_utf8(w.buf.clone()).unwrap(), String::from_utf8(want).unwrap());
        }
    }

    #[test]
    fn clock_matches_rfc3339_across_seconds() {
        let mut c = Clock::default();
        for ms in [0, 999, 1_000, 1_001, 59_999, 60_000, 86_399_999, 86_400_000, 86_400_007] {
            let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms);
            assert_eq!(c.format(t), rfc3339(t));
        }
    }

    /// Many senders racing the writer: every record lands once, the lines
    /// are whole, `seq` is contiguous, and each sender's records keep their
    /// order (the writer takes batches, never reorders within one).
    #[test]
    fn coalesced_batches_keep_order_and_seq() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = open(&path);
        let senders: Vec<_> = (0..4)
            .map(|s| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        log.record(Event { kind: "http", host: Some(format!("{s}")), bytes: Some(i), ..Event::default() });
                        if i % 500 == 0 {
                            log.flush();
                        }
                    }
                })
            })
            .collect();
        for t in senders {
            t.join().unwrap();
        }
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let recs: Vec<AuditRecord> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(recs.len(), 8_000);
        assert!(recs.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1));
        for s in 0..4 {
            let mine: Vec<u64> = recs.iter().filter(|r| r.host.as_deref() == Some(&*s.to_string())).filter_map(|r| r.bytes).collect();
            assert_eq!(mine, (0..2_000).collect::<Vec<_>>(), "sender {s}");
        }
    }

    /// On a deferring thread records wait for `wake_deferred` (the
    /// runtime's park) or for DEFER_MAX of them; a flush wakes at once.
    #[test]
    fn deferred_wakes_come_from_the_park_hook_or_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = open(&path);
        let queue = log.tx.queue.clone();
        let writer_asleep = || {
            for _ in 0..500 {
                let p = queue.lock();
                if p.writer_idle && p.msgs.is_empty() {
                    return;
                }
                drop(p);
                std::thread::sleep(Duration::from_millis(2));
            }
            panic!("the writer never went idle");
        };
        let landed = |n: usize| {
            for _ in 0..500 {
                if records(&path).len() == n {
                    return;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            panic!("expected {n} records, found {}", records(&path).len());
        };
        let log2 = log.clone();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                AuditLog::defer_wakes_here();
                writer_asleep();
                log2.record(Event::deny("tcp", "deferred"));
                // The writer was left asleep and the wake is owed.
                let p = log2.tx.queue.lock();
                assert!(p.writer_idle && p.msgs.len() == 1, "a deferring record woke the writer");
                drop(p);
                assert!(log2.tx.queue.owed.load(Ordering::Relaxed));
                log2.wake_deferred();
                assert!(!log2.tx.queue.owed.load(Ordering::Relaxed));
            });
        });
        landed(1);
        writer_asleep();
        let log3 = log.clone();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                AuditLog::defer_wakes_here();
                for _ in 0..DEFER_MAX {
                    log3.record(Event::deny("tcp", "capped"));
                }
            });
        });
        landed(1 + DEFER_MAX);
        // Other threads wake it at once, as before.
        writer_asleep();
        log.record(Event::deny("tcp", "not deferred"));
        landed(2 + DEFER_MAX);
        let recs = records(&path);
        assert!(recs.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1));
    }

    /// The writer drains what is queued when the last handle goes, and a
    /// flush after a quiet spell still finds the writer (it sleeps, the
    /// next sender wakes it).
    #[test]
    fn wakes_after_idle_and_drains_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = open(&path);
        log.record(Event::deny("tcp", "first"));
        log.flush();
        std::thread::sleep(Duration::from_millis(50));
        log.record(Event::deny("tcp", "after a pause"));
        log.flush();
        assert_eq!(records(&path).len(), 2);
        for _ in 0..100 {
            log.record(Event::deny("tcp", "queued at close"));
        }
        assert!(close_and_wait(log), "the writer stops once every handle is gone");
        let recs = records(&path);
        assert_eq!(recs.len(), 102);
        assert_eq!(recs.last().unwrap().seq, 102);
    }
    fn limited(path: &std::path::Path, every: Duration) -> AuditLog {
        let f = OpenOptions::new().read(true).append(true).create(true).open(path).unwrap();
        let (log, mut writer) = AuditLog::open_unstarted_limited(f, "c1", Some(MIN_LIMIT)).unwrap();
        writer.writer.limit.as_mut().unwrap().every = every;
        writer.start().unwrap();
        log
    }

    /// "N allowed decisions since ..." -> N, by decision.
    fn counted(recs: &[AuditRecord]) -> (u64, u64) {
        let mut n = (0, 0);
        for r in recs.iter().filter(|r| r.kind == "audit" && r.reason.as_deref().is_some_and(|t| t.contains(" decisions since "))) {
            let count: u64 = r.reason.as_deref().unwrap().split(' ').next().unwrap().parse().unwrap();
            if r.decision == "allow" { n.0 += count } else { n.1 += count }
        }
        n
    }

    fn flood(log: &AuditLog, n: usize) {
        for i in 0..n {
            if i % 3 == 0 {
                log.record(Event { kind: "https", allowed: true, url: Some(format!("https://a.example/{i:0>80}")), ..Event::default() });
            } else {
                log.record(Event::deny("dns", format!("no rule allows {i:0>80}.example")));
            }
        }
    }

    #[test]
    fn a_size_limit_keeps_the_file_small_and_counts_what_it_keeps_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = limited(&path, SUMMARY_EVERY);
        flood(&log, 3000);
        log.flush();
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size <= MIN_LIMIT + 1024, "{size} bytes for a limit of {MIN_LIMIT}");
        let recs = records(&path);
        assert!(recs.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1), "seq runs on without gaps");
        let notices: Vec<_> = recs.iter().filter(|r| r.kind == "audit" && r.reason.as_deref().unwrap().contains("reached its size limit")).collect();
        assert_eq!(notices.len(), 1, "one notice");
        let written = recs.iter().filter(|r| r.kind != "audit").count() as u64;
        assert!(written > 100 && written < 3000, "{written} written");
        let (allowed, denied) = counted(&recs);
        assert_eq!(written + allowed + denied, 3000, "every record is written or counted");
        let written_allowed = recs.iter().filter(|r| r.kind == "https").count() as u64;
        assert_eq!(written_allowed + allowed, 1000);
        let summary = recs.iter().rev().find(|r| r.decision == "deny" && r.kind == "audit").unwrap().reason.clone().unwrap();
        assert!(summary.contains(&format!("{denied} denied decisions since ")) && summary.ends_with(&format!(": dns {denied}")), "{summary}");
        assert!(summary.contains("[audit] max_bytes"), "{summary}");

        // Nothing counted since the last flush: no summary, no growth.
        log.flush();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        drop(log);

        // A restarted sidecar finds the file at its limit: no second
        // notice, its records are counted at once and summarised at close.
        let log = limited(&path, SUMMARY_EVERY);
        flood(&log, 30);
        close_and_wait(log);
        let again = records(&path);
        assert_eq!(again.iter().filter(|r| r.reason.as_deref().is_some_and(|t| t.contains("reached its size limit"))).count(), 1);
        let (a2, d2) = counted(&again[recs.len()..]);
        assert_eq!((a2, d2), (10, 20), "the closing summary counts the restart's records");
        assert_eq!(again.last().unwrap().seq, again.len() as u64);
    }

    #[test]
    fn counts_are_written_while_a_flood_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = limited(&path, Duration::from_millis(100));
        flood(&log, 1000);
        // No flush: the writer itself writes the counts when they are due,
        // even with no further record to wake it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut recs = Vec::new();
        while Instant::now() < deadline {
            recs = records(&path);
            if counted(&recs).0 + counted(&recs).1 > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let written = recs.iter().filter(|r| r.kind != "audit").count() as u64;
        let (a, d) = counted(&recs);
        assert_eq!(written + a + d, 1000, "counts written without a flush");
    }
    /// A torn last line (a crash mid-write, a full disk) and a file one
    /// record short of its limit: the notice still starts a line of its own.
    #[test]
    fn the_notice_after_a_torn_line_is_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let target = MIN_LIMIT - NOTICE_ROOM - 50;
        let log = open(&path);
        while std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) + 400 < target {
            flood(&log, 1);
            log.flush();
        }
        drop(log);
        let len = std::fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"time\":\"x").unwrap();
        f.write_all(&vec![b'x'; (target - len - 10) as usize]).unwrap();
        drop(f);
        let before = records(&path).len();
        let log = limited(&path, SUMMARY_EVERY);
        flood(&log, 10);
        log.flush();
        let after = records(&path);
        assert!(
            after.iter().any(|r| r.reason.as_deref().is_some_and(|t| t.contains("reached its size limit"))),
            "the notice is a line of its own: {:?}",
            std::fs::read_to_string(&path).unwrap().lines().last()
        );
        let written = after[before..].iter().filter(|r| r.kind != "audit").count() as u64;
        let (a, d) = counted(&after);
        assert_eq!(written + a + d, 10);
    }

    /// One record too big for a small limit is counted alone; the records
    /// after it are still written one by one.
    #[test]
    fn one_huge_record_does_not_end_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = limited(&path, SUMMARY_EVERY);
        log.record(Event { kind: "https", allowed: false, url: Some(format!("https://a.example/{}", "\"".repeat(20_000))), ..Event::default() });
        log.record(Event::deny("dns", "after the huge one"));
        log.flush();
        let recs = records(&path);
        assert!(recs.iter().any(|r| r.reason.as_deref() == Some("after the huge one")), "{recs:?}");
        assert!(!recs.iter().any(|r| r.reason.as_deref().is_some_and(|t| t.contains("reached its size limit"))), "{recs:?}");
        assert_eq!(counted(&recs), (0, 1));
        assert!(std::fs::metadata(&path).unwrap().len() < 4096);
    }
}
