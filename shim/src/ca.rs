//! The host CA the sidecar signs leaf certificates with, and the trust
//! bundle containers are made to trust.
//!
//! Generated on first use under `tls.ca_dir` (`ca.pem`, `ca.key` 0600),
//! unless the config names a CA. The key never enters a container: only
//! `ca-bundle.pem` (system roots + the CA certificate) is mounted, read-only.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot {op} {path}")]
    Io { op: &'static str, path: PathBuf, #[source] source: std::io::Error },
    #[error("cannot generate the host CA")]
    Generate(#[from] rcgen::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// System roots followed by the CA certificate.
    pub bundle: PathBuf,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CaError {
    let path = path.to_path_buf();
    move |source| CaError::Io { op, path, source }
}

/// Makes sure the CA and the trust bundle exist, and says where they are.
pub fn ensure(cfg: &Config) -> Result<CaFiles, CaError> {
    let dir = &cfg.tls.ca_dir;
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let (cert, key) = match (&cfg.tls.ca_cert, &cfg.tls.ca_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let (c, k) = (dir.join("ca.pem"), dir.join("ca.key"));
            if !c.exists() || !k.exists() {
                generate(dir, &c, &k)?;
            }
            (c, k)
        }
    };
    let bundle = dir.join("ca-bundle.pem");
    if bundle_is_current(&bundle, &cert, &cfg.tls.system_roots_file) {
        return Ok(CaFiles { cert, key, bundle });
    }
    let ca_pem = std::fs::read(&cert).map_err(io("read", &cert))?;
    let roots = std::fs::read(&cfg.tls.system_roots_file).unwrap_or_default();
    let mut want = roots;
    if !want.is_empty() && !want.ends_with(b"\n") {
        want.push(b'\n');
    }
    want.extend_from_slice(&ca_pem);
    if std::fs::read(&bundle).ok().as_deref() != Some(&want[..]) {
        write_atomic(&bundle, &want, 0o644)?;
    }
    Ok(CaFiles { cert, key, bundle })
}

/// Whether `bundle` was written after the CA certificate and the system
/// roots last changed and has their combined length (plus the newline put
/// between them): then it is what [`ensure`] would write, and the ~450 KiB
/// of reading and comparing is skipped on every `create`. Change times
/// (ctime) are compared: unlike mtime, no copy or unpack can set them back.
/// They tick once per jiffy, so a tie counts as current (the CA is written
/// in the same tick as its first bundle); a stale bundle would need roots
/// of the very same length changed within that tick.
fn bundle_is_current(bundle: &Path, cert: &Path, roots: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let changed = |m: &std::fs::Metadata| (m.ctime(), m.ctime_nsec());
    let (Ok(b), Ok(c)) = (std::fs::metadata(bundle), std::fs::metadata(cert)) else { return false };
    let r = std::fs::metadata(roots).ok();
    let newer = changed(&b) >= changed(&c) && r.as_ref().is_none_or(|r| changed(&b) >= changed(r));
    let len = c.len() + r.as_ref().map_or(0, |r| r.len());
    newer && (b.len() == len || b.len() == len + 1)
}

fn generate(dir: &Path, cert: &Path, key: &Path) -> Result<(), CaError> {
    // Serialise concurrent first uses: whoever holds the lock writes both.
    let lock_path = dir.join(".ca.lock");
    let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io("open", &lock_path))?;
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| CaError::Io { op: "lock", path: lock_path.clone(), source: e.into() })?;
    if cert.exists() && key.exists() {
        return Ok(());
    }
    let kp = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    params.distinguished_name.push(DnType::CommonName, format!("boundary-runc CA ({host})"));
    params.distinguished_name.push(DnType::OrganizationName, "boundary-runc");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let year = 1970 + (now / 31_556_952) as i32;
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
    let c = params.self_signed(&kp)?;
    write_atomic(key, kp.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(cert, c.pem().as_bytes(), 0o644)
}

fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), CaError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(io("create", &tmp))?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("rename into place", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generates_once_with_a_private_key_and_builds_the_bundle() {
        let d = tempfile::tempdir().unwrap();
        let roots = d.path().join("roots.pem");
        std::fs::write(&roots, "-----BEGIN CERTIFICATE-----\nroots\n-----END CERTIFICATE-----").unwrap();
        let mut cfg = Config::default();
        cfg.tls.ca_dir = d.path().join("ca");
        cfg.tls.system_roots_file = roots;
        let a = ensure(&cfg).unwrap();
        let key_mode = std::fs::metadata(&a.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(key_mode, 0o600);
        let pem = std::fs::read_to_string(&a.cert).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let bundle = std::fs::read_to_string(&a.bundle).unwrap();
        assert!(bundle.starts_with("-----BEGIN CERTIFICATE-----\nroots"));
        assert!(bundle.ends_with(&pem));
        let b = ensure(&cfg).unwrap();
        assert_eq!(std::fs::read_to_string(&b.cert).unwrap(), pem, "the CA is generated once");
        // New system roots (same length, so only the change time tells),
        // a few clock ticks later.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&cfg.tls.system_roots_file, "-----BEGIN CERTIFICATE-----
ROOTS
-----END CERTIFICATE-----").unwrap();
        let c = ensure(&cfg).unwrap();
        let bundle = std::fs::read_to_string(&c.bundle).unwrap();
        assert!(bundle.starts_with("-----BEGIN CERTIFICATE-----\nROOTS") && bundle.ends_with(&pem), "{bundle}");
    }
}
