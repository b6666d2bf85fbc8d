//! ECR's dual-stack host forms, end to end: a build instance (credentials from its role over
//! IMDSv2, no docker login, no region configured) pushes over the registry endpoint to
//! `<account>.dkr-ecr[-fips].<region>.on.aws`; each is recognised as ECR, so its token comes from
//! `GetAuthorizationToken` through the AWS chain (real moto, IAM enforced), and the push lands
//! in the real registry registries.conf maps the host to. Which API endpoint a host's client
//! resolves (FIPS, dual-stack, `amazonaws.eu`) is `ecr::credentials::tests`: here
//! `AWS_ENDPOINT_URL` points every client at moto. The European Sovereign Cloud host is not pushed
//! to here: its partition (`aws-eusc`) has its own IAM, in moto too ("The security token included
//! in the request is invalid" for the `aws` role's credentials), and the moto setup is in `aws`.

use crate::common::fixtures::seed_alpine;
use crate::common::ocipush::{Sandbox, assert_pushed};
use crate::common::registry::RegistryServer;
use crate::common::testdata;
use crate::e2e_ecr::ecr_support::{ECR_CONTAINERISE, Moto};

#[test]
fn dual_stack_hosts_get_their_token_from_the_aws_chain() {
    let moto = Moto::start(ECR_CONTAINERISE);
    // moto's token password is `<account>-auth-token` (asserted in e2e_ecr).
    let reg = RegistryServer::start_with_auth("AWS", "123456789012-auth-token");
    let alpine = RegistryServer::start();
    seed_alpine(&alpine, "library/alpine:latest");
    let alpine_location = format!("{}/library/alpine", alpine.addr());
    let hosts = [
        "123456789012.dkr-ecr.us-east-1.on.aws",
        "123456789012.dkr-ecr-fips.us-east-1.on.aws",
    ];
    for host in hosts {
        let sb = Sandbox::new();
        sb.set_registries(&[
            ("docker.io/library/alpine", alpine_location.as_str()),
            (host, reg.addr().as_str()),
        ]);
        let mut cmd = sb.command();
        cmd.env_remove("AWS_EC2_METADATA_DISABLED")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &moto.info.imds)
            .env("AWS_ENDPOINT_URL", &moto.info.moto)
            .arg("--registries-conf")
            .arg(sb.registries_conf())
            .arg(testdata("hello/Dockerfile"))
            .arg(format!("{host}/ec2-ecr-test:v1"));
        let out = cmd.output().unwrap();
        assert_pushed(&out, &format!("{host}/ec2-ecr-test"));
    }
    let calls = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(moto.calls_with_status());
    let tokens = calls
        .iter()
        .filter(|c| {
            c.action == "ecr:GetAuthorizationToken"
                && c.caller == "assumed-role"
                && c.status == Some(200)
        })
        .count();
    assert!(tokens >= hosts.len(), "one token per push: {calls:#?}");
}
