//! The boundary-runc sidecar: transparent HTTP/HTTPS interception, policy
//! decisions, upstream forwarding and the audit log.
//!
//! [`serve_proxy`] accepts the container's redirected TCP connections;
//! [`ProxyContext::from_config`] builds everything it needs from the
//! [`boundary_contract::SidecarConfig`] before privileges are dropped.

/// `impl AsyncWrite for $ty<T>` passing every call to its `inner` field:
/// for the read-side wrappers of a connection (the HTTP/1 framing guard,
/// the read-ahead), whose writes go straight through.
macro_rules! forward_async_write_to_inner {
    ($ty:ident) => {
        impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $ty<T> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
            }
            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
            }
            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }
            fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
            }
            fn poll_shutdown(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
            }
        }
    };
}

pub mod audit;
pub mod body;
pub mod ca;
pub mod coalesce;
pub mod conn;
pub mod context;
pub mod dns;
pub mod forward;
pub mod guard;
pub mod landlock;
pub mod narrowing;
pub mod privdrop;
pub mod readahead;
pub mod resident;
pub mod resolve;
pub mod seccomp;
pub mod response;
pub mod service;
pub mod sni;
pub mod sniff;
pub mod supervisor;
pub mod tunnel;
pub mod upstream;
pub mod worker;

pub use conn::serve_proxy;
pub use context::{BuildError, Limits, ProxyContext};

/// Runs one `#[ignore]`d test of this test binary in a process of its own
/// (`--exact NAME --ignored`), with `env` set to `value` so that test knows
/// it is the child: for what cannot be undone in the test process (a
/// seccomp filter, a Landlock domain). Asserts the child passed; returns
/// its stdout and stderr.
#[cfg(test)]
pub(crate) fn run_child_half(name: &str, env: &str, value: impl AsRef<std::ffi::OsStr>) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"])
        .env(env, value)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    text
}
