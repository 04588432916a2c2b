//! The host CA: issues leaf certificates for intercepted TLS.
//!
//! One ECDSA P-256 key serves every leaf (signing a leaf is then one ECDSA
//! signature, no key generation); leaves are cached per server name in a
//! bounded map and reissued after a day. [`CertAuthority`] is a rustls
//! [`ResolvesServerCert`]: it answers with the leaf for the ClientHello's SNI.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, SigningKey};

/// Leaves kept in the cache at most.
const CACHE_CAPACITY: usize = 4096;
/// A cached leaf is reissued after this long (leaves are valid for 30 days).
const CACHE_TTL: Duration = Duration::from_secs(24 * 3600);
const LEAF_VALID_DAYS: i64 = 30;

/// Errors from loading the CA or issuing a leaf.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("CA certificate or key is not UTF-8 PEM")]
    NotUtf8(#[source] std::str::Utf8Error),
    #[error("parsing the CA private key")]
    ParseKey(#[source] rcgen::Error),
    #[error("parsing the CA certificate")]
    ParseCert(#[source] rcgen::Error),
    #[error("the CA certificate PEM holds no certificate")]
    NoCert,
    #[error("generating the leaf key")]
    LeafKey(#[source] rcgen::Error),
    #[error("loading the leaf key into rustls")]
    LeafSigner(#[source] rustls::Error),
    #[error("issuing a leaf certificate for {name}")]
    Issue {
        name: String,
        #[source]
        source: rcgen::Error,
    },
}

struct Cache {
    map: HashMap<String, (Arc<CertifiedKey>, Instant)>,
    order: VecDeque<String>,
}

/// The host CA with its leaf cache.
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    leaf_key: KeyPair,
    leaf_signer: Arc<dyn SigningKey>,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority").finish_non_exhaustive()
    }
}

impl CertAuthority {
    /// Loads the CA from its PEM certificate and PEM private key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertAuthority, CaError> {
        let cert_str = std::str::from_utf8(cert_pem).map_err(CaError::NotUtf8)?;
        let key_str = std::str::from_utf8(key_pem).map_err(CaError::NotUtf8)?;
        let ca_key = KeyPair::from_pem(key_str).map_err(CaError::ParseKey)?;
        let ca_der = rustls_pemfile::certs(&mut &*cert_pem)
            .next()
            .and_then(Result::ok)
            .ok_or(CaError::NoCert)?;
        let issuer = Issuer::from_ca_cert_pem(cert_str, ca_key).map_err(CaError::ParseCert)?;
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(CaError::LeafKey)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let leaf_signer = rustls::crypto::ring::sign::any_ecdsa_type(&der).map_err(CaError::LeafSigner)?;
        Ok(CertAuthority {
            issuer,
            ca_der,
            leaf_key,
            leaf_signer,
            cache: Mutex::new(Cache { map: HashMap::new(), order: VecDeque::new() }),
        })
    }

    /// The leaf (with the CA certificate as chain) for `name`, from the
    /// cache when fresh. `name` must be a normalised DNS name.
    pub fn leaf_for(&self, name: &str) -> Result<Arc<CertifiedKey>, CaError> {
        if let Some(hit) = self.cached(name) {
            return Ok(hit);
        }
        let leaf = Arc::new(self.issue(name)?);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if !cache.map.contains_key(name) {
            while cache.order.len() >= CACHE_CAPACITY {
                if let Some(old) = cache.order.pop_front() {
                    cache.map.remove(&old);
                }
            }
            cache.order.push_back(name.to_owned());
        }
        cache.map.insert(name.to_owned(), (leaf.clone(), Instant::now()));
        Ok(leaf)
    }

    fn cached(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .map
            .get(name)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(leaf, _)| leaf.clone())
    }

    fn issue(&self, name: &str) -> Result<CertifiedKey, CaError> {
        let err = |source| CaError::Issue { name: name.to_owned(), source };
        let mut params = CertificateParams::default();
        let dns = name.try_into().map_err(err)?;
        params.subject_alt_names = vec![SanType::DnsName(dns)];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let today = days_since_epoch();
        let (y, m, d) = ymd(today - 1);
        params.not_before = rcgen::date_time_ymd(y, m, d);
        let (y, m, d) = ymd(today + LEAF_VALID_DAYS);
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let cert = params.signed_by(&self.leaf_key, &self.issuer).map_err(err)?;
        Ok(CertifiedKey::new(vec![cert.der().clone(), self.ca_der.clone()], self.leaf_signer.clone()))
    }
}

impl ResolvesServerCert for CertAuthority {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = client_hello.server_name()?.trim_end_matches('.').to_ascii_lowercase();
        match self.leaf_for(&name) {
            Ok(leaf) => Some(leaf),
            Err(e) => {
                log::warn!("no leaf certificate for {name}: {e}");
                None
            }
        }
    }
}

fn days_since_epoch() -> i64 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    (secs / 86_400) as i64
}

fn ymd(days: i64) -> (i32, u8, u8) {
    let (y, m, d) = crate::audit::civil_from_days(days);
    (y as i32, m as u8, d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_ca() -> CertAuthority {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "unit test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        CertAuthority::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap()
    }

    #[test]
    fn leaves_are_cached_per_name() {
        let ca = test_ca();
        let a = ca.leaf_for("a.example").unwrap();
        assert!(Arc::ptr_eq(&a, &ca.leaf_for("a.example").unwrap()));
        assert!(!Arc::ptr_eq(&a, &ca.leaf_for("b.example").unwrap()));
        assert_eq!(a.cert.len(), 2, "leaf plus CA certificate");
    }

    #[test]
    fn bad_pem_is_an_error() {
        assert!(CertAuthority::from_pem(b"nope", b"nope").is_err());
    }
}
