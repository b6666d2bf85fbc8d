//! [`EcrApiDestination`]: pushes through the ECR API (aws-sdk-ecr) instead of the registry
//! endpoint: `BatchCheckLayerAvailability` (≤ 100 digests a call), `InitiateLayerUpload` →
//! `UploadLayerPart` (contiguous parts streamed from the blob source, one part held at a time) →
//! `CompleteLayerUpload`, then `PutImage`. A layer still being built is sent the same way, part
//! by part as it is written. It never reads the repository (no `BatchGetImage`,
//! no `GetDownloadUrlForLayer`): a push-only role suffices.
//!
//! Parts must be consecutive (`partFirstByte` right after the previous part's last byte), 5 MiB or
//! more but the last, and at most 4,200 per layer
//! (<https://docs.aws.amazon.com/AmazonECR/latest/userguide/service-quotas.html>): the part size is
//! ECR's `partSize` answer kept within 5–10 MiB, raised for a layer that would need more parts.
//! An `UploadLayerPart` is never retried by itself: one whose answer was lost may have landed,
//! and sending it again breaks the consecutive-part rule. A layer whose upload fails with a
//! transient error is instead sent again from its first byte in a new upload session
//! (`InitiateLayerUpload`), up to the configured attempts.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::credentials::{AwsOptions, ecr_client, load_sdk_config};
use super::errors::{CallContext, EcrError, from_sdk};
use crate::blob::BlobSource;
use crate::dest::{DestError, Destination, Progress};
use crate::digest::{Digest, Hasher};
use crate::ecr_host::EcrRepository;
use crate::image::Descriptor;
use crate::streaming::{GrowingBlob, Sending};

const MIB: u64 = 1024 * 1024;
/// ECR's minimum part size (all parts but the last).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// The largest part size ECR's quotas page gives; ECR's `partSize` answer is kept at or below it.
pub const MAX_SUGGESTED_PART_SIZE: u64 = 10 * MIB;
/// The largest part we ever send (the API model allows 20 MiB): only for a layer that would
/// otherwise need more than [`MAX_PARTS`] parts.
pub const MAX_PART_SIZE: u64 = 20 * MIB;
/// The part size when ECR suggests none.
pub const DEFAULT_PART_SIZE: u64 = 10 * MIB;
/// Parts per layer upload at most (ECR's quota).
pub const MAX_PARTS: u64 = 4_200;
/// Attempts per layer when none are configured (the SDK's default per call).
const DEFAULT_LAYER_ATTEMPTS: u32 = 3;
/// `BatchCheckLayerAvailability` takes at most this many digests.
pub const CHECK_BATCH: usize = 100;

/// A [`Destination`] that is one ECR repository, reached through the ECR API.
#[derive(Clone)]
pub struct EcrApiDestination {
    client: aws_sdk_ecr::Client,
    repository: EcrRepository,
    identity: Option<String>,
    /// Upload sessions per layer, the first included.
    layer_attempts: u32,
}

impl std::fmt::Debug for EcrApiDestination {
    // Not derived: the SDK client's Debug may show the access key id.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcrApiDestination")
            .field("repository", &self.repository.to_string())
            .field("identity", &self.identity)
            .field("layer_attempts", &self.layer_attempts)
            .finish_non_exhaustive()
    }
}

impl EcrApiDestination {
    /// A destination for `repository` with the caller's SDK configuration.
    pub fn new(config: &aws_config::SdkConfig, repository: EcrRepository) -> Self {
        EcrApiDestination {
            client: ecr_client(config, &repository.host),
            repository,
            identity: None,
            layer_attempts: DEFAULT_LAYER_ATTEMPTS,
        }
    }

    /// Parse `<account>.dkr.ecr.<region>.amazonaws.com/<name>[:tag]` and load the AWS
    /// configuration with `options` (the host's region when none is configured).
    pub async fn connect(reference: &str, options: &AwsOptions) -> Result<Self, EcrError> {
        let repository = EcrRepository::parse(reference)?;
        let config = load_sdk_config(options, Some(&repository.host.region)).await;
        Ok(EcrApiDestination::with_identity(
            &config, repository, options,
        ))
    }

    /// A destination for `repository` with a configuration already loaded for `options`
    /// (e.g. from an [`SdkConfigCache`](super::SdkConfigCache)); errors name that identity.
    pub fn with_identity(
        config: &aws_config::SdkConfig,
        repository: EcrRepository,
        options: &AwsOptions,
    ) -> Self {
        let mut d = EcrApiDestination::new(config, repository);
        d.identity = options.identity();
        if let Some(n) = options.max_attempts {
            d.layer_attempts = n.max(1);
        }
        d
    }

    /// The repository.
    pub fn repository(&self) -> &EcrRepository {
        &self.repository
    }

    /// The ECR client (for repository administration).
    pub fn client(&self) -> &aws_sdk_ecr::Client {
        &self.client
    }

    fn ctx(&self, operation: &'static str, item: Option<String>) -> CallContext<'_> {
        CallContext {
            operation,
            repository: Some(&self.repository),
            registry: "",
            item,
            identity: self.identity.clone(),
        }
    }

    /// Which of `digests` the repository has.
    pub async fn check_layers(&self, digests: &[Digest]) -> Result<Vec<bool>, EcrError> {
        let mut out = Vec::with_capacity(digests.len());
        for batch in digests.chunks(CHECK_BATCH) {
            tracing::debug!(repository = %self.repository, digests = batch.len(), "ECR BatchCheckLayerAvailability");
            let resp = self
                .client
                .batch_check_layer_availability()
                .registry_id(&self.repository.host.account)
                .repository_name(&self.repository.name)
                .set_layer_digests(Some(batch.iter().map(|d| d.to_string()).collect()))
                .send()
                .await
                .map_err(|e| from_sdk(e, &self.ctx("BatchCheckLayerAvailability", None)))?;
            for d in batch {
                let available = resp.layers().iter().any(|l| {
                    l.layer_digest() == Some(d.as_str())
                        && l.layer_availability()
                            == Some(&aws_sdk_ecr::types::LayerAvailability::Available)
                });
                out.push(available);
            }
        }
        Ok(out)
    }

    /// Upload one blob (see [`Destination::put_blob`]).
    pub async fn upload_blob(
        &self,
        blob: &Descriptor,
        source: &dyn BlobSource,
        progress: Progress<'_>,
    ) -> Result<(), EcrError> {
        self.upload_parts(Sending::Known(blob, source), progress)
            .await
            .map(|_| ())
    }

    /// Upload a layer while it is being built (see [`Destination::put_growing_blob`]): parts
    /// go up as they are written. Once the layer is finished with at least a part still unsent,
    /// `BatchCheckLayerAvailability` is asked first; a layer the repository has is not sent.
    pub async fn upload_growing(
        &self,
        blob: &GrowingBlob,
        progress: Progress<'_>,
    ) -> Result<(Digest, u64), EcrError> {
        self.upload_parts(Sending::Growing(blob), progress).await
    }

    /// Send a layer, in a new upload session per attempt: a transient failure (throttling, 5xx,
    /// a lost answer, ECR refusing a part as not consecutive) restarts the layer from its first
    /// byte rather than resending a part that may have landed.
    async fn upload_parts(
        &self,
        sending: Sending<'_>,
        progress: Progress<'_>,
    ) -> Result<(Digest, u64), EcrError> {
        let mut attempt = 1;
        loop {
            match self.upload_session(&sending, progress).await {
                Err(e) if attempt < self.layer_attempts && restartable(&e) => {
                    tracing::warn!(
                        repository = %self.repository,
                        blob = %sending.label(),
                        attempt,
                        "the layer upload failed ({e}); sending the layer again in a new upload session"
                    );
                    crate::events::fallback(
                        format!("uploading blob {}", sending.label()),
                        crate::events::FallbackKind::UploadRestarted,
                        &format!(
                            "attempt {attempt} failed ({e}); sending the layer again in a new upload session"
                        ),
                    );
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// One upload session: `InitiateLayerUpload`, the parts from byte 0, `CompleteLayerUpload`.
    async fn upload_session(
        &self,
        sending: &Sending<'_>,
        progress: Progress<'_>,
    ) -> Result<(Digest, u64), EcrError> {
        let label = sending.label();
        let item = || Some(format!("blob {label}"));
        tracing::debug!(repository = %self.repository, blob = %label, "ECR InitiateLayerUpload");
        let init = self
            .client
            .initiate_layer_upload()
            .registry_id(&self.repository.host.account)
            .repository_name(&self.repository.name)
            .send()
            .await
            .map_err(|e| from_sdk(e, &self.ctx("InitiateLayerUpload", item())))?;
        let upload_id =
            init.upload_id()
                .map(str::to_string)
                .ok_or_else(|| EcrError::InvalidResponse {
                    operation: "InitiateLayerUpload".into(),
                    target: self.repository.to_string(),
                    message: "no uploadId".into(),
                })?;
        let known_size = match sending {
            Sending::Known(d, _) => Some(d.size),
            Sending::Growing(_) => None,
        };
        let base_part_size = part_size(init.part_size(), known_size);
        let read_err = |source| EcrError::BlobRead {
            repository: self.repository.to_string(),
            blob: label.clone(),
            source,
        };
        let mut stream = sending.source().open().await.map_err(read_err)?;
        let mut hasher = Hasher::new();
        let mut buf = BytesMut::new();
        let mut sent: u64 = 0;
        let mut parts: u64 = 0;
        let mut checked = false;
        loop {
            let chunk = stream.next().await.transpose().map_err(read_err)?;
            let done = chunk.is_none();
            if let Some(c) = chunk {
                hasher.update(&c);
                buf.extend_from_slice(&c);
            }
            if let Sending::Growing(g) = sending
                && !checked
                && let Some((digest, size)) = g.finished_now()
            {
                checked = true;
                if size - sent >= base_part_size
                    && self.check_layers(std::slice::from_ref(&digest)).await?[0]
                {
                    tracing::info!(%digest, sent, size, "ECR has the layer already; the rest is not sent");
                    crate::events::fallback(
                        format!("uploading blob {}", sending.label()),
                        crate::events::FallbackKind::BlobAlreadyThere,
                        &format!(
                            "ECR has {digest} already; the rest ({} of {size} bytes) is not sent",
                            size - sent
                        ),
                    );
                    return Ok((digest, size));
                }
            }
            loop {
                let part_size = match known_size {
                    Some(_) => base_part_size,
                    None => growing_part_size(base_part_size, parts),
                };
                if !(buf.len() as u64 >= part_size || (done && !buf.is_empty())) {
                    break;
                }
                if parts >= MAX_PARTS {
                    return Err(EcrError::TooManyParts {
                        repository: self.repository.to_string(),
                        blob: label.clone(),
                        sent,
                    });
                }
                let take = (buf.len() as u64).min(part_size) as usize;
                let part = buf.split_to(take).freeze();
                self.upload_part(&label, &upload_id, sent, part).await?;
                sent += take as u64;
                parts += 1;
                progress(sent);
            }
            if done {
                break;
            }
        }
        let part_size = base_part_size;
        let (found, found_size) = hasher.finish();
        let (digest, size) = sending.finished().await.map_err(read_err)?;
        if found != digest || found_size != size {
            return Err(EcrError::BlobMismatch {
                repository: self.repository.to_string(),
                expected: digest,
                expected_size: size,
                found,
                found_size,
            });
        }
        tracing::debug!(repository = %self.repository, %digest, "ECR CompleteLayerUpload");
        let done = self
            .client
            .complete_layer_upload()
            .registry_id(&self.repository.host.account)
            .repository_name(&self.repository.name)
            .upload_id(&upload_id)
            .layer_digests(digest.to_string())
            .send()
            .await;
        match done {
            Ok(_) => Ok((digest, size)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_layer_already_exists_exception()) =>
            {
                Ok((digest, size))
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_layer_part_too_small_exception()) =>
            {
                Err(EcrError::LayerPartTooSmall {
                    repository: self.repository.to_string(),
                    blob: digest.to_string(),
                    part_size,
                    message: e
                        .as_service_error()
                        .and_then(|s| s.meta().message())
                        .unwrap_or_default()
                        .to_string(),
                })
            }
            Err(e) => Err(from_sdk(
                e,
                &self.ctx("CompleteLayerUpload", Some(format!("blob {digest}"))),
            )),
        }
    }

    async fn upload_part(
        &self,
        blob: &str,
        upload_id: &str,
        first: u64,
        part: Bytes,
    ) -> Result<(), EcrError> {
        let len = part.len() as u64;
        let last = first + len - 1;
        tracing::debug!(repository = %self.repository, blob, first, last, "ECR UploadLayerPart");
        let resp = self
            .client
            .upload_layer_part()
            .registry_id(&self.repository.host.account)
            .repository_name(&self.repository.name)
            .upload_id(upload_id)
            .part_first_byte(first as i64)
            .part_last_byte(last as i64)
            .layer_part_blob(aws_smithy_types::Blob::new(Vec::from(part)))
            // Never retried by the SDK: a part whose answer was lost may have landed, and
            // resending it breaks the consecutive-part rule; the layer restarts instead.
            .customize()
            .config_override(
                aws_sdk_ecr::config::Builder::default()
                    .retry_config(aws_sdk_ecr::config::retry::RetryConfig::disabled()),
            )
            .send()
            .await;
        match resp {
            Ok(_) => Ok(()),
            Err(e) => Err(from_sdk(
                e,
                &self.ctx(
                    "UploadLayerPart",
                    Some(format!("blob {blob}, bytes {first}-{last}")),
                ),
            )),
        }
    }

    /// Put a manifest (see [`Destination::put_manifest`]). Returns the manifest's digest.
    pub async fn put_image(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, EcrError> {
        let manifest = std::str::from_utf8(bytes).map_err(|_| EcrError::ManifestNotUtf8 {
            repository: self.repository.to_string(),
            reference: reference.to_string(),
        })?;
        let digest = Digest::of(bytes);
        tracing::debug!(repository = %self.repository, reference, %digest, media_type, "ECR PutImage");
        let mut req = self
            .client
            .put_image()
            .registry_id(&self.repository.host.account)
            .repository_name(&self.repository.name)
            .image_manifest(manifest)
            .image_manifest_media_type(media_type)
            .image_digest(digest.to_string());
        let is_tag = reference.parse::<Digest>().is_err();
        if is_tag {
            req = req.image_tag(reference);
        }
        match req.send().await {
            Ok(_) => Ok(digest),
            // The same manifest under the same tag: already pushed. ECR names the digest it
            // has; another digest means the tag is taken (moto answers an immutable tag so).
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_image_already_exists_exception()) =>
            {
                let message = e
                    .as_service_error()
                    .and_then(|s| s.meta().message())
                    .unwrap_or_default();
                match digest_in_message(message) {
                    Some(existing) if is_tag && existing != digest.as_str() => {
                        Err(EcrError::ImmutableTag {
                            repository: self.repository.to_string(),
                            name: self.repository.name.clone(),
                            region: self.repository.host.region.clone(),
                            tag: reference.to_string(),
                            ours: Some(digest.to_string()),
                            message: message.to_string(),
                        })
                    }
                    _ => Ok(digest),
                }
            }
            Err(e) => {
                let mut err = from_sdk(e, &self.ctx("PutImage", Some(reference.to_string())));
                if let EcrError::ImmutableTag { ours, .. } = &mut err {
                    *ours = Some(digest.to_string());
                }
                Err(err)
            }
        }
    }
}

/// The digest in "Image with digest 'sha256:…' and tag 'v1' already exists …".
fn digest_in_message(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("digest '")?;
    rest.split_once('\'').map(|(d, _)| d)
}

/// The part size for a layer: ECR's `partSize` answer (10 MiB from ECR) kept within
/// [`MIN_PART_SIZE`]..=[`MAX_SUGGESTED_PART_SIZE`], raised (up to [`MAX_PART_SIZE`]) when a layer of
/// `size` bytes would need more than [`MAX_PARTS`] parts.
fn part_size(suggested: Option<i64>, size: Option<u64>) -> u64 {
    let base = match suggested {
        Some(s) if s > 0 => (s as u64).clamp(MIN_PART_SIZE, MAX_SUGGESTED_PART_SIZE),
        _ => DEFAULT_PART_SIZE,
    };
    match size {
        Some(n) => base.max(n.div_ceil(MAX_PARTS)).min(MAX_PART_SIZE),
        None => base,
    }
}

/// The size of the next part of a layer whose size is not known yet (being built) after `parts`
/// parts: `base` for the first half of the part budget, then [`MAX_PART_SIZE`], so a layer of up
/// to 2,100 × 10 MiB + 2,100 × 20 MiB (61.5 GiB, above ECR's 52,000 MiB layer limit) fits.
fn growing_part_size(base: u64, parts: u64) -> u64 {
    if parts < MAX_PARTS / 2 {
        base
    } else {
        MAX_PART_SIZE.max(base)
    }
}

/// Whether a failed layer upload may succeed in a new upload session: transient failures, and
/// ECR refusing a part (`InvalidLayerPartException`: not consecutive, e.g. after a part that
/// landed although its answer was lost).
fn restartable(e: &EcrError) -> bool {
    e.is_retryable()
        || matches!(e, EcrError::Api { code: Some(c), .. } if c == "InvalidLayerPartException")
}

#[async_trait::async_trait]
impl Destination for EcrApiDestination {
    fn describe(&self) -> String {
        format!("{} (ECR API)", self.repository)
    }

    async fn blobs_exist(&self, blobs: &[Descriptor]) -> Result<Vec<bool>, DestError> {
        let digests: Vec<Digest> = blobs.iter().map(|b| b.digest.clone()).collect();
        self.check_layers(&digests).await.map_err(DestError::new)
    }

    async fn put_blob(
        &self,
        blob: &Descriptor,
        source: &dyn BlobSource,
        progress: Progress<'_>,
    ) -> Result<(), DestError> {
        self.upload_blob(blob, source, progress)
            .await
            .map_err(DestError::new)
    }

    async fn put_growing_blob(
        &self,
        blob: &GrowingBlob,
        progress: Progress<'_>,
    ) -> Result<Option<(Digest, u64)>, DestError> {
        self.upload_growing(blob, progress)
            .await
            .map(Some)
            .map_err(DestError::new)
    }

    async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Option<Digest>, DestError> {
        self.put_image(reference, media_type, &bytes)
            .await
            .map(Some)
            .map_err(DestError::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_from_already_exists() {
        let m = "Image with digest 'sha256:abc' and tag 'v1' already exists in the repository with name 'r'";
        assert_eq!(digest_in_message(m), Some("sha256:abc"));
        assert_eq!(digest_in_message("nothing"), None);
    }

    #[test]
    fn part_sizes_follow_ecr_within_its_limits() {
        assert_eq!(part_size(None, None), DEFAULT_PART_SIZE);
        assert_eq!(part_size(Some(0), None), DEFAULT_PART_SIZE);
        assert_eq!(part_size(Some(1024), None), MIN_PART_SIZE);
        assert_eq!(part_size(Some(6 * MIB as i64), Some(100 * MIB)), 6 * MIB);
        assert_eq!(part_size(Some(10 * MIB as i64), None), 10 * MIB);
        // ECR's answer is kept within 5–10 MiB ...
        assert_eq!(part_size(Some(i64::MAX), None), MAX_SUGGESTED_PART_SIZE);
        // ... unless the layer would need more than 4,200 parts.
        let big = 50 * 1024 * MIB;
        let p = part_size(Some(10 * MIB as i64), Some(big));
        assert!(p > 10 * MIB && p <= MAX_PART_SIZE, "{p}");
        assert!(big.div_ceil(p) <= MAX_PARTS);
        assert_eq!(
            part_size(Some(10 * MIB as i64), Some(42 * 1024 * MIB)),
            42 * 1024 * MIB / 4200 + 1
        );
        // A layer being built: 10 MiB parts, then 20 MiB ones for the second half of the budget.
        assert_eq!(growing_part_size(10 * MIB, 0), 10 * MIB);
        assert_eq!(growing_part_size(10 * MIB, MAX_PARTS / 2 - 1), 10 * MIB);
        assert_eq!(growing_part_size(10 * MIB, MAX_PARTS / 2), MAX_PART_SIZE);
        let capacity = (MAX_PARTS / 2) * 10 * MIB + (MAX_PARTS / 2) * MAX_PART_SIZE;
        assert!(capacity > 52_000 * MIB);
    }

    #[test]
    fn failed_layers_restart_on_transient_errors_and_refused_parts() {
        let api = |code: &str, retryable| EcrError::Api {
            operation: "UploadLayerPart".into(),
            target: "r".into(),
            code: Some(code.into()),
            message: "m".into(),
            retryable,
        };
        assert!(restartable(&api("ServerException", true)));
        assert!(restartable(&api("InvalidLayerPartException", false)));
        assert!(!restartable(&api("InvalidParameterException", false)));
        assert!(!restartable(&EcrError::QuotaExceeded {
            operation: "o".into(),
            target: "t".into(),
            message: "m".into()
        }));
    }
}
