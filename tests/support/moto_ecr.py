#!/usr/bin/env python3
"""moto with IAM enforcement, the ECR layer-upload API, and an IMDSv2 stand-in, for ocipush's ECR tests.

moto 5.2.1 answers BatchCheckLayerAvailability, InitiateLayerUpload, UploadLayerPart and
CompleteLayerUpload with "not yet implemented"; this script adds them to moto's ECR responses
(so IAM enforcement applies to them like to every moto action), then:

  * starts moto on 127.0.0.1 (a free port chosen by the OS);
  * does the reference setup unauthenticated: users `admin` (everything) and `builder` (may call
    sts:AssumeRole), the role `containerise` trusted by EC2 and by the exact ARN of `builder`, the
    managed policy `ECRContainerise` from --policy-file (every Resource rewritten to "*": moto checks
    actions, not resources) attached to it, and the repository `ec2-ecr-test`;
  * turns IAM enforcement on for every later call (INITIAL_NO_AUTH_ACTION_COUNT = the setup's calls);
  * starts an IMDSv2 stand-in on another free port: PUT /latest/api/token (answers the token with
    x-aws-ec2-metadata-token-ttl-seconds), GET /latest/meta-data/iam/security-credentials/ (the role
    name) and .../security-credentials/containerise (credentials from a moto AssumeRole by `builder`);
    GET /_test/calls lists the ECR/STS actions moto served, with who called them;
  * prints one JSON line (endpoints, account, the test users' keys, the role ARN) and serves until
    stdin closes (the test's Drop kills it anyway).
"""

import argparse
import base64
import hashlib
import json
import sys
import threading
import uuid
from datetime import timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.ecr.exceptions import RepositoryNotFoundException
from moto.ecr.responses import ECRResponse
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

ACCOUNT = "123456789012"
REGION = "us-east-1"
REPOSITORY = "ec2-ecr-test"
MIN_PART = 5 * 1024 * 1024

# ---------------------------------------------------------------- the ECR layer API moto lacks

LAYERS = {}  # (account, region, repository) -> {digest: size}
UPLOADS = {}  # upload id -> dict(key, sha, next, parts)
CALLS = []  # [{"action": ..., "caller": ...}]
KEYS = {}  # access key id -> label
LOCK = threading.Lock()


class _Err(ServiceException):
    pass


def err(code, message):
    e = _Err(message)
    e.code = code
    return e


def _repo_key(resp):
    name = resp._get_param("repositoryName")
    registry = resp._get_param("registryId") or resp.current_account
    # raises RepositoryNotFoundException like real ECR
    resp.ecr_backend._get_repository(name, registry)
    return (registry, resp.region, name)


def batch_check_layer_availability(self):
    key = _repo_key(self)
    digests = self._get_param("layerDigests") or []
    layers, failures = [], []
    with LOCK:
        have = LAYERS.get(key, {})
        for d in digests:
            if d in have:
                layers.append({"layerDigest": d, "layerAvailability": "AVAILABLE", "layerSize": have[d],
                               "mediaType": "application/vnd.oci.image.layer.v1.tar"})
            else:
                failures.append({"layerDigest": d, "failureCode": "MissingLayerDigest",
                                 "failureReason": "Requested layer digest not found"})
    return ActionResult({"layers": layers, "failures": failures})


def initiate_layer_upload(self):
    key = _repo_key(self)
    upload_id = str(uuid.uuid4())
    with LOCK:
        UPLOADS[upload_id] = {"key": key, "sha": hashlib.sha256(), "next": 0, "parts": []}
    return ActionResult({"uploadId": upload_id, "partSize": MIN_PART})


def upload_layer_part(self):
    key = _repo_key(self)
    upload_id = self._get_param("uploadId")
    first = int(self._get_param("partFirstByte"))
    last = int(self._get_param("partLastByte"))
    blob = base64.b64decode(self._get_param("layerPartBlob") or "")
    with LOCK:
        up = UPLOADS.get(upload_id)
        if up is None or up["key"] != key:
            raise err("UploadNotFoundException", f"Upload with id '{upload_id}' does not exist")
        if first != up["next"] or last - first + 1 != len(blob):
            raise err("InvalidLayerPartException",
                      f"part {first}-{last} ({len(blob)} bytes) does not follow byte {up['next'] - 1}")
        up["sha"].update(blob)
        up["next"] = last + 1
        up["parts"].append(len(blob))
        return ActionResult({"registryId": key[0], "repositoryName": key[2], "uploadId": upload_id,
                             "lastByteReceived": last})


def complete_layer_upload(self):
    key = _repo_key(self)
    upload_id = self._get_param("uploadId")
    digests = self._get_param("layerDigests") or []
    with LOCK:
        up = UPLOADS.get(upload_id)
        if up is None or up["key"] != key:
            raise err("UploadNotFoundException", f"Upload with id '{upload_id}' does not exist")
        if not up["parts"]:
            raise err("EmptyUploadException", "The upload contains no layer parts")
        if any(n < MIN_PART for n in up["parts"][:-1]):
            raise err("LayerPartTooSmallException", "Layer part size must be at least 5 MiB")
        found = "sha256:" + up["sha"].hexdigest()
        if digests != [found]:
            raise err("InvalidLayerException", f"digest {digests} does not match the content ({found})")
        del UPLOADS[upload_id]
        have = LAYERS.setdefault(key, {})
        if found in have:
            raise err("LayerAlreadyExistsException", f"Layer {found} already exists")
        have[found] = up["next"]
    return ActionResult({"registryId": key[0], "repositoryName": key[2], "uploadId": upload_id,
                         "layerDigest": found})


for _f in (batch_check_layer_availability, initiate_layer_upload, upload_layer_part, complete_layer_upload):
    setattr(ECRResponse, _f.__name__, _f)

_call_action = ECRResponse.call_action


def _recording_call_action(self):
    auth = self.headers.get("Authorization", "") or ""
    caller = "anonymous"
    if "Credential=" in auth:
        akid = auth.split("Credential=", 1)[1].split("/", 1)[0]
        caller = KEYS.get(akid, "assumed-role" if akid.startswith("ASIA") else "unknown")
    with LOCK:
        CALLS.append({"action": "ecr:" + self._get_action(), "caller": caller})
    return _call_action(self)


ECRResponse.call_action = _recording_call_action

# ---------------------------------------------------------------- IMDSv2 stand-in


def imds_handler(moto_url, builder, role_arn):
    tokens = set()
    cached = []  # like real IMDS: the same credentials until they rotate (so tests know the secrets in use)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as aws-config's pooled client expects

        def log_message(self, *args):
            pass

        def _send(self, status, body=b"", headers=()):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self):
            ttl = self.headers.get("x-aws-ec2-metadata-token-ttl-seconds")
            if self.path != "/latest/api/token" or not ttl:
                return self._send(400)
            token = uuid.uuid4().hex
            tokens.add(token)
            self._send(200, token.encode(), [("x-aws-ec2-metadata-token-ttl-seconds", ttl),
                                             ("Content-Type", "text/plain")])

        def do_GET(self):
            if self.path == "/_test/calls":
                with LOCK:
                    body = json.dumps(CALLS).encode()
                return self._send(200, body, [("Content-Type", "application/json")])
            if self.headers.get("x-aws-ec2-metadata-token") not in tokens:
                return self._send(401)
            base = "/latest/meta-data/iam/security-credentials/"
            if self.path == base:
                return self._send(200, b"containerise")
            if self.path == base + "containerise":
                try:
                    body = self._assume_role()
                except Exception as e:  # answer, never drop the connection
                    return self._send(500, repr(e).encode())
                return self._send(200, body, [("Content-Type", "application/json")])
            return self._send(404)

        def _assume_role(self):
            with LOCK:
                if cached:
                    return cached[0]
            sts = boto3.client("sts", endpoint_url=moto_url, region_name=REGION,
                               aws_access_key_id=builder[0], aws_secret_access_key=builder[1])
            c = sts.assume_role(RoleArn=role_arn, RoleSessionName="i-0123456789abcdef0")["Credentials"]
            exp = c["Expiration"].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            body = json.dumps({"Code": "Success", "LastUpdated": exp, "Type": "AWS-HMAC",
                               "AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"],
                               "Token": c["SessionToken"], "Expiration": exp}).encode()
            with LOCK:
                cached.append(body)
            return body

    return Handler

# ---------------------------------------------------------------- setup


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy-file", required=True, help="the role's identity policy (JSON)")
    args = ap.parse_args()
    with open(args.policy_file) as f:
        policy = json.load(f)
    for st in policy["Statement"]:
        st["Resource"] = "*"

    settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    moto_url = f"http://{host}:{port}"

    kw = dict(endpoint_url=moto_url, region_name=REGION, aws_access_key_id="setup", aws_secret_access_key="setup")
    iam = boto3.client("iam", **kw)
    users = {}
    for name, pol in [("admin", {"Effect": "Allow", "Action": "*", "Resource": "*"}),
                      ("builder", {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"})]:
        arn = iam.create_user(UserName=name)["User"]["Arn"]
        iam.put_user_policy(UserName=name, PolicyName=name,
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [pol]}))
        k = iam.create_access_key(UserName=name)["AccessKey"]
        users[name] = {"arn": arn, "key": k["AccessKeyId"], "secret": k["SecretAccessKey"]}
        KEYS[k["AccessKeyId"]] = name
    # One statement: moto 5.2.1 fails (TypeError) on a statement whose Principal has no "AWS" key.
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com", "AWS": users["builder"]["arn"]},
         "Action": "sts:AssumeRole"}]}
    role_arn = iam.create_role(RoleName="containerise", AssumeRolePolicyDocument=json.dumps(trust),
                               Description="Allows EC2 instances to containerise Docker images")["Role"]["Arn"]
    pol_arn = iam.create_policy(PolicyName="ECRContainerise", PolicyDocument=json.dumps(policy),
                                Description="Allows Docker images to be built and pushed to the ECR "
                                            "repository ec2-ecr-test")["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="containerise", PolicyArn=pol_arn)
    boto3.client("ecr", **kw).create_repository(repositoryName=REPOSITORY)

    # Enforcement from here on: INITIAL_NO_AUTH_ACTION_COUNT = the calls made so far.
    settings.INITIAL_NO_AUTH_ACTION_COUNT = ActionAuthenticatorMixin.request_count
    with LOCK:
        CALLS.clear()

    imds = ThreadingHTTPServer(("127.0.0.1", 0), imds_handler(
        moto_url, (users["builder"]["key"], users["builder"]["secret"]), role_arn))
    threading.Thread(target=imds.serve_forever, daemon=True).start()

    print(json.dumps({
        "moto": moto_url,
        "imds": f"http://127.0.0.1:{imds.server_address[1]}",
        "account": ACCOUNT, "region": REGION, "repository": REPOSITORY, "role_arn": role_arn,
        "admin": users["admin"], "builder": users["builder"],
    }), flush=True)
    sys.stdin.read()  # serve until the test closes stdin (or kills us)
    imds.shutdown()
    server.stop()


if __name__ == "__main__":
    main()
