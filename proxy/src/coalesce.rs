//! One upstream handshake for a burst of requests to an HTTPS origin that
//! speaks HTTP/2.
//!
//! hyper-util's pool learns whether a connection is HTTP/2 only from ALPN,
//! once its TLS handshake is done. Until then every request that finds no
//! idle connection starts a connect of its own: a burst of 50 requests to
//! a new origin made 50 TLS handshakes (each ~2.3 M instructions, two
//! signature checks), and once the first said `h2` the pool dropped the
//! other 49, since one HTTP/2 connection carries them all.
//!
//! So before an HTTPS request goes to the pool, [`Origins::before_request`]
//! looks at what the sidecar knows of the origin:
//! - its last connection negotiated HTTP/1.1, or an HTTP/2 connection to
//!   it is open: go at once (the pool has, or will make, what it needs);
//! - otherwise, when another request is already connecting to it (the
//!   *probe*), wait until that connection's TLS handshake is done (once,
//!   and at most the caller's limit: a handshake that takes longer than a
//!   healthy one should not double a request's time to fail), then go: if
//!   it was `h2`, the pool hands the new connection to every waiting
//!   request;
//! - otherwise this request is the probe.
//!
//! The probe ends when the connector finishes a connection to the origin
//! (either way), or when the probe request has its answer (it may have
//! found an idle connection and made none). A waiter never fails for
//! waiting: at worst it connects itself, as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

/// Entries beyond this many are pruned to those in use (an open HTTP/2
/// connection, a probe); when all are, a request to a new origin is not
/// gated at all.
const MAX_ORIGINS: usize = 4096;

/// What the sidecar knows of each HTTPS origin, per flavour of the pooled
/// client that may speak HTTP/2 (`explicit_ip` false and true).
#[derive(Debug, Default)]
pub struct Origins {
    map: [Mutex<HashMap<Box<str>, OriginState>>; 2],
    probes: AtomicU64,
}

#[derive(Debug, Default)]
struct OriginState {
    /// ALPN of the last connection made to it: `Some(true)` HTTP/2.
    h2: Option<bool>,
    /// Its HTTP/2 connections that are open (their [`LiveH2`] not dropped).
    live_h2: usize,
    /// The request connecting first, and the channel its waiters watch
    /// (closed, by dropping the sender, when the probe ends).
    probe: Option<(u64, watch::Sender<()>)>,
}

impl OriginState {
    fn in_use(&self) -> bool {
        self.live_h2 > 0 || self.probe.is_some()
    }
}

impl Origins {
    fn map(&self, explicit_ip: bool) -> std::sync::MutexGuard<'_, HashMap<Box<str>, OriginState>> {
        self.map[usize::from(explicit_ip)].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called before an HTTPS request to `authority` goes to a client that
    /// may speak HTTP/2; see the module docs. `Some` when this request is
    /// the probe: keep the guard until its answer (or failure) is in.
    pub async fn before_request(self: &Arc<Self>, explicit_ip: bool, authority: &str, limit: Duration) -> Option<ProbeGuard> {
        let mut probe_ended = {
            let mut map = self.map(explicit_ip);
            match map.get(authority) {
                Some(s) if s.h2 == Some(false) || s.live_h2 > 0 => return None,
                Some(OriginState { probe: Some((_, tx)), .. }) => tx.subscribe(),
                known => {
                    if known.is_none() && map.len() >= MAX_ORIGINS {
                        map.retain(|_, s| s.in_use());
                        if map.len() >= MAX_ORIGINS {
                            return None;
                        }
                    }
                    let id = self.probes.fetch_add(1, Ordering::Relaxed);
                    map.entry(authority.into()).or_default().probe = Some((id, watch::channel(()).0));
                    return Some(ProbeGuard { origin: self.origin(explicit_ip, authority), id });
                }
            }
        };
        // Returns an error once the probe's sender is dropped; waits once.
        let _ = tokio::time::timeout(limit, probe_ended.changed()).await;
        None
    }

    /// The connector finished a connection to `authority`: `Some(h2)` its
    /// ALPN, `None` it failed. Ends the origin's probe. For an HTTP/2
    /// connection, the returned token counts it open until dropped.
    pub fn connected(self: &Arc<Self>, explicit_ip: bool, authority: &str, h2: Option<bool>) -> Option<LiveH2> {
        let mut map = self.map(explicit_ip);
        let state = match map.get_mut(authority) {
            Some(state) => state,
            None if h2.is_some() => map.entry(authority.into()).or_default(),
            None => return None,
        };
        state.probe = None;
        if h2.is_some() {
            state.h2 = h2;
        }
        (h2 == Some(true)).then(|| {
            state.live_h2 += 1;
            LiveH2 { origin: self.origin(explicit_ip, authority) }
        })
    }

    fn origin(self: &Arc<Self>, explicit_ip: bool, authority: &str) -> Origin {
        Origin { origins: self.clone(), explicit_ip, authority: authority.into() }
    }

    #[cfg(test)]
    fn state(&self, explicit_ip: bool, authority: &str) -> Option<(Option<bool>, usize, bool)> {
        self.map(explicit_ip).get(authority).map(|s| (s.h2, s.live_h2, s.probe.is_some()))
    }
}

/// One origin's entry, for the guards below to update when they drop.
#[derive(Debug)]
struct Origin {
    origins: Arc<Origins>,
    explicit_ip: bool,
    authority: Box<str>,
}

impl Origin {
    /// Runs `f` on the entry if it is still there; removes it when `f`
    /// returns `false`.
    fn update(&self, f: impl FnOnce(&mut OriginState) -> bool) {
        let mut map = self.origins.map(self.explicit_ip);
        if let Some(state) = map.get_mut(&*self.authority) {
            if !f(state) {
                map.remove(&*self.authority);
            }
        }
    }
}

/// Held by the probe request until it has its answer: ends the probe if
/// the connector has not (no connection was made, or it timed out).
#[derive(Debug)]
pub struct ProbeGuard {
    origin: Origin,
    id: u64,
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        self.origin.update(|state| {
            if state.probe.as_ref().is_some_and(|(id, _)| *id == self.id) {
                state.probe = None;
            }
            true
        });
    }
}

/// Counts one open HTTP/2 connection to an origin; lives with the
/// connection's stream.
#[derive(Debug)]
pub struct LiveH2 {
    origin: Origin,
}

impl Drop for LiveH2 {
    fn drop(&mut self) {
        self.origin.update(|state| {
            state.live_h2 = state.live_h2.saturating_sub(1);
            state.in_use() || state.h2 == Some(false)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn the_first_request_probes_and_the_others_wait_for_its_handshake() {
        let o = Arc::new(Origins::default());
        let probe = o.before_request(false, "a.test", LIMIT).await;
        assert!(probe.is_some());
        assert_eq!(o.state(false, "a.test"), Some((None, 0, true)));
        let waiter = tokio::spawn({
            let o = o.clone();
            async move { o.before_request(false, "a.test", LIMIT).await.is_none() }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "a second request waits for the probe's handshake");
        // Other origins and the other flavour are not held up.
        assert!(o.before_request(true, "a.test", LIMIT).await.is_some());
        assert!(o.before_request(false, "b.test", LIMIT).await.is_some());
        let live = o.connected(false, "a.test", Some(true));
        assert!(tokio::time::timeout(LIMIT, waiter).await.unwrap().unwrap(), "released, not a probe");
        assert_eq!(o.state(false, "a.test"), Some((Some(true), 1, false)));
        // An open HTTP/2 connection: nobody waits.
        assert!(o.before_request(false, "a.test", LIMIT).await.is_none());
        // The probe's guard, dropped after the connector ended its probe,
        // does not end a later one.
        drop(live);
        assert_eq!(o.state(false, "a.test"), None, "nothing open, nothing known worth keeping");
        let second = o.before_request(false, "a.test", LIMIT).await;
        drop(probe);
        assert_eq!(o.state(false, "a.test"), Some((None, 0, true)));
        drop(second);
        assert_eq!(o.state(false, "a.test"), Some((None, 0, false)));
    }

    #[tokio::test]
    async fn an_http1_origin_is_never_held_up_again() {
        let o = Arc::new(Origins::default());
        let _probe = o.before_request(false, "h1.test", LIMIT).await.unwrap();
        assert!(o.connected(false, "h1.test", Some(false)).is_none());
        for _ in 0..3 {
            assert!(o.before_request(false, "h1.test", Duration::from_secs(3600)).await.is_none());
        }
    }

    #[tokio::test]
    async fn a_failed_or_abandoned_probe_releases_its_waiters_once() {
        let o = Arc::new(Origins::default());
        let probe = o.before_request(false, "down.test", LIMIT).await.unwrap();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let o = o.clone();
                tokio::spawn(async move { o.before_request(false, "down.test", LIMIT).await.is_none() })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(o.connected(false, "down.test", None).is_none());
        for w in waiters {
            assert!(tokio::time::timeout(LIMIT, w).await.unwrap().unwrap(), "each goes its own way, none becomes a probe");
        }
        drop(probe);
        // A probe whose request ends without any connection (an idle one
        // was found) releases its waiters too.
        let probe = o.before_request(false, "idle.test", LIMIT).await.unwrap();
        let waiter = tokio::spawn({
            let o = o.clone();
            async move { o.before_request(false, "idle.test", LIMIT).await.is_none() }
        });
        tokio::task::yield_now().await;
        drop(probe);
        assert!(tokio::time::timeout(LIMIT, waiter).await.unwrap().unwrap());
    }

    #[tokio::test]
    async fn the_map_stays_bounded() {
        let o = Arc::new(Origins::default());
        // Origins known to speak HTTP/1.1 are kept, until the map is full.
        for i in 0..MAX_ORIGINS {
            let name = format!("h1-{i}.test");
            let _probe = o.before_request(false, &name, LIMIT).await.unwrap();
            o.connected(false, &name, Some(false));
        }
        assert_eq!(o.map(false).len(), MAX_ORIGINS);
        let _probe = o.before_request(false, "new.test", LIMIT).await.expect("pruned, then a probe");
        assert_eq!(o.map(false).len(), 1, "only what is in use survives the pruning");
        // When everything is in use, a new origin is not gated at all.
        let probes: Vec<_> = probes_for(&o, MAX_ORIGINS - 1).await;
        assert_eq!(o.map(false).len(), MAX_ORIGINS);
        assert!(o.before_request(false, "one-more.test", LIMIT).await.is_none());
        assert_eq!(o.map(false).len(), MAX_ORIGINS);
        drop(probes);
    }

    async fn probes_for(o: &Arc<Origins>, n: usize) -> Vec<ProbeGuard> {
        let mut probes = Vec::new();
        for i in 0..n {
            probes.push(o.before_request(false, &format!("busy-{i}.test"), LIMIT).await.unwrap());
        }
        probes
    }

    #[tokio::test]
    async fn a_waiter_waits_no_longer_than_the_limit() {
        let o = Arc::new(Origins::default());
        let _probe = o.before_request(false, "slow.test", LIMIT).await.unwrap();
        let started = std::time::Instant::now();
        assert!(o.before_request(false, "slow.test", Duration::from_millis(300)).await.is_none());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(300) && waited < LIMIT, "{waited:?}");
    }
}
