//! Pushing a stored image to a registry (OCI distribution spec): each blob
//! the repository lacks (a HEAD says) is uploaded in one piece (POST for
//! an upload URL, PUT of the bytes with their digest), then the manifest
//! goes under the tag. The session, its TLS and its auth (Basic, or a
//! token asked for `pull,push`) are the pull's.

use std::path::PathBuf;

use futures_util::StreamExt;
use oci_client::{secrets::RegistryAuth, Reference};
use reqwest::{header::LOCATION, Method, StatusCode};

use crate::{
    content::ContentStore,
    error::{Error, Result},
    export::{exported, Descriptor, OCI_MANIFEST},
    index::ImageRecord,
    progress::{LayerState, Progress, Throttle},
    pull::{parse_reference, PullOptions},
    registry::{Call, Pacing, RegistryError, Session, Settings},
    RegistryErrorKind,
};

/// What a push left in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// Normalised reference, e.g. `127.0.0.1:5000/app:1.0`.
    pub reference: String,
    pub manifest_digest: String,
    /// Config, layers and manifest.
    pub size: u64,
}

const READ_CHUNK: usize = 256 << 10;

/// Pushes `record` to the registry and repository `target` names, under
/// its tag (`latest` if it names none). Anonymous `auth` means the
/// credentials stored for the registry in `opts.auth_file`, if any.
pub async fn push(record: &ImageRecord, target: &str, auth: RegistryAuth, opts: &PullOptions, content: &ContentStore, progress: &Progress) -> Result<Pushed> {
    let reference = parse_reference(target)?;
    if reference.digest().is_some() {
        return Err(Error::InvalidReference { reference: target.into(), reason: "a push names a tag, not a digest".into() });
    }
    let auth = crate::pull::stored_credentials(auth, &reference, opts);
    let image = exported(record, content)?;
    let push_error = push_error_for(&reference);
    let pacing = Pacing { window: opts.stall_timeout, min_bytes: opts.stall_min_bytes };
    let settings = Settings { insecure_registries: &opts.insecure_registries, certs_dir: &opts.certs_dir, pacing };
    let session = Session::open(&reference, auth, &settings).map_err(&push_error)?.for_push();
    for layer in &image.layers {
        progress.report(&layer.digest, layer.size, 0, LayerState::Waiting);
    }
    // The config first: it is small, and a refusal (no credentials, no
    // right to push) shows before any layer is sent.
    push_blob(&session, &image.config, content, &Progress::default()).await.map_err(&push_error)?;
    let session = &session;
    let uploads = futures_util::stream::iter(image.layers.clone().into_iter().map(|layer| async move { push_blob(session, &layer, content, progress).await }));
    let mut uploads = uploads.buffer_unordered(opts.max_concurrent_layers.max(1));
    while let Some(done) = uploads.next().await {
        done.map_err(&push_error)?;
    }
    drop(uploads);
    let tag = reference.tag().unwrap_or("latest");
    let path = format!("/v2/{}/manifests/{tag}", session.repository());
    let manifest = image.manifest.clone();
    let body = move || (reqwest::Body::from(manifest.clone()), manifest.len() as u64);
    let call = Call { content_type: Some(OCI_MANIFEST), body: Some(&body), ..Call::new(Method::PUT, &path) };
    let response = session.call(&call).await.map_err(&push_error)?;
    if response.status() != StatusCode::CREATED && response.status() != StatusCode::OK {
        return Err(push_error(session.unexpected(response).await));
    }
    let size = image.blobs().map(|b| b.size).sum::<u64>() + image.manifest.len() as u64;
    Ok(Pushed { reference: reference.whole(), manifest_digest: image.manifest_digest, size })
}

/// One blob into the repository, unless it is there already.
async fn push_blob(session: &Session, blob: &Descriptor, content: &ContentStore, progress: &Progress) -> std::result::Result<(), RegistryError> {
    let path = format!("/v2/{}/blobs/{}", session.repository(), blob.digest);
    let response = session.call(&Call::new(Method::HEAD, &path)).await?;
    match response.status() {
        StatusCode::OK => {
            progress.report(&blob.digest, blob.size, blob.size, LayerState::Exists);
            return Ok(());
        }
        StatusCode::NOT_FOUND => {}
        _ => return Err(session.unexpected(response).await),
    }
    let uploads = format!("/v2/{}/blobs/uploads/", session.repository());
    let response = session.call(&Call::new(Method::POST, &uploads)).await?;
    if response.status() != StatusCode::ACCEPTED {
        return Err(session.unexpected(response).await);
    }
    let bad_location = |reason: &str| RegistryError::BadManifest { url: response.url().to_string(), reason: format!("upload Location: {reason}") };
    let location = response.headers().get(LOCATION).ok_or_else(|| bad_location("missing"))?.to_str().map_err(|_| bad_location("not text"))?;
    let mut url = response.url().join(location).map_err(|e| bad_location(&e.to_string()))?;
    url.query_pairs_mut().append_pair("digest", &blob.digest);
    let file = content.blob_path(&blob.digest).map_err(|e| RegistryError::BadManifest { url: url.to_string(), reason: e.to_string() })?;
    let (digest, size, reporter) = (blob.digest.clone(), blob.size, progress.clone());
    let body = move || (upload_body(file.clone(), digest.clone(), size, reporter.clone()), size);
    let call = Call { content_type: Some("application/octet-stream"), body: Some(&body), ..Call::new(Method::PUT, url.as_str()) };
    let response = session.call(&call).await?;
    if response.status() != StatusCode::CREATED {
        return Err(session.unexpected(response).await);
    }
    progress.report(&blob.digest, blob.size, blob.size, LayerState::Pushed);
    Ok(())
}

/// A blob file's bytes as an upload body, reporting what has been read.
fn upload_body(file: PathBuf, digest: String, size: u64, progress: Progress) -> reqwest::Body {
    let state = (None::<tokio::fs::File>, 0u64, Throttle::new());
    let stream = futures_util::stream::unfold(state, move |(file_open, sent, mut throttle)| {
        let (path, digest, progress) = (file.clone(), digest.clone(), progress.clone());
        async move {
            use tokio::io::AsyncReadExt;
            let mut open = match file_open {
                Some(f) => f,
                None => match tokio::fs::File::open(&path).await {
                    Ok(f) => f,
                    Err(e) => return Some((Err(e), (None, sent, throttle))),
                },
            };
            let mut buf = vec![0u8; READ_CHUNK];
            match open.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    let sent = sent + n as u64;
                    if throttle.due() {
                        progress.report(&digest, size, sent, LayerState::Uploading);
                    }
                    Some((Ok(buf), (Some(open), sent, throttle)))
                }
                Err(e) => Some((Err(e), (Some(open), sent, throttle))),
            }
        }
    });
    reqwest::Body::wrap_stream(stream)
}

/// Whether `registry` (`host[:port]`) accepts `user` and `password`:
/// its API root asked with them, a challenge answered as a pull answers
/// it (Basic, or a token from the realm it names).
pub async fn check_credentials(registry: &str, user: &str, password: &str, opts: &PullOptions) -> Result<()> {
    let probe = format!("{registry}/berth-login");
    let reference = parse_reference(&probe)?;
    let login_error = |source| Error::Registry { reference: registry.to_string(), kind: RegistryErrorKind::of(&source), source: Box::new(source) };
    let pacing = Pacing { window: opts.stall_timeout, min_bytes: opts.stall_min_bytes };
    let settings = Settings { insecure_registries: &opts.insecure_registries, certs_dir: &opts.certs_dir, pacing };
    let session = Session::open(&reference, RegistryAuth::Basic(user.into(), password.into()), &settings).map_err(login_error)?;
    let response = session.call(&Call::new(Method::GET, "/v2/")).await.map_err(login_error)?;
    if !response.status().is_success() {
        return Err(login_error(session.unexpected(response).await));
    }
    Ok(())
}

fn push_error_for(reference: &Reference) -> impl Fn(RegistryError) -> Error + '_ {
    move |source| Error::Push { reference: reference.whole(), kind: RegistryErrorKind::of(&source), source: Box::new(source) }
}
