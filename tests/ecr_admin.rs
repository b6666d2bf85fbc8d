//! ECR API behaviour against moto with an explicitly configured identity (no environment):
//! batching of `BatchCheckLayerAvailability`, repository creation, immutable tags, a missing
//! repository, re-pushing the same image, starting a scan.

mod ecr_support;

use aws_credential_types::provider::SharedCredentialsProvider;
use bytes::Bytes;
use ecr_support::*;
use ocipush::blob::BytesBlob;
use ocipush::dest::Destination;
use ocipush::digest::Digest;
use ocipush::ecr::repo_admin::{CreateRepositoryOptions, create_repository, start_image_scan};
use ocipush::ecr::{EcrApiDestination, EcrError, EcrRepository};
use ocipush::image::{Descriptor, media_types};

fn admin_config(moto: &Moto) -> aws_config::SdkConfig {
    let creds = aws_credential_types::Credentials::new(
        &moto.info.admin.key,
        &moto.info.admin.secret,
        None,
        None,
        "test",
    );
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(moto.info.region.clone()))
        .credentials_provider(SharedCredentialsProvider::new(creds))
        .endpoint_url(&moto.info.moto)
        .build()
}

fn dest(moto: &Moto, name: &str) -> EcrApiDestination {
    let repo = EcrRepository::parse(&format!("{}/{name}", moto.info.host())).unwrap();
    EcrApiDestination::new(&admin_config(moto), repo)
}

fn no_secret(moto: &Moto, e: &impl std::fmt::Debug, shown: &str) {
    assert_no_secret(
        "an error",
        &format!("{shown} {e:?}"),
        &[&moto.info.admin.secret, &moto.info.admin.key],
    );
}

async fn push_config(d: &EcrApiDestination, bytes: &'static [u8]) -> Descriptor {
    let desc = Descriptor::new(
        media_types::OCI_CONFIG,
        Digest::of(bytes),
        bytes.len() as u64,
    );
    d.put_blob(&desc, &BytesBlob(Bytes::from_static(bytes)), &|_| {})
        .await
        .unwrap();
    desc
}

fn manifest(config: &Descriptor, note: &str) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media_types::OCI_MANIFEST, "config": config, "layers": [],
            "annotations": { "note": note }
        }))
        .unwrap(),
    )
}

#[tokio::test]
async fn repository_admin_and_api_errors() {
    let moto = Moto::start(ECR_CONTAINERISE);

    // More digests than one BatchCheckLayerAvailability call takes.
    let d = dest(&moto, "ec2-ecr-test");
    let many: Vec<Descriptor> = (0..250u32)
        .map(|i| Descriptor::new(media_types::OCI_LAYER_GZIP, Digest::of(&i.to_le_bytes()), 4))
        .collect();
    assert_eq!(d.blobs_exist(&many).await.unwrap(), vec![false; 250]);

    // A repository that does not exist: said so, with how to create it.
    let missing = dest(&moto, "no-such-repo");
    let e = missing.blobs_exist(&many[..1]).await.unwrap_err();
    let shown = e.to_string();
    assert!(
        matches!(
            e.downcast_ref::<EcrError>(),
            Some(EcrError::RepositoryNotFound { .. })
        ),
        "{e:?}"
    );
    assert!(
        shown.contains("aws ecr create-repository --repository-name no-such-repo"),
        "{shown}"
    );
    no_secret(&moto, &e, &shown);

    // Create it with immutable tags and scan on push; creating again is fine.
    let repo = missing.repository().clone();
    let options = CreateRepositoryOptions {
        immutable_tags: Some(true),
        scan_on_push: Some(true),
    };
    assert!(
        create_repository(missing.client(), &repo, &options)
            .await
            .unwrap()
    );
    assert!(
        !create_repository(missing.client(), &repo, &options)
            .await
            .unwrap()
    );
    let described = missing
        .client()
        .describe_repositories()
        .repository_names("no-such-repo")
        .send()
        .await
        .unwrap();
    let r = &described.repositories()[0];
    assert_eq!(
        r.image_tag_mutability(),
        Some(&aws_sdk_ecr::types::ImageTagMutability::Immutable)
    );
    assert_eq!(
        r.image_scanning_configuration().map(|c| c.scan_on_push()),
        Some(true)
    );

    // Push, re-push the same image under the same tag (fine), then another image under it (immutable).
    let config = push_config(&missing, b"{\"architecture\":\"amd64\",\"os\":\"linux\"}").await;
    let first = manifest(&config, "first");
    let got = missing
        .put_manifest("v1", media_types::OCI_MANIFEST, first.clone())
        .await
        .unwrap();
    assert_eq!(got, Some(Digest::of(&first)));
    missing
        .put_manifest("v1", media_types::OCI_MANIFEST, first.clone())
        .await
        .unwrap();
    let e = missing
        .put_manifest("v1", media_types::OCI_MANIFEST, manifest(&config, "second"))
        .await
        .unwrap_err();
    let shown = e.to_string();
    assert!(
        matches!(e.downcast_ref::<EcrError>(), Some(EcrError::ImmutableTag { tag, .. }) if tag == "v1"),
        "{e:?}"
    );
    assert!(shown.contains("immutable"), "{shown}");
    no_secret(&moto, &e, &shown);

    // A manifest put by digest.
    let third = manifest(&config, "third");
    let digest = Digest::of(&third);
    missing
        .put_manifest(digest.as_str(), media_types::OCI_MANIFEST, third)
        .await
        .unwrap();

    // Start a scan of the pushed tag.
    start_image_scan(missing.client(), &repo, "v1")
        .await
        .unwrap();

    // A blob whose bytes do not match its descriptor is refused before CompleteLayerUpload.
    let lie = Descriptor::new(media_types::OCI_CONFIG, Digest::of(b"other"), 5);
    let e = d
        .put_blob(&lie, &BytesBlob(Bytes::from_static(b"bytes")), &|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.downcast_ref::<EcrError>(),
            Some(EcrError::BlobMismatch { .. })
        ),
        "{e:?}"
    );
}
