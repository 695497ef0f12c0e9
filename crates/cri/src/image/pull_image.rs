use berth_image::{
    index::ImageRecord,
    progress::Progress,
    pull::{pull_alongside, Alongside},
};
use k8s_cri::v1::{AuthConfig, PullImageRequest, PullImageResponse};
use oci_client::secrets::RegistryAuth;
use tonic::Status;

use super::{status_of, ImageServer};

impl ImageServer {
    /// Pulls and records the image; answers with its id (config digest).
    pub(super) async fn pull(&self, req: PullImageRequest) -> Result<PullImageResponse, Status> {
        let image = req.image.map(|i| i.image).unwrap_or_default();
        if image.is_empty() {
            return Err(Status::invalid_argument("image.image is empty"));
        }
        let auth = registry_auth(req.auth.as_ref())?;
        let record = self.pull_and_record(&image, auth, &Progress::default()).await?;
        Ok(PullImageResponse { image_ref: record.id })
    }

    /// The one pull path, for the CRI and for berthctl's pull with
    /// progress: mirrors, blob locks, then the index. The lease keeps a
    /// concurrent garbage collection off the pull's blobs and layers until
    /// the index names them.
    pub(crate) async fn pull_and_record(&self, image: &str, auth: RegistryAuth, progress: &Progress) -> Result<ImageRecord, Status> {
        let started = std::time::Instant::now();
        let lease = self.leases.lease();
        let alongside = Alongside { locks: &self.blob_locks, lease: &lease, progress };
        let result = pull_alongside(image, auth, &self.pull_options, self.content.clone(), self.snapshots.clone(), &alongside)
            .await
            .and_then(|pulled| Ok((self.index.add(&pulled)?, pulled)));
        drop(lease);
        match result {
            Ok((record, pulled)) => {
                self.metrics.record_pull_success(pulled.downloaded_bytes, started.elapsed());
                tracing::info!(image = %pulled.reference, digest = %record.id, elapsed_ms = started.elapsed().as_millis() as u64, "pulled");
                Ok(record)
            }
            Err(e) => {
                self.metrics.record_pull_failure(e.cause());
                Err(status_of(e))
            }
        }
    }
}

/// CRI credentials: username/password (or `auth`, base64 of "user:pass")
/// for Basic, a registry or identity token for Bearer, none for anonymous.
fn registry_auth(auth: Option<&AuthConfig>) -> Result<RegistryAuth, Status> {
    let Some(a) = auth else { return Ok(RegistryAuth::Anonymous) };
    if !a.registry_token.is_empty() {
        return Ok(RegistryAuth::Bearer(a.registry_token.clone()));
    }
    if !a.identity_token.is_empty() {
        return Ok(RegistryAuth::Bearer(a.identity_token.clone()));
    }
    if !a.username.is_empty() {
        return Ok(RegistryAuth::Basic(a.username.clone(), a.password.clone()));
    }
    if !a.auth.is_empty() {
        let decoded = decode_base64(&a.auth).ok_or_else(|| Status::invalid_argument("auth.auth is not base64"))?;
        let (user, pass) = decoded.split_once(':').ok_or_else(|| Status::invalid_argument("auth.auth is not base64 of user:password"))?;
        return Ok(RegistryAuth::Basic(user.into(), pass.into()));
    }
    Ok(RegistryAuth::Anonymous)
}

/// Standard base64 (with or without padding), as Docker writes `auth`.
fn decode_base64(s: &str) -> Option<String> {
    use base64::Engine;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    String::from_utf8(engine.decode(s.trim()).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_map_to_registry_auth() {
        assert!(matches!(registry_auth(None).unwrap(), RegistryAuth::Anonymous));
        let basic = AuthConfig { auth: "dXNlcjpwYXNz".into(), ..Default::default() };
        assert!(matches!(registry_auth(Some(&basic)).unwrap(), RegistryAuth::Basic(u, p) if u == "user" && p == "pass"));
        let token = AuthConfig { registry_token: "t0k".into(), ..Default::default() };
        assert!(matches!(registry_auth(Some(&token)).unwrap(), RegistryAuth::Bearer(t) if t == "t0k"));
        assert!(registry_auth(Some(&AuthConfig { auth: "!!".into(), ..Default::default() })).is_err());
    }
}
