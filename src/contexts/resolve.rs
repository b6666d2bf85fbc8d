//! A named context as the base of `FROM` (or the source of `COPY --from`), following BuildKit's
//! `NamedContext.Load` (frontend/dockerui/namedcontext.go):
//! - `docker-image://REF`: REF resolved like any base image (registries.conf, the platform's
//!   manifest out of an index); `docker-image://scratch` is the empty image;
//! - `oci-layout://…`: see [`super::layout`];
//! - a directory: an image with no config but the platform and one layer holding the
//!   directory's files (its `.dockerignore` applied, owned by root, mtimes the build's epoch),
//!   as BuildKit's local source is a filesystem without an image config.

use std::sync::Arc;

use super::layout::read_layout_image;
use super::{ContextError, ContextSource, NamedContext};
use crate::base_image::{self, BaseImage, BaseLayer};
use crate::blob::{BlobSource, FileBlob};
use crate::digest::Digest;
use crate::image::{Encoded, Format, ImageConfig, Manifest, Platform, media_types};
use crate::layers::{Context, CopySpec, LayerOptions, Spool, build_copy_layer};
use crate::registries_conf::RegistriesConf;
use crate::registry::RegistryClient;

/// What resolving a context needs: the registries (for `docker-image://`), and where and how
/// a directory's layer is written.
pub struct ResolveEnv<'a> {
    /// The registry client.
    pub client: &'a RegistryClient,
    /// registries.conf.
    pub registries: &'a RegistriesConf,
    /// Where a directory context's layer goes.
    pub spool: &'a Arc<Spool>,
    /// Compression and epoch of that layer.
    pub layer: LayerOptions,
}

/// The image `nc` stands for, for `platform`.
pub async fn resolve_base(
    nc: &NamedContext,
    platform: &Platform,
    env: &ResolveEnv<'_>,
) -> Result<BaseImage, ContextError> {
    match &nc.source {
        ContextSource::Image(r) if r == "scratch" => Ok(empty_image(platform, vec![], "scratch")),
        ContextSource::Image(r) => base_image::resolve(env.client, env.registries, r, platform)
            .await
            .map_err(|source| ContextError::Image {
                name: nc.given.clone(),
                image: r.clone(),
                source: Box::new(source),
            }),
        ContextSource::Layout { dir, reference } => {
            let (name, d, reference, platform) = (
                nc.given.clone(),
                dir.clone(),
                reference.clone(),
                platform.clone(),
            );
            crate::job_context::spawn_blocking(move || {
                read_layout_image(&name, &d, &reference, &platform)
            })
            .await
            .map_err(|e| ContextError::LayoutImage {
                name: nc.given.clone(),
                dir: dir.clone(),
                message: format!("internal error: a read task stopped: {e}"),
            })?
        }
        ContextSource::Dir(dir) => {
            let (spool, opts, d) = (env.spool.clone(), env.layer, dir.clone());
            let derr = |source| ContextError::Dir {
                name: nc.given.clone(),
                dir: dir.clone(),
                source: Box::new(source),
            };
            let layer = crate::job_context::spawn_blocking(move || {
                let ctx = Context::open(&d)?;
                let spec = CopySpec {
                    srcs: vec![".".into()],
                    dest: "/".into(),
                    ..Default::default()
                };
                build_copy_layer(&ctx, &spec, &spool, &opts)
            })
            .await
            .map_err(|e| {
                derr(crate::layers::BuildError::Io {
                    action: "build a layer from",
                    path: dir.clone(),
                    source: std::io::Error::other(e.to_string()),
                })
            })?
            .map_err(derr)?;
            let base = BaseLayer {
                descriptor: layer.descriptor(true),
                diff_id: layer.diff_id.clone(),
                source: Arc::new(FileBlob {
                    path: layer.path.clone(),
                }) as Arc<dyn BlobSource>,
            };
            Ok(empty_image(
                platform,
                vec![base],
                &format!("context {} ({})", nc.given, dir.display()),
            ))
        }
    }
}

/// An image of `layers` with a config that has only the platform (BuildKit's `emptyImage`;
/// the planner adds the default `PATH`), its digest that of the manifest it would have.
fn empty_image(platform: &Platform, layers: Vec<BaseLayer>, reference: &str) -> BaseImage {
    let mut config = ImageConfig {
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        ..Default::default()
    };
    config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.clone()).collect();
    let encoded = Encoded::new(&config, media_types::OCI_CONFIG);
    let manifest = Manifest::new(
        Format::Oci,
        encoded.descriptor(),
        layers.iter().map(|l| l.descriptor.clone()).collect(),
    )
    .encode();
    let digest: Digest = manifest.digest;
    BaseImage {
        reference: reference.to_string(),
        digest,
        config,
        layers,
    }
}
