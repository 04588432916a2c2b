//! Writing to the runtime `--log` file, where engines read our errors.
//!
//! containerd decodes `--log` as a stream of JSON objects and shows the last
//! `error` entry as `OCI runtime create failed: <msg>`; one non-JSON line
//! breaks that decoding. runc opens the file O_APPEND and writes one object
//! per line in the shape `{"level":"error","msg":"...","time":"..."}`. We do
//! the same, and text (`time=... level=error msg="..."`) without
//! `--log-format json`. Errors go to stderr as well, like runc's `fatal`.

use std::fs::OpenOptions;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::args::Globals;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Info,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Info => "info",
        }
    }
}

/// One log line in the format the engine expects (without the newline).
pub fn format_line(json: bool, level: Level, msg: &str, time: &str) -> String {
    if json {
        serde_json::json!({"level": level.as_str(), "msg": msg, "time": time}).to_string()
    } else {
        format!("time={time:?} level={} msg={msg:?}", level.as_str())
    }
}

/// Appends one entry to the `--log` file. Without one, errors and warnings
/// go to stderr, as runc's logger writes there then. Failures to log are
/// reported on stderr: there is nowhere else to say them.
pub fn write(globals: &Globals, level: Level, msg: &str) {
    let Some(path) = &globals.log else {
        if level != Level::Info {
            eprintln!("{msg}");
        }
        return;
    };
    let line = format_line(globals.log_json, level, msg, &rfc3339_now());
    let res = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = res {
        eprintln!("boundary-runc: cannot write to log file {}: {e}", path.display());
    }
}

/// Writes the error with its whole cause chain, to the log and stderr, and
/// exits non-zero.
pub fn fatal(globals: &Globals, err: &anyhow::Error) -> ! {
    let msg = format!("boundary-runc: {err:#}");
    if globals.log.is_some() {
        write(globals, Level::Error, &msg);
    }
    eprintln!("{msg}");
    std::process::exit(1)
}

/// Current UTC time as RFC 3339 with nanoseconds.
pub fn rfc3339_now() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

/// Formats seconds since the epoch (UTC).
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_795_000_000, 5), "2026-11-18T11:06:40.000000005Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn json_line_is_what_containerd_decodes() {
        let l = format_line(true, Level::Error, "bad \"rule\"\nx", "T");
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "bad \"rule\"\nx");
        assert_eq!(v["time"], "T");
        assert!(!l.contains('\n'));
    }

    #[test]
    fn appends_to_the_log_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        std::fs::write(&path, "{\"level\":\"info\",\"msg\":\"before\",\"time\":\"t\"}\n").unwrap();
        let g = Globals { log: Some(path.clone()), log_json: true, ..Default::default() };
        write(&g, Level::Error, "boundary-runc: broken");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["msg"], "boundary-runc: broken");
    }
}
