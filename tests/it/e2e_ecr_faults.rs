//! Amazon ECR's answers over the registry endpoint, reproduced by the fault proxy in front of the
//! real CNCF registry (ECR's registry endpoint has no stand-in in moto): the ECR host name is
//! mapped to the proxy by registries.conf, so ocipush treats the push as a push to ECR, and the
//! proxy answers chosen requests as ECR documents it (`common::ecr_faults`, each with its source):
//!
//! * a manifest refused with 405 `UNSUPPORTED`: a rejected manifest with ECR's reason;
//! * an image without layers: refused before anything is uploaded;
//! * a cross-repository mount refused: the push completes by uploading the blob;
//! * a `DENIED` naming the action and resource: those are what the error names;
//! * a full repository (image-count quota): named as a quota, not as a missing `ecr:PutImage`;
//! * an immutable tag: the message says the tag may already be this very image.
//!
//! And `--ecr-api` against real moto (IAM enforced), with an `UploadLayerPart` whose answer is
//! lost after the part landed: the layer is sent again in a new upload session, and every
//! upload's parts stay consecutive.
//!
//! Amazon ECR Public has its own tests (`e2e_ecr_public`).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::fault_proxy::{Fault, FaultProxy, ProxyLogEntry, Rule};
use crate::common::fixtures::{copy_and_unpack, seed_alpine};
use crate::common::ocipush::{Sandbox, assert_failed, assert_pushed, run_watched, stderr};
use crate::common::registry::RegistryServer;
use crate::common::testdata;
use crate::common::tools::{run_image, skopeo_inspect_output};
use crate::e2e_ecr::ecr_support::{ECR_CONTAINERISE, Moto, assert_parts_valid};

const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const PASSWORD: &str = "123456789012-auth-token";

/// An "ECR registry": the real registry (user `AWS`) behind the fault proxy, which
/// registries.conf puts at [`HOST`]; Alpine from its own anonymous registry.
struct Ecr {
    sb: Sandbox,
    reg: RegistryServer,
    proxy: FaultProxy,
    _alpine: RegistryServer,
}

impl Ecr {
    fn start() -> Ecr {
        let reg = RegistryServer::start_with_auth("AWS", PASSWORD);
        let proxy = FaultProxy::start(reg.port());
        let alpine = RegistryServer::start();
        seed_alpine(&alpine, "library/alpine:latest");
        let sb = Sandbox::new();
        let alpine_location = format!("{}/library/alpine", alpine.addr());
        sb.set_registries(&[
            ("docker.io/library/alpine", alpine_location.as_str()),
            (HOST, proxy.addr().as_str()),
        ]);
        // The credential under the name the user wrote and under the host contacted: whichever
        // the lookup uses, the registry gets it.
        sb.login(&[
            (HOST, "AWS", PASSWORD),
            (proxy.addr().as_str(), "AWS", PASSWORD),
        ]);
        Ecr {
            sb,
            reg,
            proxy,
            _alpine: alpine,
        }
    }

    /// `ocipush [extra…] DOCKERFILE HOST/<destination>`.
    fn push(&self, dockerfile: &Path, destination: &str, extra: &[&str]) -> Output {
        let mut cmd = self.sb.command();
        cmd.args(extra)
            .arg("--registries-conf")
            .arg(self.sb.registries_conf())
            .arg(dockerfile)
            .arg(format!("{HOST}/{destination}"));
        run_watched(cmd)
    }

    /// A Dockerfile with `text` in its own directory of the sandbox.
    fn dockerfile(&self, name: &str, text: &str) -> PathBuf {
        let dir = self.sb.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("Dockerfile");
        std::fs::write(&f, text).unwrap();
        f
    }

    /// Whether `repository:tag` exists, asked of the registry itself.
    fn has_tag(&self, repository: &str, tag: &str) -> bool {
        skopeo_inspect_output(
            &format!("docker://{}/{repository}:{tag}", self.reg.addr()),
            false,
            Some(("AWS", PASSWORD)),
        )
        .status
        .success()
    }

    /// The image `repository@digest`, read from the registry itself, unpacked and run.
    fn assert_runs_hello(&self, repository: &str, digest: &str) {
        let img = copy_and_unpack(
            &format!("docker://{}/{repository}@{digest}", self.reg.addr()),
            Some(("AWS", PASSWORD)),
        );
        let ran = run_image(&img.rootfs, &img.config);
        assert_eq!(ran.stdout, "hello\n", "{ran:?}");
    }
}

fn injected(log: &[ProxyLogEntry], status: u16) -> Vec<&ProxyLogEntry> {
    log.iter()
        .filter(|e| e.fault.as_deref() == Some(&format!("status {status}")))
        .collect()
}

#[test]
fn a_manifest_ecr_refuses_with_405_unsupported_is_a_rejected_manifest_with_ecrs_reason() {
    let ecr = Ecr::start();
    ecr.proxy.add(Rule::new(
        "PUT",
        "/manifests/",
        usize::MAX,
        Fault::ecr_unsupported_manifest(),
    ));
    let out = ecr.push(&testdata("hello/Dockerfile"), "app:v1", &[]);
    let err = assert_failed(&out, 1);
    eprintln!("405 UNSUPPORTED:\n{err}");
    assert!(err.contains("rejected manifest"), "{err}");
    assert!(
        err.contains("UNSUPPORTED: Invalid parameter at 'ImageManifest'"),
        "ECR's reason must be shown: {err}"
    );
    assert!(
        !err.contains("read-only"),
        "no read-only-mirror hint: {err}"
    );
    assert_eq!(
        injected(&ecr.proxy.log(), 405).len(),
        1,
        "refused once, not retried"
    );
    assert!(!ecr.has_tag("app", "v1"));
}

#[test]
fn an_image_without_layers_is_refused_for_ecr_before_any_upload() {
    let ecr = Ecr::start();
    let dockerfile = ecr.dockerfile(
        "scratch",
        "FROM scratch\nLABEL org.opencontainers.image.title=metadata-only\nCMD [\"/nothing\"]\n",
    );
    let out = ecr.push(&dockerfile, "app:v1", &[]);
    let err = assert_failed(&out, 1);
    eprintln!("no layers:\n{err}");
    assert!(
        err.contains("has no layers") && err.contains("405 UNSUPPORTED"),
        "{err}"
    );
    let writes: Vec<_> = ecr
        .proxy
        .log()
        .into_iter()
        .filter(|e| e.method != "GET" && e.method != "HEAD")
        .collect();
    assert!(writes.is_empty(), "something was uploaded: {writes:#?}");
    assert!(!ecr.has_tag("app", "v1"));

    // The same image goes to a registry that is not ECR (this very one, by its own address).
    let mut cmd = ecr.sb.command();
    cmd.arg("--registries-conf")
        .arg(ecr.sb.registries_conf())
        .arg(&dockerfile)
        .arg(format!("{}/plain:v1", ecr.proxy.addr()));
    let out = cmd.output().unwrap();
    assert_pushed(&out, &format!("{}/plain", ecr.proxy.addr()));
}

#[test]
fn a_refused_cross_repository_mount_is_uploaded_instead() {
    let ecr = Ecr::start();
    // The base image lives in another repository of the same registry.
    seed_alpine(&ecr.reg, "base/alpine:latest");
    let dockerfile = ecr.dockerfile(
        "from-ecr",
        &format!("FROM {HOST}/base/alpine:latest\nCMD [\"sh\", \"-c\", \"echo hello\"]\n"),
    );
    // ECR refuses a mount the identity may not read the source for.
    ecr.proxy.add(Rule::new(
        "POST",
        "mount=",
        usize::MAX,
        Fault::ecr_denied(
            "ecr:GetDownloadUrlForLayer",
            "arn:aws:ecr:us-east-1:123456789012:repository/base/alpine",
        ),
    ));
    let out = ecr.push(&dockerfile, "app:v1", &["-vv", "--progress", "rawjson"]);
    let digest = assert_pushed(&out, &format!("{HOST}/app"));
    let err = stderr(&out);
    assert!(
        err.contains("uploading it instead") && err.contains("BLOB_MOUNTING"),
        "the debug note names what an ECR mount needs: {err}"
    );
    // The refusal is an event too, before the blob's upload, saying what a mount needs.
    let events = crate::e2e_options::rawjson_events(&err);
    let refused = crate::e2e_options::fallbacks(&events, "mount_refused");
    assert_eq!(refused.len(), 1, "{err}");
    let step = refused[0]["step"].as_str().unwrap();
    assert!(step.ends_with("from base/alpine"), "{step}");
    let detail = refused[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("403") && detail.contains("BLOB_MOUNTING"),
        "{detail}"
    );
    let at = |name: &str, digest: &str| {
        events
            .iter()
            .position(|e| e["event"] == name && e["data"]["digest"] == digest)
    };
    let blob = step
        .strip_prefix("mounting blob ")
        .and_then(|s| s.split(' ').next())
        .unwrap();
    let fell_back = events
        .iter()
        .position(|e| e["event"] == "fallback" && e["data"]["kind"] == "mount_refused")
        .unwrap();
    assert!(
        at("blob_uploading", blob).is_some_and(|u| fell_back < u),
        "{err}"
    );

    let log = ecr.proxy.log();
    let mounts = injected(&log, 403);
    assert_eq!(mounts.len(), 1, "{log:#?}");
    // The refused blob then went up by a normal upload, completed with its digest.
    let layer = mounts[0]
        .target
        .split("mount=")
        .nth(1)
        .and_then(|q| q.split('&').next())
        .unwrap()
        .replace("%3A", ":");
    let completed = log.iter().any(|e| {
        e.method == "PUT"
            && e.path().starts_with("/v2/app/blobs/uploads/")
            && e.target
                .replace("%3A", ":")
                .contains(&format!("digest={layer}"))
            && e.status == Some(201)
    });
    assert!(completed, "{layer} was not uploaded: {log:#?}");
    ecr.assert_runs_hello("app", &digest);
}

#[test]
fn a_denied_answer_names_the_action_and_resource_ecr_gave() {
    let ecr = Ecr::start();
    let arn = "arn:aws:ecr:us-east-1:123456789012:repository/app";
    ecr.proxy.add(Rule::new(
        "POST",
        "/v2/app/blobs/uploads/",
        usize::MAX,
        Fault::ecr_denied("ecr:InitiateLayerUpload", arn),
    ));
    let out = ecr.push(&testdata("hello/Dockerfile"), "app:v1", &[]);
    let err = assert_failed(&out, 1);
    eprintln!("DENIED:\n{err}");
    assert!(
        err.contains(&format!("needs `ecr:InitiateLayerUpload` on `{arn}`")),
        "{err}"
    );
    assert!(
        !err.contains("checked as"),
        "the action is ECR's, not a guess: {err}"
    );
    assert!(
        err.contains(&format!("ocipush iam-policy {HOST}/app")),
        "{err}"
    );
    assert!(!ecr.has_tag("app", "v1"));
}

#[test]
fn a_full_repository_is_named_as_a_quota_not_a_missing_permission() {
    let ecr = Ecr::start();
    ecr.proxy.add(Rule::new(
        "PUT",
        "/manifests/",
        usize::MAX,
        Fault::ecr_repository_full("app", "123456789012"),
    ));
    let out = ecr.push(&testdata("hello/Dockerfile"), "app:v1", &[]);
    let err = assert_failed(&out, 1);
    eprintln!("quota:\n{err}");
    assert!(err.contains("quota"), "{err}");
    assert!(err.contains("maximum allowed number of images"), "{err}");
    assert!(
        !err.contains("ecr:PutImage") && !err.contains("iam-policy"),
        "not a missing permission: {err}"
    );
    assert!(!ecr.has_tag("app", "v1"));

    // `ocipush copy` into the full repository says the same.
    let mut cmd = ecr.sb.command();
    cmd.arg("copy")
        .arg("--registries-conf")
        .arg(ecr.sb.registries_conf())
        .arg("docker.io/library/alpine:latest")
        .arg(format!("{HOST}/app:copied"));
    let err = assert_failed(&cmd.output().unwrap(), 1);
    eprintln!("quota (copy):\n{err}");
    assert!(
        err.contains("quota") && !err.contains("ecr:PutImage"),
        "{err}"
    );
    assert!(!ecr.has_tag("app", "copied"));
}

#[test]
fn an_immutable_tag_refusal_says_the_tag_may_already_be_this_image() {
    let ecr = Ecr::start();
    // The first push tags v1; the repository is then "made immutable": the same push again
    // (a reproducible build: the very same image) is refused as ECR refuses it.
    let first = ecr.push(&testdata("hello/Dockerfile"), "app:v1", &[]);
    let digest = assert_pushed(&first, &format!("{HOST}/app"));
    ecr.proxy.add(Rule::new(
        "PUT",
        "/manifests/v1",
        usize::MAX,
        Fault::ecr_immutable_tag("v1", "app"),
    ));
    let out = ecr.push(&testdata("hello/Dockerfile"), "app:v1", &[]);
    let err = assert_failed(&out, 1);
    eprintln!("immutable tag:\n{err}");
    assert!(err.contains("immutable"), "{err}");
    assert!(err.contains("may already be this very image"), "{err}");
    assert!(
        err.contains(&format!("this very image ({digest})")),
        "the message names this push's digest: {err}"
    );
    assert!(
        err.contains(
            "describe-images --repository-name app --region us-east-1 --image-ids imageTag=v1"
        ),
        "{err}"
    );
    assert_eq!(injected(&ecr.proxy.log(), 400).len(), 1);
    ecr.assert_runs_hello("app", &digest);
}

#[test]
fn the_ecr_api_restarts_a_layer_whose_part_answer_was_lost() {
    // The first UploadLayerPart lands in moto, and its answer is replaced by a 500.
    let moto = Moto::start_with_args(ECR_CONTAINERISE, &[], &[], &["--fail-upload-part", "1"]);
    let ecr = Ecr::start();
    let mut cmd = ecr.sb.command();
    cmd.env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &moto.info.imds)
        .env("AWS_ENDPOINT_URL", &moto.info.moto)
        .arg("--registries-conf")
        .arg(ecr.sb.registries_conf())
        .args(["--ecr-api", "-v", "--progress", "plain"])
        .arg(testdata("hello/Dockerfile"))
        .arg(format!("{HOST}/ec2-ecr-test:v1"));
    let out = cmd.output().unwrap();
    let digest = assert_pushed(&out, &format!("{HOST}/ec2-ecr-test"));
    let err = stderr(&out);
    assert!(err.contains("new upload session"), "{err}");
    // The restart is one plain progress line (a fallback event), naming the layer.
    let restarted: Vec<&str> = err
        .lines()
        .filter(|l| l.ends_with("[upload_restarted]"))
        .collect();
    assert_eq!(restarted.len(), 1, "{err}");
    assert!(
        restarted[0].starts_with("uploading blob sha256:")
            && restarted[0].contains(": attempt 1 failed ("),
        "{err}"
    );

    let calls = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(moto.calls_with_status());
    let lost: Vec<_> = calls.iter().filter(|c| c.injected).collect();
    assert_eq!(lost.len(), 1, "{calls:#?}");
    assert_eq!(lost[0].status, Some(200), "the part landed: {calls:#?}");
    let lost_upload = lost[0].part.as_ref().unwrap().upload.clone();
    // That upload got no further part (nothing resent into it), and a new one carried the layer:
    // every upload's parts are consecutive from byte 0.
    let into_lost = calls
        .iter()
        .filter(|c| c.part.as_ref().is_some_and(|p| p.upload == lost_upload))
        .count();
    assert_eq!(
        into_lost, 1,
        "a part was resent into the same upload: {calls:#?}"
    );
    let uploads = assert_parts_valid(&calls);
    let initiated = calls
        .iter()
        .filter(|c| c.action == "ecr:InitiateLayerUpload" && c.status == Some(200))
        .count();
    let completed = calls
        .iter()
        .filter(|c| c.action == "ecr:CompleteLayerUpload" && c.status == Some(200))
        .count();
    assert_eq!(
        initiated,
        completed + 1,
        "one upload session abandoned: {calls:#?}"
    );
    assert_eq!(uploads.len(), initiated, "{calls:#?}");

    // The image is in ECR as pushed.
    let got = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            moto.admin_ecr()
                .batch_get_image()
                .repository_name("ec2-ecr-test")
                .image_ids(
                    aws_sdk_ecr::types::ImageIdentifier::builder()
                        .image_tag("v1")
                        .build(),
                )
                .send()
                .await
                .unwrap()
        });
    let manifest = got.images()[0].image_manifest().unwrap();
    assert_eq!(
        ocipush::digest::Digest::of(manifest.as_bytes()).to_string(),
        digest
    );
}
