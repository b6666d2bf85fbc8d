//! The OCI distribution client: [`RegistryClient`] (connections, auth caches) and
//! [`Repository`] (one repository of one registry endpoint), which implements
//! [`Destination`](crate::dest::Destination) for pushing and fetches manifests and blobs of base
//! images. Authentication follows the registry's `WWW-Authenticate` challenge (Basic, or Bearer
//! tokens from the token server); transient failures are retried per [`RetryPolicy`].

mod auth;
mod body;
mod challenge;
mod chunked;
mod chunking;
mod client;
mod error;
mod expiry;
pub(crate) mod http;
mod origin;
mod pull;
mod repository;
pub(crate) mod retry;
mod sending;
mod token;
mod upload;

pub use challenge::{Challenge, parse_challenges};
pub use chunking::{MIN_CHUNK_SIZE, parse_chunk_size};
pub(crate) use client::http_client_builder;
pub use client::{CaCert, ClientOptions, RegistryClient};
pub use error::{ErrorDetail, OciError, RegistryError, RequestKind};
pub use pull::{MAX_MANIFEST_SIZE, Manifest, RemoteBlob};
pub use repository::Repository;
pub(crate) use repository::Subject;
pub use retry::RetryPolicy;
pub use token::MAX_TOKEN_RESPONSE;
