//! Paths: normalising a request's path and matching `path=` patterns.
//!
//! Requests and patterns go through the same decoding, so they compare like
//! for like: the query and fragment are cut off, each segment is
//! percent-decoded once, and `.`/`..` segments are resolved (request paths
//! only; patterns may not hold them). Anything a server might read two ways
//! is refused instead of guessed at: an encoded `/` (`%2F`), a backslash
//! (raw or `%5C`), NUL and other control characters, malformed escapes,
//! invalid UTF-8 after decoding, an escape that is still there after one
//! decoding and would decode to `/`, `\`, NUL or `.` (`%252F`), a `..` that
//! climbs above the root, a segment that is `.` or `..` up to a `;`
//! (`..;x`: servers that strip path parameters, Tomcat among them, read it
//! as `..`) or dots and spaces other than `.` and `..` (`...`, `.. `:
//! Windows drops trailing dots and spaces), and an empty segment anywhere
//! but the end (`//`): servers
//! disagree on whether `/a//b` is `/a/b`, so it matches no pattern.
//! A trailing `/` is kept: `/a/` is a different path from `/a`.
//!
//! What is judged is what is sent: [`forwarded_path`] gives the request
//! target with its dot-segments resolved the same way (each other segment
//! keeps its bytes as sent), so an origin that would not resolve them, or
//! would resolve them otherwise, sees the path the rules allowed.

use std::borrow::Cow;
use std::fmt;

use crate::decision::DenyReason;

/// Why a path (request or pattern) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PathProblem {
    NotAbsolute,
    QueryInPattern,
    PartialWildcard,
    BadPercent,
    EncodedSlash,
    Nul,
    Backslash,
    ControlChar,
    InvalidUtf8,
    DoubleEncoded,
    EmptySegment,
    DotSegment,
    EscapesRoot,
    DotLookalike,
    SlashLookalike,
    NonAscii,
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathProblem::NotAbsolute => "must start with '/' (or be '*' alone for any path)",
            PathProblem::NonAscii => {
                "holds a character that is not ASCII: write it percent-encoded as UTF-8, as it is sent (é is %C3%A9)"
            }
            PathProblem::QueryInPattern => {
                "may not hold '?' or '#': the query string is ignored when matching"
            }
            PathProblem::PartialWildcard => {
                "uses '*' inside a segment: '*' must be a whole segment"
            }
            PathProblem::BadPercent => "holds a malformed percent escape",
            PathProblem::EncodedSlash => "holds an encoded '/' (%2F)",
            PathProblem::Nul => "holds NUL (raw or %00)",
            PathProblem::Backslash => "holds a backslash (raw or %5C)",
            PathProblem::ControlChar => "holds a control character",
            PathProblem::InvalidUtf8 => "decodes to invalid UTF-8",
            PathProblem::DoubleEncoded => "holds a doubly-encoded '/', '\\', NUL or '.'",
            PathProblem::EmptySegment => "holds an empty segment ('//') before its end",
            PathProblem::DotSegment => "holds a '.' or '..' segment",
            PathProblem::EscapesRoot => "climbs above the root with '..'",
            PathProblem::DotLookalike => {
                "holds a segment of dots with ';' parameters, spaces or more dots ('..;x', '...'), which some servers read as '.' or '..'"
            }
            PathProblem::SlashLookalike => {
                "decodes to a character that some servers read as '/' or '\\' (full-width or division slash, set minus)"
            }
        })
    }
}

/// The path used for matching: query removed, percent-decoded once,
/// dot-segments resolved. Refused with [`DenyReason::UnsafePath`] when it
/// cannot be read one way only (see the module docs).
pub fn normalize_path(path: &str) -> Result<String, DenyReason> {
    normalize_path_cow(path)
        .map(Cow::into_owned)
        .map_err(|_| DenyReason::UnsafePath)
}

/// [`normalize_path`] without allocating when the path is already normal.
pub(crate) fn normalize_path_cow(path: &str) -> Result<Cow<'_, str>, PathProblem> {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    let path = &path[..end];
    if path.is_empty() {
        return Ok(Cow::Borrowed("/"));
    }
    let rest = path.strip_prefix('/').ok_or(PathProblem::NotAbsolute)?;
    let mut already_normal = true;
    let mut segs = rest.split('/').peekable();
    while let Some(seg) = segs.next() {
        if seg.is_empty() && segs.peek().is_some() {
            return Err(PathProblem::EmptySegment);
        }
        seg.bytes().try_for_each(check_byte)?;
        check_dot_lookalike(seg)?;
        // Sent raw (UTF-8), not only percent-encoded: `resolve` checks the
        // decoded segments, but an already normal path never gets there.
        if !seg.is_ascii() && seg.contains(SLASH_LOOKALIKES) {
            return Err(PathProblem::SlashLookalike);
        }
        already_normal &= !(seg.contains('%') || seg == "." || seg == "..");
    }
    if already_normal {
        return Ok(Cow::Borrowed(path));
    }
    resolve(rest).map(Cow::Owned)
}

/// Decode each segment and resolve dot-segments (RFC 3986 5.2.4, except
/// that climbing above the root is an error).
fn resolve(rest: &str) -> Result<String, PathProblem> {
    let mut out = Resolved::with_capacity(rest.len() + 1);
    let mut segs = rest.split('/').peekable();
    while let Some(raw) = segs.next() {
        let seg = decode_segment(raw)?;
        check_dot_lookalike(&seg)?;
        if seg.contains(SLASH_LOOKALIKES) {
            return Err(PathProblem::SlashLookalike);
        }
        let dot = match &*seg {
            "." => Some(false),
            ".." => Some(true),
            _ => None,
        };
        out.push(&seg, dot, segs.peek().is_none()).ok_or(PathProblem::EscapesRoot)?;
    }
    Ok(out.path)
}

/// A path being built segment by segment with its dot-segments resolved
/// (RFC 3986 5.2.4, except that climbing above the root is an error): the
/// one mechanism behind the path the rules judge ([`resolve`], decoded) and
/// the path sent upstream ([`forwarded_path`], as sent).
struct Resolved {
    path: String,
    /// Where each segment in `path` starts, for `..`.
    starts: Vec<usize>,
}

impl Resolved {
    fn with_capacity(n: usize) -> Resolved {
        Resolved { path: String::with_capacity(n), starts: Vec::new() }
    }

    /// Appends `/seg`, or resolves it when it is a dot-segment (`dot`:
    /// `Some(false)` for `.`, `Some(true)` for `..`); a dot-segment at the
    /// end leaves a trailing `/`. `None` when `..` climbs above the root.
    fn push(&mut self, seg: &str, dot: Option<bool>, last: bool) -> Option<()> {
        match dot {
            None => {
                self.starts.push(self.path.len());
                self.path.push('/');
                self.path.push_str(seg);
                return Some(());
            }
            Some(true) => self.path.truncate(self.starts.pop()?),
            Some(false) => {}
        }
        if last {
            self.path.push('/');
        }
        Some(())
    }
}

/// Characters that best-fit mappings (IIS, Windows' code-page
/// conversions) turn into `/` or `\`: full-width solidus and reverse
/// solidus, division slash, fraction slash, set minus. Percent-encoded in
/// a segment they would split it on such a server after it was judged.
/// (The yen and won signs, `\` in code pages 932 and 949, are left alone:
/// URL paths reach servers as UTF-8 or UTF-16, not through those code
/// pages, and they are common in Japanese and Korean paths.)
const SLASH_LOOKALIKES: [char; 5] = ['\u{FF0F}', '\u{FF3C}', '\u{2215}', '\u{2044}', '\u{2216}'];

/// Characters that Unicode compatibility normalisation (NFKC, as some
/// servers and frameworks apply to paths) or best-fit mapping turns into
/// one or more full stops: full-width full stop, one and two dot leaders,
/// the ellipsis, the vertical two dot leader, the small full stop.
const DOT_LOOKALIKES: [char; 6] = ['\u{FF0E}', '\u{2024}', '\u{2025}', '\u{2026}', '\u{FE30}', '\u{FE52}'];

/// A segment that is dots and something a server may drop before it
/// resolves dot-segments (raw or decoded): `..;x` and `.;x` (path
/// parameters, stripped by Tomcat and Spring), `...`, `.. ` and `. .`
/// (trailing dots and spaces, stripped by Windows file APIs and IIS), and
/// the same with a character that normalises to dots ([`DOT_LOOKALIKES`]:
/// `．`, which IIS's best-fit mapping reads as `.`, `‥`, which NFKC turns
/// into `..`, ...). `.` and `..` themselves are resolved, not refused.
fn check_dot_lookalike(seg: &str) -> Result<(), PathProblem> {
    let dot = |c: char| c == '.' || DOT_LOOKALIKES.contains(&c);
    let base = seg.split_once(';').map_or(seg, |(base, _)| base);
    let dots_only = base.starts_with(dot) && base.chars().all(|c| c == ' ' || dot(c));
    if dots_only && seg != "." && seg != ".." {
        return Err(PathProblem::DotLookalike);
    }
    Ok(())
}

/// Whether a raw segment decodes to `.` (`Some(false)`) or `..`
/// (`Some(true)`): `.`, `%2e`, `..`, `.%2E`, `%2e.`, `%2e%2e`.
fn raw_dot_segment(seg: &str) -> Option<bool> {
    let is_dot = |s: &str| s == "." || s.eq_ignore_ascii_case("%2e");
    if is_dot(seg) {
        return Some(false);
    }
    let b = seg.as_bytes();
    for split in [1, 3] {
        if b.len() > split && seg.is_char_boundary(split) && is_dot(&seg[..split]) && is_dot(&seg[split..]) {
            return Some(true);
        }
    }
    None
}

/// The request target to send upstream: `path_and_query` with its
/// dot-segments (raw or percent-encoded) resolved as [`normalize_path`]
/// resolves them, every other segment and the query exactly as sent.
/// `None` when there is nothing to resolve, or when a `..` climbs above the
/// root (such a path matches no `path=` pattern; a rule without one did not
/// look at the path, and it goes as sent).
pub fn forwarded_path(path_and_query: &str) -> Option<String> {
    let end = path_and_query.find(['?', '#']).unwrap_or(path_and_query.len());
    let (path, query) = path_and_query.split_at(end);
    // Fast path: no `.` and no escape, so no dot-segment.
    if !path.bytes().any(|b| b == b'.' || b == b'%') {
        return None;
    }
    let rest = path.strip_prefix('/')?;
    if !rest.split('/').any(|seg| raw_dot_segment(seg).is_some()) {
        return None;
    }
    let mut out = Resolved::with_capacity(path_and_query.len());
    let mut segs = rest.split('/').peekable();
    while let Some(seg) = segs.next() {
        out.push(seg, raw_dot_segment(seg), segs.peek().is_none())?;
    }
    out.path.push_str(query);
    Some(out.path)
}

/// Bytes refused whether raw or decoded (a raw `/` never reaches here).
fn check_byte(b: u8) -> Result<(), PathProblem> {
    match b {
        b'/' => Err(PathProblem::EncodedSlash),
        0 => Err(PathProblem::Nul),
        b'\\' => Err(PathProblem::Backslash),
        b if b < 0x20 || b == 0x7f => Err(PathProblem::ControlChar),
        _ => Ok(()),
    }
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// The byte a `%XX` escape at `bytes[i]` stands for.
fn escape_at(bytes: &[u8], i: usize) -> Option<u8> {
    let hi = hex_value(*bytes.get(i + 1)?)?;
    let lo = hex_value(*bytes.get(i + 2)?)?;
    Some(hi << 4 | lo)
}

/// Percent-decode one segment once. The raw bytes must already have passed
/// [`check_byte`].
fn decode_segment(seg: &str) -> Result<Cow<'_, str>, PathProblem> {
    if !seg.contains('%') {
        return Ok(Cow::Borrowed(seg));
    }
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let b = escape_at(bytes, i).ok_or(PathProblem::BadPercent)?;
            check_byte(b)?;
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let doubly = (0..out.len()).any(|i| {
        out[i] == b'%' && escape_at(&out, i).is_some_and(|b| check_byte(b).is_err() || b == b'.')
    });
    if doubly {
        return Err(PathProblem::DoubleEncoded);
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| PathProblem::InvalidUtf8)
}

/// Write a decoded segment so that it reads back the same inside rule text:
/// everything outside `A-Za-z0-9-._~!$&'()+=:@` is percent-encoded, which
/// covers the rule separators (space, tab, `,`, `;`), `*` and `%`.
pub(crate) fn encode_segment(seg: &str, out: &mut String) {
    const KEEP: &[u8] = b"-._~!$&'()+=:@";
    for b in seg.bytes() {
        if b.is_ascii_alphanumeric() || KEEP.contains(&b) {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// Rule text for a pattern matching exactly this normalised path.
pub(crate) fn exact_pattern_text(normalized: &str) -> String {
    let mut out = String::with_capacity(normalized.len() + 8);
    let rest = normalized.strip_prefix('/').unwrap_or(normalized);
    for seg in rest.split('/') {
        out.push('/');
        encode_segment(seg, &mut out);
    }
    out
}

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Seg {
    /// `*`: one whole segment; as the last segment, one or more.
    Any,
    /// A decoded literal segment (`%2A` gives a literal `*`).
    Lit(String),
}

/// One `/`-rooted path pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PathPattern {
    segs: Vec<Seg>,
}

impl PathPattern {
    /// Parse one item of a `path=` list; `Ok(None)` is the lone `*` (any
    /// path at all).
    pub(crate) fn parse(item: &str) -> Result<Option<PathPattern>, PathProblem> {
        if item == "*" {
            return Ok(None);
        }
        if item.contains(['?', '#']) {
            return Err(PathProblem::QueryInPattern);
        }
        let rest = item.strip_prefix('/').ok_or(PathProblem::NotAbsolute)?;
        if !item.is_ascii() {
            return Err(PathProblem::NonAscii);
        }
        let mut segs = Vec::new();
        let mut raws = rest.split('/').peekable();
        while let Some(raw) = raws.next() {
            if raw.is_empty() && raws.peek().is_some() {
                return Err(PathProblem::EmptySegment);
            }
            if raw == "*" {
                segs.push(Seg::Any);
                continue;
            }
            if raw.contains('*') {
                return Err(PathProblem::PartialWildcard);
            }
            raw.bytes().try_for_each(check_byte)?;
            let seg = decode_segment(raw)?;
            if seg == "." || seg == ".." {
                return Err(PathProblem::DotSegment);
            }
            segs.push(Seg::Lit(seg.into_owned()));
        }
        Ok(Some(PathPattern { segs }))
    }

    /// Match a normalised path (from [`normalize_path_cow`]).
    pub(crate) fn matches(&self, path: &str) -> bool {
        let mut segs = path.strip_prefix('/').unwrap_or(path).split('/');
        let last = self.segs.len().saturating_sub(1);
        for (i, pattern) in self.segs.iter().enumerate() {
            let Some(seg) = segs.next() else {
                return false;
            };
            match pattern {
                Seg::Lit(lit) if lit != seg => return false,
                Seg::Any if i == last => return true,
                _ => {}
            }
        }
        segs.next().is_none()
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        for seg in &self.segs {
            out.push('/');
            match seg {
                Seg::Any => out.push('*'),
                Seg::Lit(lit) => encode_segment(lit, &mut out),
            }
        }
        f.write_str(&out)
    }
}

/// A parsed `path=` value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum PathPatterns {
    /// `path=*` (or a `*` item in the list): any path, even one that does
    /// not normalise, exactly as if the key were absent.
    Any,
    /// One or more patterns, in the order written, without duplicates.
    List(Vec<PathPattern>),
}

impl PathPatterns {
    /// Build from the parsed list items (`None` is a lone `*`).
    pub(crate) fn from_items(items: Vec<Option<PathPattern>>) -> PathPatterns {
        let mut seen = std::collections::HashSet::with_capacity(items.len());
        let mut list: Vec<PathPattern> = Vec::with_capacity(items.len());
        for item in items {
            match item {
                None => return PathPatterns::Any,
                Some(p) => {
                    if seen.insert(p.clone()) {
                        list.push(p);
                    }
                }
            }
        }
        PathPatterns::List(list)
    }
}

impl fmt::Display for PathPatterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathPatterns::Any => f.write_str("*"),
            PathPatterns::List(list) => {
                for (i, p) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, PathProblem> {
        normalize_path_cow(p).map(Cow::into_owned)
    }

    fn pm(pattern: &str, path: &str) -> bool {
        let p = PathPattern::parse(pattern).unwrap().unwrap();
        p.matches(&normalize_path_cow(path).unwrap())
    }

    #[test]
    fn normal_paths_are_borrowed() {
        assert!(matches!(
            normalize_path_cow("/a/b/").unwrap(),
            Cow::Borrowed("/a/b/")
        ));
        assert!(matches!(
            normalize_path_cow("/a/b?x=1").unwrap(),
            Cow::Borrowed("/a/b")
        ));
        assert_eq!(norm("").unwrap(), "/");
        assert_eq!(norm("?q").unwrap(), "/");
    }

    #[test]
    fn decodes_once_and_resolves_dots() {
        assert_eq!(norm("/a%20b/%41").unwrap(), "/a b/A");
        assert_eq!(norm("/a/./b/../c").unwrap(), "/a/c");
        assert_eq!(norm("/a/%2e%2E/c").unwrap(), "/c");
        assert_eq!(norm("/a/.%2e").unwrap(), "/");
        assert_eq!(norm("/a/b/..").unwrap(), "/a/");
        assert_eq!(norm("/a/.").unwrap(), "/a/");
        assert_eq!(norm("/.").unwrap(), "/");
        assert_eq!(norm("/a%2541").unwrap(), "/a%41");
    }

    #[test]
    fn forwarded_path_resolves_dots_and_keeps_the_rest_as_sent() {
        let f = |p: &str| forwarded_path(p);
        assert_eq!(f("/1k"), None);
        assert_eq!(f("/a%20b/c.txt?x=../y"), None);
        assert_eq!(f("/private/../allowed/x"), Some("/allowed/x".into()));
        assert_eq!(f("/private/%2e%2E/allowed/x?q=/../"), Some("/allowed/x?q=/../".into()));
        assert_eq!(f("/a/.%2e/b%20c/./d"), Some("/b%20c/d".into()));
        assert_eq!(f("/a/b/.."), Some("/a/".into()));
        assert_eq!(f("/a/%2E"), Some("/a/".into()));
        assert_eq!(f("/.."), None);
        assert_eq!(f("/a/../../b"), None);
        assert_eq!(f("/a/...;/b"), None);
        // Whatever it gives normalises to what the rules judged.
        for p in ["/x/../y/%41/./z/", "/p/%2e%2e/q%20r", "/a/b/c/../../d?e", "/%2e/a"] {
            let sent = f(p).unwrap();
            assert_eq!(norm(&sent), norm(p), "{p} -> {sent}");
            assert_eq!(forwarded_path(&sent), None, "{sent} is resolved");
        }
    }

    #[test]
    fn refuses_ambiguous_paths() {
        let cases = [
            ("/..", PathProblem::EscapesRoot),
            ("/a/../../b", PathProblem::EscapesRoot),
            ("/%2e%2e/etc", PathProblem::EscapesRoot),
            ("/a%2Fb", PathProblem::EncodedSlash),
            ("/a%2fb", PathProblem::EncodedSlash),
            ("/a%00", PathProblem::Nul),
            ("/a\\b", PathProblem::Backslash),
            ("/a%5Cb", PathProblem::Backslash),
            ("/a%0Ab", PathProblem::ControlChar),
            ("/a%zz", PathProblem::BadPercent),
            ("/a%4", PathProblem::BadPercent),
            ("/a%ff", PathProblem::InvalidUtf8),
            ("/a%252Fb", PathProblem::DoubleEncoded),
            ("/a%252e%252e", PathProblem::DoubleEncoded),
            ("/a//b", PathProblem::EmptySegment),
            ("//evil.example/x", PathProblem::EmptySegment),
            ("/allowed/..;/private", PathProblem::DotLookalike),
            ("/allowed/.;x=1/y", PathProblem::DotLookalike),
            ("/allowed/%2e%2e;/private", PathProblem::DotLookalike),
            ("/allowed/..%3B/private", PathProblem::DotLookalike),
            ("/allowed/.../private", PathProblem::DotLookalike),
            ("/allowed/..%20/private", PathProblem::DotLookalike),
            ("/allowed/.%2E./x", PathProblem::DotLookalike),
            ("/allowed/%EF%BC%8E%EF%BC%8E/private", PathProblem::DotLookalike),
            ("/allowed/.%ef%bc%8e/private", PathProblem::DotLookalike),
            ("/public/%EF%BC%8E%EF%BC%8E%EF%BC%8Fadmin", PathProblem::SlashLookalike),
            ("/public/x%EF%BC%8Fadmin", PathProblem::SlashLookalike),
            ("/public/x%ef%bc%bcadmin", PathProblem::SlashLookalike),
            ("/public/x%E2%88%95admin", PathProblem::SlashLookalike),
            // The same characters sent raw: a path with no `%` or dot
            // segment is otherwise taken as it is.
            ("/public/..\u{FF0F}admin/secret", PathProblem::SlashLookalike),
            ("/public/x\u{FF3C}y", PathProblem::SlashLookalike),
            ("/public/x\u{2215}y", PathProblem::SlashLookalike),
            ("/public/x%E2%81%84admin", PathProblem::SlashLookalike),
            ("/public/x%E2%88%96admin", PathProblem::SlashLookalike),
            ("/public/%E2%80%A5/admin", PathProblem::DotLookalike),
            ("/public/%EF%B8%B0/admin", PathProblem::DotLookalike),
            ("/public/%E2%80%A6/admin", PathProblem::DotLookalike),
            ("/public/.%EF%B9%92/admin", PathProblem::DotLookalike),
            ("/public/%E2%80%A4%E2%80%A4/admin", PathProblem::DotLookalike),
            ("a/b", PathProblem::NotAbsolute),
            ("*", PathProblem::NotAbsolute),
            ("http://h/x", PathProblem::NotAbsolute),
        ];
        for (path, problem) in cases {
            assert_eq!(norm(path), Err(problem), "{path}");
        }
    }

    #[test]
    fn pattern_matching() {
        assert!(pm("/api/*", "/api/v1/users/1"));
        assert!(pm("/api/*", "/api/users/"));
        assert!(pm("/api/*", "/api/"));
        assert!(!pm("/api/*", "/api"));
        assert!(!pm("/api", "/api/users"));
        assert!(!pm("/api", "/api/"));
        assert!(pm("/api/", "/api/"));
        assert!(pm("/api/*/users", "/api/v1/users"));
        assert!(!pm("/api/*/users", "/api/users"));
        assert!(!pm("/api/*/users", "/api/v1/v2/users"));
        assert!(pm("/", "/"));
        assert!(!pm("/", "/x"));
        assert!(pm("/a%20b", "/a b"));
        assert!(pm("/%2A", "/*"));
        assert!(!pm("/%2A", "/x"));
    }

    #[test]
    fn pattern_errors() {
        let cases = [
            ("api", PathProblem::NotAbsolute),
            ("/a?b", PathProblem::QueryInPattern),
            ("/a*", PathProblem::PartialWildcard),
            ("/a//b", PathProblem::EmptySegment),
            ("/a/../b", PathProblem::DotSegment),
            ("/a/%2E", PathProblem::DotSegment),
            ("/a%2Fb", PathProblem::EncodedSlash),
        ];
        for (pattern, problem) in cases {
            assert_eq!(PathPattern::parse(pattern), Err(problem), "{pattern}");
        }
        assert_eq!(PathPattern::parse("*"), Ok(None));
    }

    #[test]
    fn display_round_trips_odd_segments() {
        let p = PathPattern::parse("/a%20b/%2A/*/x%3By%2Cz%25/caf%C3%A9/")
            .unwrap()
            .unwrap();
        let text = p.to_string();
        assert_eq!(text, "/a%20b/%2A/*/x%3By%2Cz%25/caf%C3%A9/");
        assert_eq!(PathPattern::parse(&text).unwrap().unwrap(), p);
        assert_eq!(exact_pattern_text("/a b/*/"), "/a%20b/%2A/");
    }
}
