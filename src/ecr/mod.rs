//! Amazon ECR: registry host parsing ([`EcrHost`], [`EcrRepository`], and Amazon ECR Public's
//! [`EcrPublicRepository`]), AWS configuration ([`AwsOptions`], [`load_sdk_config`]), registry
//! credentials from `GetAuthorizationToken` of ECR or ECR Public ([`EcrCredentialProvider`]), a [`Destination`](crate::dest::Destination) over the ECR API
//! ([`EcrApiDestination`]), IAM policy generation ([`policy`]), repository administration
//! ([`repo_admin`]), and errors that name the missing IAM action ([`EcrError`]).

mod api_dest;
mod credentials;
mod errors;
pub mod policy;
mod registry_step;
pub mod repo_admin;
mod token;

pub use crate::ecr_host::{
    EcrHost, EcrHostError, EcrPublicRepository, EcrRepository, PUBLIC_HINT, PUBLIC_HOST,
    PUBLIC_REGION,
};
pub use api_dest::{
    CHECK_BATCH, DEFAULT_PART_SIZE, EcrApiDestination, MAX_PART_SIZE, MAX_PARTS,
    MAX_SUGGESTED_PART_SIZE, MIN_PART_SIZE,
};
pub use credentials::{
    AwsOptions, DEFAULT_SESSION_NAME, SdkConfigCache, ecr_client, ecr_public_client,
    load_sdk_config,
};
pub use errors::{CREDENTIAL_SOURCES, EcrError};
pub use registry_step::{RegistryStep, public_registry_denied, registry_denied};
pub use token::{EcrCredentialProvider, PROVIDER_NAME, PublicTokens};
