//! Pulling an image from a registry into the content store and unpacking
//! its layers into committed snapshots keyed by chain ID.
//!
//! Layers download concurrently (bounded); each streams through a writer
//! task that hashes as it writes; unpacking runs on the blocking pool.

use std::{path::PathBuf, sync::Arc, time::Duration};

use berth_snapshot::Overlay;
use futures_util::StreamExt;
use oci_client::{manifest::OciDescriptor, secrets::RegistryAuth, Reference};
use sha2::{Digest, Sha256};

use crate::{
    content::ContentStore,
    error::{Error, Result},
    lease::{Lease, Leases},
    progress::{LayerState, Progress, Throttle},
    registry::{Pacing, RegistryError, Session, Settings},
    unpack::apply_layer,
    RegistryErrorKind,
};

/// 32 KiB a minute (the default window) is about 550 bytes/s: far below
/// any link a pull could finish on, far above a trickle.
pub const DEFAULT_STALL_MIN_BYTES: u64 = 32 << 10;

/// Where berthd keeps per-registry CA files and client certificates.
pub const DEFAULT_CERTS_DIR: &str = "/etc/berth/certs.d";

/// Where `docker login` and `berthctl login` run as root store credentials.
pub const DEFAULT_AUTH_FILE: &str = "/root/.docker/config.json";

#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Registries reached over plain http only (`host:port`). Loopback
    /// registries need no entry: they are tried in https, then in http.
    pub insecure_registries: Vec<String>,
    /// `<certs_dir>/<host:port>/`: the host's CA files (`*.crt`) and
    /// client certificate (`client.cert` + `client.key`); read at each pull.
    pub certs_dir: PathBuf,
    /// The stall window: an answer that brings fewer than
    /// `stall_min_bytes` in any window this long fails instead of hanging
    /// (and so does one whose headers take longer than this).
    pub stall_timeout: Duration,
    /// Bytes each stall window must bring, so a registry trickling a byte
    /// now and then fails like one that sends nothing.
    pub stall_min_bytes: u64,
    /// Layers downloaded at once.
    pub max_concurrent_layers: usize,
    /// Mirrors (`host:port`) per registry (`docker.io`), tried in order
    /// before the registry itself.
    pub mirrors: std::collections::HashMap<String, Vec<String>>,
    /// Docker's `config.json` (`berthctl login` writes it): the
    /// credentials of pulls and pushes that name none; read at each one.
    pub auth_file: Option<PathBuf>,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            certs_dir: PathBuf::from(DEFAULT_CERTS_DIR),
            stall_timeout: Duration::from_secs(60),
            stall_min_bytes: DEFAULT_STALL_MIN_BYTES,
            max_concurrent_layers: 4,
            mirrors: Default::default(),
            auth_file: Some(PathBuf::from(DEFAULT_AUTH_FILE)),
        }
    }
}

/// What a pull produced: the image as the index will record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// Normalised reference, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    pub manifest_digest: String,
    /// The image id, as in every CRI answer.
    pub config_digest: String,
    /// Chain ID of each layer, bottom first; the last is the rootfs parent.
    pub chain_ids: Vec<String>,
    /// Config and layer blob digests.
    pub blobs: Vec<String>,
    /// `User` from the image config (`""`, `1000`, `1000:1000`, `nobody`).
    pub user: String,
    /// Compressed size of config + layers.
    pub size: u64,
    /// Bytes this pull downloaded (layers already stored are not).
    pub downloaded_bytes: u64,
}

/// Parses a reference the way the kubelet means it: `busybox` is
/// `docker.io/library/busybox:latest` (berth's own parser: see
/// [`crate::reference`] for why not oci-spec's).
pub fn parse_reference(image: &str) -> Result<Reference> {
    crate::reference::parse(image).map_err(|reason| Error::InvalidReference { reference: image.into(), reason })
}

/// One lock per blob digest, so two pulls that share a layer never write
/// the same partial file at once (the second waits, then finds it stored).
#[derive(Default)]
pub struct BlobLocks {
    locks: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl BlobLocks {
    fn get(&self, digest: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, l| Arc::strong_count(l) > 1);
        map.entry(digest.to_string()).or_default().clone()
    }
}

/// A pull alone on its stores (no other pull, no garbage collection).
pub async fn pull(image: &str, auth: RegistryAuth, opts: &PullOptions, content: Arc<ContentStore>, snapshots: Arc<Overlay>) -> Result<Pulled> {
    let lease = Leases::new().lease();
    let alongside = Alongside { locks: &BlobLocks::default(), lease: &lease, progress: &Progress::default() };
    pull_alongside(image, auth, opts, content, snapshots, &alongside).await
}

/// How a pull shares its stores with the other operations running at the
/// same time.
pub struct Alongside<'a> {
    /// Per-blob download locks, shared by every pull.
    pub locks: &'a BlobLocks,
    /// This pull's lease: what it stores is kept from garbage collection
    /// until the caller has indexed the image and drops the lease.
    pub lease: &'a Lease,
    pub progress: &'a Progress,
}

pub async fn pull_alongside(
    image: &str,
    auth: RegistryAuth,
    opts: &PullOptions,
    content: Arc<ContentStore>,
    snapshots: Arc<Overlay>,
    alongside: &Alongside<'_>,
) -> Result<Pulled> {
    let origin = parse_reference(image)?;
    let auth = stored_credentials(auth, &origin, opts);
    let mirrors = opts.mirrors.get(origin.registry()).cloned().unwrap_or_default();
    for mirror in &mirrors {
        let mut via = origin.clone();
        via.set_mirror_registry(mirror.clone());
        match pull_from(via, auth.clone(), opts, content.clone(), snapshots.clone(), alongside).await {
            Ok(pulled) => return Ok(pulled),
            // A mirror is an optimisation: on any failure, go on.
            Err(e) => tracing::warn!(mirror = %mirror, image = %origin.whole(), error = %e, "mirror failed; trying the next source"),
        }
    }
    pull_from(origin, auth, opts, content, snapshots, alongside).await
}

async fn pull_from(
    reference: Reference,
    auth: RegistryAuth,
    opts: &PullOptions,
    content: Arc<ContentStore>,
    snapshots: Arc<Overlay>,
    alongside: &Alongside<'_>,
) -> Result<Pulled> {
    let Alongside { locks, lease, progress } = *alongside;
    let registry_error = pull_error_for(&reference);
    let pacing = Pacing { window: opts.stall_timeout, min_bytes: opts.stall_min_bytes };
    let settings = Settings { insecure_registries: &opts.insecure_registries, certs_dir: &opts.certs_dir, pacing };
    let session = Session::open(&reference, auth, &settings).map_err(&registry_error)?;
    let image = session.image(&reference).await.map_err(&registry_error)?;
    let (manifest, manifest_digest) = (image.manifest, image.digest);
    let config_json = String::from_utf8(image.config).map_err(|_| Error::BadImage("the image config is not UTF-8".into()))?;

    // The config is content like any other: verify and store it.
    let config_digest = manifest.config.digest.clone();
    let (diff_ids, user) = parse_config(&config_json)?;
    let layers: Vec<OciDescriptor> = manifest.layers.clone();
    if diff_ids.len() != layers.len() {
        return Err(Error::BadImage(format!("{} layers but {} diff_ids", layers.len(), diff_ids.len())));
    }
    let chain_ids = chain_ids(&diff_ids);
    // Held before anything looks whether they are stored already: see
    // `lease` for why the order matters.
    lease.hold(&config_digest);
    lease.hold_all(layers.iter().map(|l| &l.digest));
    lease.hold_all(&chain_ids);
    let bytes = config_json.into_bytes();
    let store = content.clone();
    let digest = config_digest.clone();
    let size = bytes.len() as u64;
    {
        // Like a layer's: two pulls of one image must not append to the
        // same partial file at once (it would hold the config twice).
        let lock = locks.get(&config_digest);
        let _held = lock.lock().await;
        blocking(move || store.ingest(&digest, Some(size), &bytes[..]).map(drop)).await?;
    }

    for layer in &layers {
        progress.report(&layer.digest, layer.size.max(0) as u64, 0, LayerState::Waiting);
    }
    // Downloads run `max_concurrent_layers` at once but complete in layer
    // order, so layer i unpacks while later layers still download; unpacks
    // run one after the other, each on its parent.
    let mut downloads = futures_util::stream::iter(layers.clone().into_iter().map(|layer| async {
        let lock = locks.get(&layer.digest);
        let _held = lock.lock().await;
        download(&session, &reference, layer, content.clone(), progress).await
    }))
    .buffered(opts.max_concurrent_layers.max(1));
    let mut unpacking: Option<tokio::task::JoinHandle<Result<()>>> = None;
    let mut i = 0;
    let mut downloaded_bytes = 0;
    while let Some(done) = downloads.next().await {
        let fetched = done?;
        downloaded_bytes += fetched.unwrap_or(0);
        let downloaded = fetched.is_some();
        let previous = unpacking.take();
        let (content, snapshots, chain, parent, digest) =
            (content.clone(), snapshots.clone(), chain_ids[i].clone(), i.checked_sub(1).map(|p| chain_ids[p].clone()), layers[i].digest.clone());
        let (progress, size) = (progress.clone(), layers[i].size.max(0) as u64);
        unpacking = Some(tokio::spawn(async move {
            if let Some(p) = previous {
                p.await.map_err(|e| Error::BadImage(format!("unpack task: {e}")))??;
            }
            if downloaded {
                progress.report(&digest, size, size, LayerState::Unpacking);
            }
            let reported = digest.clone();
            blocking(move || unpack_layer(&content, &snapshots, &digest, &chain, parent.as_deref())).await?;
            if downloaded {
                progress.report(&reported, size, size, LayerState::Done);
            }
            Ok(())
        }));
        i += 1;
    }
    if let Some(last) = unpacking {
        last.await.map_err(|e| Error::BadImage(format!("unpack task: {e}")))??;
    }
    let size = layers.iter().map(|l| l.size.max(0) as u64).sum::<u64>() + manifest.config.size.max(0) as u64;
    let mut blobs = vec![config_digest.clone()];
    blobs.extend(layers.iter().map(|l| l.digest.clone()));
    Ok(Pulled { reference: reference.whole(), manifest_digest, config_digest, chain_ids, blobs, user, size, downloaded_bytes })
}

/// Streams one layer into the content store unless it is already there,
/// resuming a partial download from an earlier attempt. Returns the bytes
/// it downloaded, `None` when the layer was stored already.
async fn download(session: &Session, reference: &Reference, layer: OciDescriptor, content: Arc<ContentStore>, progress: &Progress) -> Result<Option<u64>> {
    let size = layer.size.max(0) as u64;
    if content.has(&layer.digest) {
        progress.report(&layer.digest, size, size, LayerState::Exists);
        return Ok(None);
    }
    let offset = content.ingest_offset(&layer.digest)?;
    progress.report(&layer.digest, size, offset, LayerState::Downloading);
    let registry_error = pull_error_for(reference);
    let blob = session.blob(&layer.digest, offset).await.map_err(&registry_error)?;
    let restart = offset > 0 && !blob.resumed;
    if restart {
        // The registry ignored the Range request: start over.
        content.delete(&layer.digest)?;
    }
    let url = blob.url;
    let mut stream = blob.response.bytes_stream();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    let store = content.clone();
    let digest = layer.digest.clone();
    let writer = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut ingest = store.begin(&digest, Some(size))?;
        while let Some(chunk) = rx.blocking_recv() {
            ingest.write(&chunk)?;
        }
        ingest.commit().map(drop)
    });
    let (mut stored, mut throttle) = (if restart { 0 } else { offset }, Throttle::new());
    let (mut fetched, mut pace) = (0, session.pace());
    while let Some(chunk) = pace.next(&mut stream).await.map_err(|short| registry_error(session.stalled(&url, short)))? {
        let chunk = chunk.map_err(|source| registry_error(RegistryError::Body { url: url.clone(), source: source.without_url() }))?;
        stored += chunk.len() as u64;
        fetched += chunk.len() as u64;
        if throttle.due() {
            progress.report(&layer.digest, size, stored, LayerState::Downloading);
        }
        if tx.send(chunk.to_vec()).await.is_err() {
            break; // the writer failed; its error is reported below
        }
    }
    drop(tx);
    let written = writer.await.map_err(|e| Error::BadImage(format!("writer task: {e}")))?;
    if let Err(e) = written {
        if e.is_disk_full() {
            // Keeping the partial for a resume would keep the disk full and
            // fail every other pull; give the space back instead.
            let _ = content.delete(&layer.digest);
        }
        return Err(e);
    }
    progress.report(&layer.digest, size, size, LayerState::Downloaded);
    Ok(Some(fetched))
}

/// `auth`, or when it is anonymous the credentials `opts.auth_file` holds
/// for the reference's registry. An unreadable file is logged and taken
/// as no credentials (the registry's refusal, if any, follows).
pub(crate) fn stored_credentials(auth: RegistryAuth, reference: &Reference, opts: &PullOptions) -> RegistryAuth {
    let (RegistryAuth::Anonymous, Some(file)) = (&auth, &opts.auth_file) else { return auth };
    match crate::auth_file::credentials(file, reference.registry()) {
        Ok(Some((user, password))) => {
            tracing::debug!(registry = %reference.registry(), file = %file.display(), "credentials from the auth file");
            RegistryAuth::Basic(user, password)
        }
        Ok(None) => auth,
        Err(e) => {
            tracing::warn!(error = %e, "registry credentials not read; going on without them");
            auth
        }
    }
}

/// Turns a registry's failure into the pull's error, with what it means
/// for the caller.
fn pull_error_for(reference: &Reference) -> impl Fn(RegistryError) -> Error + '_ {
    move |source| Error::Registry { reference: reference.whole(), kind: RegistryErrorKind::of(&source), source: Box::new(source) }
}

pub(crate) fn unpack_layer(content: &ContentStore, snapshots: &Overlay, digest: &str, chain: &str, parent: Option<&str>) -> Result<()> {
    if snapshots.exists(chain) {
        return Ok(());
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let key = format!("{EXTRACT_PREFIX}{}-{n}-{}", std::process::id(), &chain[chain.len().saturating_sub(12)..]);
    snapshots.prepare(&key, parent).map_err(|e| Error::Snapshot(e.to_string()))?;
    let result = (|| {
        let info = snapshots.stat(&key).map_err(|e| Error::Snapshot(e.to_string()))?;
        let mut lowers = Vec::new();
        let mut next = parent.map(String::from);
        while let Some(p) = next {
            let pinfo = snapshots.stat(&p).map_err(|e| Error::Snapshot(e.to_string()))?;
            lowers.push(snapshots.fs_dir(&pinfo));
            next = pinfo.parent;
        }
        let blob = content.blob_path(digest)?;
        let file = std::fs::File::open(&blob).map_err(Error::io("open", &blob))?;
        apply_layer(file, &snapshots.fs_dir(&info), &lowers)?;
        match snapshots.commit(chain, &key) {
            // A concurrent pull of an image with this layer committed it
            // first: ours is redundant.
            Err(berth_snapshot::Error::AlreadyExists(_)) => Err(Error::Snapshot("already committed".into())),
            other => other.map(drop).map_err(|e| Error::Snapshot(e.to_string())),
        }
    })();
    if snapshots.exists(chain) && result.is_err() {
        let _ = snapshots.remove(&key);
        return Ok(());
    }
    if result.is_err() {
        // No half layer survives a failed unpack.
        let _ = snapshots.remove(&key);
    }
    result
}

/// Key prefix of the active snapshots layers are unpacked into; any left
/// at start-up belong to an unpack a crash interrupted.
pub const EXTRACT_PREFIX: &str = "extract-";

/// Removes the snapshots of unpacks a crash interrupted (their layers are
/// unpacked again by the next pull; the downloaded blobs are kept). Call at
/// start-up, before any pull. Returns how many it removed.
pub fn remove_interrupted_unpacks(snapshots: &Overlay) -> Result<usize> {
    let err = |e: berth_snapshot::Error| Error::Snapshot(e.to_string());
    let mut removed = 0;
    for s in snapshots.list().map_err(err)? {
        if s.kind == berth_snapshot::Kind::Active && s.key.starts_with(EXTRACT_PREFIX) {
            snapshots.remove(&s.key).map_err(err)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// OCI chain IDs: the first is the first diff_id; each next one is
/// sha256("<previous chain id> <diff_id>").
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => format!("sha256:{}", hex::encode(Sha256::digest(format!("{prev} {d}").as_bytes()))),
        };
        out.push(next);
    }
    out
}

/// diff_ids and User from an image config. Public for the fuzz targets
/// (`crates/fuzz`): a config is a registry's or an archive's bytes.
pub fn parse_config(json: &str) -> Result<(Vec<String>, String)> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| Error::BadImage(format!("config: {e}")))?;
    let ids = value["rootfs"]["diff_ids"]
        .as_array()
        .ok_or_else(|| Error::BadImage("config has no rootfs.diff_ids".into()))?
        .iter()
        .map(|v| v.as_str().map(String::from).ok_or_else(|| Error::BadImage("diff_id is not a string".into())))
        .collect::<Result<Vec<String>>>()?;
    let user = value["config"]["User"].as_str().unwrap_or("").to_string();
    Ok((ids, user))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::BadImage(format!("blocking task: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalise_like_the_kubelet_means_them() {
        assert_eq!(parse_reference("busybox").unwrap().whole(), "docker.io/library/busybox:latest");
        assert_eq!(parse_reference("127.0.0.1:5000/app:1.0").unwrap().whole(), "127.0.0.1:5000/app:1.0");
        let d = format!("quay.io/x/y@sha256:{}", "a".repeat(64));
        assert_eq!(parse_reference(&d).unwrap().digest(), Some(format!("sha256:{}", "a".repeat(64)).as_str()));
        let e = parse_reference("UPPER/Case::bad").unwrap_err().to_string();
        assert!(e.contains("UPPER/Case::bad"), "{e}");
    }

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let ids = chain_ids(&["sha256:a".into(), "sha256:b".into()]);
        assert_eq!(ids[0], "sha256:a");
        assert_eq!(ids[1], format!("sha256:{}", hex::encode(Sha256::digest(b"sha256:a sha256:b"))));
    }
}
