//! A registry host's own TLS material, from `<certs_dir>/<host[:port]>/`
//! in the layout Docker and containerd read: `*.crt` are CA bundles the
//! host's certificate may chain to (besides the system's roots), and a
//! `<name>.cert` with its `<name>.key` is the client certificate berth
//! presents to the host (`client.cert` + `client.key` by convention).
//!
//! Read at each pull, so a CA or client certificate put in place works at
//! once, without restarting berthd; a bad file fails the pulls from that
//! host only, naming the file.

use std::path::{Path, PathBuf};

use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

/// What `certs_dir` holds for one host; empty when it has no directory.
#[derive(Debug, Default)]
pub(crate) struct HostCerts {
    /// Extra trust anchors for this host, each with the file it came from.
    pub roots: Vec<(PathBuf, CertificateDer<'static>)>,
    pub identity: Option<ClientIdentity>,
}

/// A client certificate chain and its private key.
#[derive(Debug)]
pub(crate) struct ClientIdentity {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: expected PEM {what} blocks: {source}", path.display())]
    Pem { path: PathBuf, what: &'static str, source: rustls_pki_types::pem::Error },
    #[error("{}: not a usable CA certificate: {source}", path.display())]
    BadCa { path: PathBuf, source: webpki::Error },
    #[error("{}: a client certificate needs its key beside it, {}", cert.display(), key.display())]
    KeyMissing { cert: PathBuf, key: PathBuf },
    #[error("{}: a client key needs its certificate beside it, {}", key.display(), cert.display())]
    CertMissing { key: PathBuf, cert: PathBuf },
    #[error("{}: two client certificates ({first} and {second}); berth presents one, keep one pair", dir.display())]
    SeveralIdentities { dir: PathBuf, first: String, second: String },
    #[error("{} with {}: {source}", cert.display(), key.display())]
    Identity { cert: PathBuf, key: PathBuf, source: rustls::Error },
    #[error("TLS setup: {0}")]
    Setup(#[source] rustls::Error),
}

/// The directory of `host` (`registry.example:5000`) under `certs_dir`.
/// `None` for a name that is not a plain host (it comes from an image
/// reference, so it must never walk out of `certs_dir`).
pub(crate) fn host_dir(certs_dir: &Path, host: &str) -> Option<PathBuf> {
    let plain = !host.is_empty() && !host.starts_with('.') && !host.contains('/') && !host.contains('\\');
    plain.then(|| certs_dir.join(host))
}

/// Reads `dir`; a directory that does not exist means no extra material.
pub(crate) fn load(dir: &Path) -> Result<HostCerts, CertsError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HostCerts::default()),
        Err(source) => return Err(CertsError::Read { path: dir.to_path_buf(), source }),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| CertsError::Read { path: dir.to_path_buf(), source })?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();

    let mut certs = HostCerts::default();
    for name in &names {
        let path = dir.join(name);
        if name.ends_with(".crt") {
            for cert in read_pem::<CertificateDer<'static>>(&path, "CERTIFICATE")? {
                // Refuse a file rustls would refuse as an anchor now, naming
                // it, rather than at the handshake.
                webpki::anchor_from_trusted_cert(&cert).map_err(|source| CertsError::BadCa { path: path.clone(), source })?;
                certs.roots.push((path.clone(), cert));
            }
        } else if let Some(stem) = name.strip_suffix(".cert") {
            let key_name = format!("{stem}.key");
            if !names.contains(&key_name) {
                return Err(CertsError::KeyMissing { cert: path, key: dir.join(key_name) });
            }
            if let Some(first) = &certs.identity {
                return Err(CertsError::SeveralIdentities { dir: dir.to_path_buf(), first: file_name(&first.cert_file), second: name.clone() });
            }
            let key_file = dir.join(&key_name);
            let chain = read_pem::<CertificateDer<'static>>(&path, "CERTIFICATE")?;
            let key = PrivateKeyDer::from_pem_file(&key_file).map_err(|source| pem_error(&key_file, "PRIVATE KEY", source))?;
            certs.identity = Some(ClientIdentity { cert_file: path, key_file, chain, key });
        } else if let Some(stem) = name.strip_suffix(".key") {
            let cert_name = format!("{stem}.cert");
            if !names.contains(&cert_name) {
                return Err(CertsError::CertMissing { key: path, cert: dir.join(cert_name) });
            }
        }
        // Anything else (a hosts.toml, a README) is not ours to read.
    }
    Ok(certs)
}

fn read_pem<T: PemObject>(path: &Path, what: &'static str) -> Result<Vec<T>, CertsError> {
    let items = T::pem_file_iter(path)
        .map_err(|source| pem_error(path, what, source))?
        .collect::<Result<Vec<T>, _>>()
        .map_err(|source| pem_error(path, what, source))?;
    if items.is_empty() {
        return Err(pem_error(path, what, rustls_pki_types::pem::Error::NoItemsFound));
    }
    Ok(items)
}

/// An unreadable file is a read error (with its io cause), anything else
/// a PEM error.
fn pem_error(path: &Path, what: &'static str, source: rustls_pki_types::pem::Error) -> CertsError {
    match source {
        rustls_pki_types::pem::Error::Io(source) => CertsError::Read { path: path.to_path_buf(), source },
        source => CertsError::Pem { path: path.to_path_buf(), what, source },
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_name_never_leaves_the_certs_dir() {
        let base = Path::new("/etc/berth/certs.d");
        assert_eq!(host_dir(base, "registry.local:5000"), Some(base.join("registry.local:5000")));
        assert_eq!(host_dir(base, "[::1]:5000"), Some(base.join("[::1]:5000")));
        for bad in ["", "..", "../x", "a/b", ".hidden"] {
            assert_eq!(host_dir(base, bad), None, "{bad}");
        }
    }

    #[test]
    fn no_directory_means_nothing_extra() {
        let dir = tempfile::tempdir().unwrap();
        let certs = load(&dir.path().join("absent:5000")).unwrap();
        assert!(certs.roots.is_empty() && certs.identity.is_none());
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("h:1");
        std::fs::create_dir(&host).unwrap();

        std::fs::write(host.join("ca.crt"), "not pem at all\n").unwrap();
        let e = load(&host).unwrap_err().to_string();
        assert!(e.contains("ca.crt") && e.contains("CERTIFICATE"), "{e}");
        std::fs::remove_file(host.join("ca.crt")).unwrap();

        std::fs::write(host.join("client.cert"), "").unwrap();
        let e = load(&host).unwrap_err().to_string();
        assert!(e.contains("client.cert") && e.contains("client.key"), "{e}");
        std::fs::remove_file(host.join("client.cert")).unwrap();

        std::fs::write(host.join("client.key"), "").unwrap();
        let e = load(&host).unwrap_err().to_string();
        assert!(e.contains("client.key") && e.contains("client.cert"), "{e}");

        // Files of other kinds are left alone.
        std::fs::remove_file(host.join("client.key")).unwrap();
        std::fs::write(host.join("hosts.toml"), "server = \"x\"\n").unwrap();
        assert!(load(&host).unwrap().identity.is_none());
    }
}
