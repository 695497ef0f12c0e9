//! TLS towards one registry host: the rustls configuration built from the
//! host's certs.d material, and the classification of a failed request
//! into the cause an operator can act on.

use std::{
    error::Error as StdError,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
    AlertDescription, CertificateError, DigitallySignedStruct, InvalidMessage, OtherError, SignatureScheme,
};

use super::certs::{CertsError, HostCerts};

/// The client configuration for one host: the system's roots plus the
/// host's CA files, and its client certificate if it has one.
pub(crate) fn client_config(certs: HostCerts) -> Result<rustls::ClientConfig, CertsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(HostVerifier {
        extra_roots: certs.roots.into_iter().map(|(_, cert)| cert).collect(),
        provider: provider.clone(),
        chain_verifier: OnceLock::new(),
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(CertsError::Setup)?
        // Not to weaken anything: HostVerifier hands every decision to the
        // platform verifier and only adds the issuer's name to an error.
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match certs.identity {
        None => builder.with_no_client_auth(),
        Some(id) => builder.with_client_auth_cert(id.chain, id.key).map_err(|source| CertsError::Identity { cert: id.cert_file, key: id.key_file, source })?,
    };
    // reqwest is built for HTTP/1.1 only here (as oci-client builds it).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Verifies the way reqwest does by default (rustls-platform-verifier: the
/// system's roots, here with the host's CA files added), with two changes:
/// the system's roots are loaded at the first handshake, so a pull over
/// plain http never reads them; and an unknown issuer is reported with
/// its name, so the operator knows which CA the host wants (carried in
/// `CertificateError::Other`, so the alert berth sends the server is a
/// generic "bad certificate" rather than "unknown CA").
#[derive(Debug)]
struct HostVerifier {
    extra_roots: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
    chain_verifier: OnceLock<Result<rustls_platform_verifier::Verifier, rustls::Error>>,
}

impl ServerCertVerifier for HostVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verifier = self
            .chain_verifier
            .get_or_init(|| rustls_platform_verifier::Verifier::new_with_extra_roots(self.extra_roots.iter().cloned(), self.provider.clone()))
            .as_ref()
            .map_err(Clone::clone)?;
        verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now).map_err(|e| match e {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(UnknownAuthority {
                    issuer: issuer_of(end_entity, intermediates),
                }))))
            }
            other => other,
        })
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// `UnknownIssuer`, with the name of the issuer nobody here trusts.
#[derive(Debug, thiserror::Error)]
#[error("certificate signed by unknown authority")]
struct UnknownAuthority {
    issuer: Option<String>,
}

/// The issuer the chain ends at: that of the last certificate sent.
fn issuer_of(end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> Option<String> {
    let top = intermediates.last().unwrap_or(end_entity);
    let cert = webpki::EndEntityCert::try_from(top).ok()?;
    let name = distinguished_name(cert.issuer());
    (!name.is_empty()).then_some(name)
}

/// Renders a DER `Name` (the contents of its SEQUENCE, as webpki gives
/// it) as `CN=..., O=...`, keeping the attributes people recognise.
fn distinguished_name(mut der: &[u8]) -> String {
    let mut parts = Vec::new();
    while let Some((0x31, mut set, rest)) = der_item(der) {
        der = rest;
        while let Some((0x30, attribute, more)) = der_item(set) {
            set = more;
            let Some((0x06, oid, value)) = der_item(attribute) else { continue };
            let Some((tag, text, _)) = der_item(value) else { continue };
            // UTF8String, PrintableString, TeletexString, IA5String.
            if !matches!(tag, 0x0c | 0x13 | 0x14 | 0x16) {
                continue;
            }
            let label = match oid {
                [0x55, 0x04, 0x03] => "CN",
                [0x55, 0x04, 0x0a] => "O",
                [0x55, 0x04, 0x0b] => "OU",
                [0x55, 0x04, 0x06] => "C",
                _ => continue,
            };
            parts.push(format!("{label}={}", String::from_utf8_lossy(text)));
        }
    }
    parts.join(", ")
}

/// One DER item: (tag, contents, what follows). Short and long lengths up
/// to four bytes; `None` on anything malformed.
fn der_item(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Why a request to a registry failed at the TLS layer, in the operator's
/// terms, with where to fix it.
#[derive(Debug, Clone, PartialEq)]
pub enum TlsFailure {
    /// The server answered the ClientHello with plain HTTP.
    PlainHttpServer {
        host: String,
    },
    UnknownAuthority {
        issuer: Option<String>,
        ca_file: PathBuf,
    },
    NotValidForName {
        host: String,
        presented: Vec<String>,
    },
    Expired,
    NotValidYet,
    /// The server refused the handshake over our (absent) certificate.
    ClientCertificateRequired {
        alert: String,
        host_dir: PathBuf,
    },
    ClientCertificateRefused {
        alert: String,
        cert_file: PathBuf,
    },
    Other(String),
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PlainHttpServer { host } => {
                write!(f, "server gave an HTTP response to an HTTPS client; add \"{host}\" to registry.insecure")
            }
            Self::UnknownAuthority { issuer: Some(issuer), ca_file } => {
                write!(f, "certificate signed by unknown authority ({issuer}); put its CA in {}", ca_file.display())
            }
            Self::UnknownAuthority { issuer: None, ca_file } => {
                write!(f, "certificate signed by unknown authority; put its CA in {}", ca_file.display())
            }
            Self::NotValidForName { host, presented } if presented.is_empty() => write!(f, "certificate is not valid for {host}"),
            Self::NotValidForName { host, presented } => write!(f, "certificate is not valid for {host} (it is for {})", presented.join(", ")),
            Self::Expired => write!(f, "the registry's certificate has expired"),
            Self::NotValidYet => write!(f, "the registry's certificate is not valid yet (is this node's clock right?)"),
            Self::ClientCertificateRequired { alert, host_dir } => {
                write!(f, "the registry requires a client certificate (it answered {alert}); put client.cert and client.key in {}", host_dir.display())
            }
            Self::ClientCertificateRefused { alert, cert_file } => {
                write!(f, "the registry refused the client certificate {} (it answered {alert})", cert_file.display())
            }
            Self::Other(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

/// What classification needs to know about the host to say where to fix
/// a failure.
pub(crate) struct HostContext<'a> {
    pub host: &'a str,
    /// `<certs_dir>/<host>`.
    pub host_dir: &'a Path,
    /// The client certificate presented, if any.
    pub client_cert: Option<&'a Path>,
}

/// Finds the TLS cause in a failed request's error chain, by type: the
/// rustls error that ended the handshake (inside the io errors tokio-rustls
/// and hyper wrap it in). `None` when the failure was not TLS.
pub(crate) fn classify(error: &(dyn StdError + 'static), host: &HostContext<'_>) -> Option<TlsFailure> {
    rustls_error_in(error).map(|e| from_rustls(e, host))
}

fn rustls_error_in<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // io::Error's `source()` skips the error it carries: look inside.
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            next = Some(inner);
            continue;
        }
        next = e.source();
    }
    None
}

fn from_rustls(e: &rustls::Error, host: &HostContext<'_>) -> TlsFailure {
    use rustls::Error as E;
    use CertificateError as C;
    let ca_file = || host.host_dir.join("ca.crt");
    match e {
        // A TLS record starts with a content type (20-24); "HTTP/1.1 400"
        // starts with 'H'. Only a plain-http server answers that way.
        E::InvalidMessage(InvalidMessage::InvalidContentType) => TlsFailure::PlainHttpServer { host: host.host.to_string() },
        E::InvalidCertificate(C::UnknownIssuer) => TlsFailure::UnknownAuthority { issuer: None, ca_file: ca_file() },
        E::InvalidCertificate(C::Other(other)) if other.0.downcast_ref::<UnknownAuthority>().is_some() => {
            let issuer = other.0.downcast_ref::<UnknownAuthority>().and_then(|u| u.issuer.clone());
            TlsFailure::UnknownAuthority { issuer, ca_file: ca_file() }
        }
        E::InvalidCertificate(C::NotValidForName) => TlsFailure::NotValidForName { host: host.host.to_string(), presented: Vec::new() },
        E::InvalidCertificate(C::NotValidForNameContext { presented, .. }) => {
            TlsFailure::NotValidForName { host: host.host.to_string(), presented: presented.clone() }
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => TlsFailure::Expired,
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => TlsFailure::NotValidYet,
        // What a server sends when it wanted a client certificate it did
        // not get (TLS 1.3 servers say so; older ones say "bad
        // certificate"), or did not like the one it got.
        E::AlertReceived(
            alert @ (AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::AccessDenied),
        ) => {
            let alert = format!("{alert:?}");
            match host.client_cert {
                None => TlsFailure::ClientCertificateRequired { alert, host_dir: host.host_dir.to_path_buf() },
                Some(cert) => TlsFailure::ClientCertificateRefused { alert, cert_file: cert.to_path_buf() },
            }
        }
        other => TlsFailure::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> (PathBuf, String) {
        (PathBuf::from("/etc/berth/certs.d/reg:5000"), "reg:5000".to_string())
    }

    /// How the error reaches berth: rustls inside an io::Error inside
    /// whatever wraps it (here a boxed error with the io error as source).
    #[derive(Debug, thiserror::Error)]
    #[error("error sending request")]
    struct Wrapper(#[source] std::io::Error);

    fn classified(tls: rustls::Error, client_cert: Option<&Path>) -> Option<TlsFailure> {
        let (dir, host) = context();
        let wrapped = Wrapper(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        classify(&wrapped, &HostContext { host: &host, host_dir: &dir, client_cert })
    }

    #[test]
    fn causes_are_found_through_io_errors_by_type() {
        let plain = classified(rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType), None).unwrap();
        assert_eq!(plain.to_string(), "server gave an HTTP response to an HTTPS client; add \"reg:5000\" to registry.insecure");

        let named = rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(UnknownAuthority { issuer: Some("CN=Lab CA".into()) }))));
        assert_eq!(
            classified(named, None).unwrap().to_string(),
            "certificate signed by unknown authority (CN=Lab CA); put its CA in /etc/berth/certs.d/reg:5000/ca.crt"
        );

        let required = classified(rustls::Error::AlertReceived(AlertDescription::CertificateRequired), None).unwrap();
        assert!(matches!(required, TlsFailure::ClientCertificateRequired { .. }), "{required}");
        let refused = classified(rustls::Error::AlertReceived(AlertDescription::BadCertificate), Some(Path::new("/c/client.cert"))).unwrap();
        assert!(refused.to_string().contains("/c/client.cert"), "{refused}");

        let not_tls = Wrapper(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let (dir, host) = context();
        assert_eq!(classify(&not_tls, &HostContext { host: &host, host_dir: &dir, client_cert: None }), None);
    }

    #[test]
    fn names_read_from_der() {
        // SET { SEQ { OID 2.5.4.6, PrintableString "DE" } }, SET { SEQ { OID 2.5.4.3, UTF8String "Lab CA" } }
        let der = [
            0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, b'D', b'E', //
            0x31, 0x0f, 0x30, 0x0d, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x06, b'L', b'a', b'b', b' ', b'C', b'A',
        ];
        assert_eq!(distinguished_name(&der), "C=DE, CN=Lab CA");
        assert_eq!(distinguished_name(&der[..5]), "", "truncated input yields nothing, never a panic");
    }
}
