#!/usr/bin/env python3
"""Real moto (moto[server] 5.2.5) with IAM enforcement, and an IMDSv2 stand-in, for ocipush's ECR tests.

moto 5.2.5 implements the whole ECR push API itself (BatchCheckLayerAvailability,
InitiateLayerUpload, UploadLayerPart, CompleteLayerUpload, PutImage, BatchGetImage,
GetAuthorizationToken), IAM and STS: nothing of moto is patched here. This script:

  * starts moto's own WSGI application on 127.0.0.1 (a free port chosen by the OS), behind a thin
    WSGI middleware that only observes: it records which ECR/STS action each request asked for,
    who signed it, the HTTP status moto answered and, for UploadLayerPart, the part's byte range
    and size (moto 5.2.5 checks neither the 5 MiB minimum nor partLastByte), and passes the
    request through unchanged;
  * does the reference setup unauthenticated: users `admin` (everything) and `builder` (may call
    sts:AssumeRole), the role `containerise` trusted by EC2 and by the exact ARN of `builder` with
    the external id `vendor-7f3a`, the managed policy `ECRContainerise` from --policy-file (every
    Resource rewritten to "*": moto checks actions, not resources) attached to it, and the
    repository `ec2-ecr-test`; with --role NAME=FILE, more roles like `containerise` with their
    own policies; with --repository NAME, more repositories;
  * turns IAM enforcement on for every later call (INITIAL_NO_AUTH_ACTION_COUNT = the setup's calls);
  * starts one IMDSv2 stand-in per role on its own free port (an instance has one role):
    PUT /latest/api/token (answers the token with x-aws-ec2-metadata-token-ttl-seconds, which
    aws-config requires and moto's built-in IMDS lacks), GET /latest/meta-data/placement/region
    (us-east-1: the instance runs in the registry's region), GET /latest/meta-data/iam/security-credentials/
    (the role name) and .../security-credentials/<role> (credentials from a moto AssumeRole by
    `builder` with the external id, the same set until the process ends, so tests know the secrets in use);
    GET /_test/calls lists the ECR/STS actions moto served, with who called them;
  * prints one JSON line (endpoints, account, the test users' keys, the roles) and serves until
    stdin closes (the test's Drop kills it anyway).

An Amazon ECR Public stand-in, on moto's own port (so `AWS_ENDPOINT_URL` or
`AWS_ENDPOINT_URL_ECR_PUBLIC` reach it): moto 5.2.5 has no `ecr-public` service and no
`sts:GetServiceBearerToken` (tests/it/e2e_ecr_faults.rs asserts both), so the middleware answers
requests whose `X-Amz-Target` is `SpencerFrontendService.<operation>` itself. It serves the one
operation a push needs from the API, GetAuthorizationToken
(https://docs.aws.amazon.com/AmazonECRPublic/latest/APIReference/API_GetAuthorizationToken.html),
in the AWS JSON 1.1 protocol the ECR Public API speaks: `POST /`, `Content-Type:
application/x-amz-json-1.1`, an empty JSON body, answered with
`{"authorizationData": {"authorizationToken": base64("AWS:<password>"), "expiresAt": <epoch seconds>}}`
(12 hours ahead, as ECR tokens last, or --ecr-public-expires-in SECONDS), errors as `{"__type": "<code>", "message": ...}`. It checks
the SigV4 `Authorization` header's credential scope (`<date>/us-east-1/ecr-public/aws4_request`:
the API exists only in us-east-1; a wrong scope gets AWS's InvalidSignatureException), and leaves
the allow/deny decision to moto's own IAM: moto verifies the signature with the caller's secret
and collects the caller's policies (user or assumed role), which must allow both
`ecr-public:GetAuthorizationToken` and `sts:GetServiceBearerToken` (the call makes the second for
its caller: https://docs.aws.amazon.com/AmazonECR/latest/public/public-repository-policy-examples.html).
A refusal is AWS's AccessDeniedException text, "User: <arn> is not authorized to perform: <action>
on resource: * because no identity-based policy allows the <action> action" (as quoted in
fluxcd/pkg#938). The password is `ecr-public-<account>-auth-token` (printed as
`ecr_public_password`); the tests' Bearer token gate in front of the real registry accepts exactly it.

One fault, opt-in, which moto cannot produce and ECR's API can (a lost answer): with
--fail-upload-part N, the Nth UploadLayerPart request is served by moto as usual (the part lands)
and its answer replaced by HTTP 500 `ServerException` (recorded with `"injected": true` and the
status moto gave). A client that sends that part again breaks ECR's consecutive-part rule
(https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_UploadLayerPart.html: "partFirstByte
... must follow the last byte of the previous part").
"""

import argparse
import base64
import io
import json
import logging
import sys
import threading
import time
import urllib.parse
import uuid
from datetime import timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.iam.access_control import IAMRequest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

ACCOUNT = "123456789012"
REGION = "us-east-1"
REPOSITORY = "ec2-ecr-test"
EXTERNAL_ID = "vendor-7f3a"  # the roles' trust policy requires it
ECR_PUBLIC_PASSWORD = f"ecr-public-{ACCOUNT}-auth-token"
ECR_PUBLIC_TARGET = "SpencerFrontendService."  # the X-Amz-Target prefix of the ECR Public API
ECR_PUBLIC_EXPIRES_IN = [12 * 3600]  # seconds from issue to a token's expiresAt

CALLS = []  # [{"action": ..., "caller": ..., "status": ..., "part": ..., "injected": ...}]
FAIL_UPLOAD_PART = [0]  # the UploadLayerPart (1-based) whose answer is replaced by a 500; 0: none
UPLOAD_PARTS_SEEN = [0]
KEYS = {}  # access key id -> label
LOCK = threading.Lock()

# ---------------------------------------------------------------- observing middleware


def _body(environ):
    """The request body (moto gets an identical copy), or b"" without a Content-Length (the
    request is then left untouched)."""
    if not environ.get("CONTENT_LENGTH"):
        return b""
    body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
    environ["wsgi.input"] = io.BytesIO(body)
    return body


# ---------------------------------------------------------------- ECR Public stand-in


def _request_headers(environ):
    """The request's headers as a dict with their usual spelling (`X-Amz-Date`), as moto's
    IAMRequest expects them."""
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers["-".join(w.capitalize() for w in key[5:].split("_"))] = value
    for key, name in (("CONTENT_TYPE", "Content-Type"), ("CONTENT_LENGTH", "Content-Length")):
        if environ.get(key):
            headers[name] = environ[key]
    return headers


def _json_answer(start_response, status, doc):
    body = json.dumps(doc).encode()
    start_response(status, [("Content-Type", "application/x-amz-json-1.1"),
                            ("Content-Length", str(len(body)))])
    return [body]


def ecr_public(environ, start_response):
    """One ECR Public API request (see the module documentation)."""
    operation = environ.get("HTTP_X_AMZ_TARGET", "")[len(ECR_PUBLIC_TARGET):]
    auth = environ.get("HTTP_AUTHORIZATION", "")
    scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/", 1)[1] if "Credential=" in auth else ""
    akid = auth.split("Credential=", 1)[1].split("/", 1)[0] if "Credential=" in auth else ""
    caller = KEYS.get(akid, "assumed-role" if akid.startswith("ASIA") else ("anonymous" if not akid else "unknown"))
    call = {"action": "ecr-public:" + operation, "caller": caller, "status": None, "part": None,
            "injected": False, "scope": scope}
    with LOCK:
        CALLS.append(call)

    def answer(status, doc):
        with LOCK:
            call["status"] = int(status.split(" ", 1)[0])
        return _json_answer(start_response, status, doc)

    body = _body(environ)
    if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != "/" \
            or environ.get("CONTENT_TYPE") != "application/x-amz-json-1.1":
        return answer("400 Bad Request", {"__type": "SerializationException",
                                          "message": "expected POST / with Content-Type application/x-amz-json-1.1"})
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return answer("403 Forbidden", {"__type": "MissingAuthenticationTokenException",
                                        "message": "Missing Authentication Token"})
    parts = scope.split("/")  # <date>/<region>/<service>/aws4_request
    if len(parts) != 4 or parts[1] != REGION:
        return answer("403 Forbidden", {"__type": "InvalidSignatureException",
                                        "message": "Credential should be scoped to a valid region. "})
    if parts[2] != "ecr-public" or parts[3] != "aws4_request":
        return answer("403 Forbidden", {"__type": "InvalidSignatureException",
                                        "message": "Credential should be scoped to correct service: 'ecr-public'. "})
    if operation != "GetAuthorizationToken":
        return answer("400 Bad Request", {"__type": "InvalidParameterException",
                                          "message": f"the ECR Public stand-in serves GetAuthorizationToken only, not {operation}"})
    try:
        req = IAMRequest(account_id=ACCOUNT, method="POST", path="/", data={}, body=body,
                         headers=_request_headers(environ), action=operation)
        req.check_signature()
    except Exception as e:  # moto's InvalidClientTokenId / SignatureDoesNotMatch
        return answer("403 Forbidden", {"__type": "UnrecognizedClientException",
                                        "message": f"The security token included in the request is invalid ({type(e).__name__})"})
    for action in ("ecr-public:GetAuthorizationToken", "sts:GetServiceBearerToken"):
        req._action = action  # what moto's IAM decides on (the scope named ecr-public:<operation>)
        try:
            req.check_action_permitted("*")
        except Exception:  # moto's AccessDeniedError
            return answer("400 Bad Request", {
                "__type": "AccessDeniedException",
                "message": f"User: {req._access_key.arn} is not authorized to perform: {action} on resource: * "
                           f"because no identity-based policy allows the {action} action"})
    token = base64.b64encode(f"AWS:{ECR_PUBLIC_PASSWORD}".encode()).decode()
    return answer("200 OK", {"authorizationData": {"authorizationToken": token,
                                                   "expiresAt": int(time.time()) + ECR_PUBLIC_EXPIRES_IN[0]}})


class Recorder:
    """WSGI middleware: records (action, caller, status) of each ECR/STS request, and the byte
    range of each UploadLayerPart (moto checks neither part sizes nor partLastByte); changes
    nothing."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        action = None
        part = None
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith(ECR_PUBLIC_TARGET):
            return ecr_public(environ, start_response)
        if target.startswith("AmazonEC2ContainerRegistry_"):
            action = "ecr:" + target.split(".", 1)[1]
            if action == "ecr:UploadLayerPart":
                try:
                    req = json.loads(_body(environ))
                    part = {"upload": req.get("uploadId"), "first": req.get("partFirstByte"),
                            "last": req.get("partLastByte"),
                            "bytes": len(base64.b64decode(req.get("layerPartBlob") or ""))}
                except ValueError:
                    part = {"unparsable": True}
        elif environ.get("REQUEST_METHOD") == "POST" and "/sts/" in environ.get("HTTP_AUTHORIZATION", ""):
            # STS uses the query protocol: the action is a form field.
            form = urllib.parse.parse_qs(_body(environ).decode("utf-8", "replace"))
            action = "sts:" + form.get("Action", ["?"])[0]
        if action is None:
            return self.app(environ, start_response)

        auth = environ.get("HTTP_AUTHORIZATION", "")
        caller = "anonymous"
        if "Credential=" in auth:
            akid = auth.split("Credential=", 1)[1].split("/", 1)[0]
            caller = KEYS.get(akid, "assumed-role" if akid.startswith("ASIA") else "unknown")
        call = {"action": action, "caller": caller, "status": None, "part": part, "injected": False}
        inject = False
        with LOCK:
            CALLS.append(call)
            if action == "ecr:UploadLayerPart":
                UPLOAD_PARTS_SEEN[0] += 1
                inject = UPLOAD_PARTS_SEEN[0] == FAIL_UPLOAD_PART[0]

        def observe(status, headers, exc_info=None):
            with LOCK:
                call["status"] = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        if not inject:
            return self.app(environ, observe)
        # Let moto take the part, then lose its answer.
        answered = {}

        def swallow(status, headers, exc_info=None):
            answered["status"] = status
            return lambda _data: None

        served = self.app(environ, swallow)
        try:
            for _ in served:
                pass
        finally:
            getattr(served, "close", lambda: None)()
        with LOCK:
            call["status"] = int(answered.get("status", "0 ?").split(" ", 1)[0])
            call["injected"] = True
        body = json.dumps({"__type": "ServerException", "message": "injected: the answer was lost"}).encode()
        start_response("500 Internal Server Error", [("Content-Type", "application/x-amz-json-1.1"),
                                                      ("Content-Length", str(len(body)))])
        return [body]


# ---------------------------------------------------------------- IMDSv2 stand-in


def imds_handler(moto_url, builder, role_name, role_arn):
    tokens = set()
    cached = []  # like real IMDS: the same credentials until they rotate

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
            with LOCK:
                tokens.add(token)
            self._send(200, token.encode(), [("x-aws-ec2-metadata-token-ttl-seconds", ttl),
                                             ("Content-Type", "text/plain")])

        def do_GET(self):
            if self.path == "/_test/calls":
                with LOCK:
                    body = json.dumps(CALLS).encode()
                return self._send(200, body, [("Content-Type", "application/json")])
            with LOCK:
                known = self.headers.get("x-aws-ec2-metadata-token") in tokens
            if not known:
                return self._send(401)
            if self.path == "/latest/meta-data/placement/region":
                return self._send(200, REGION.encode())  # aws-config's region chain asks
            base = "/latest/meta-data/iam/security-credentials/"
            if self.path == base:
                return self._send(200, role_name.encode())
            if self.path == base + role_name:
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
            c = sts.assume_role(RoleArn=role_arn, RoleSessionName="i-0123456789abcdef0",
                                ExternalId=EXTERNAL_ID)["Credentials"]
            exp = c["Expiration"].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            body = json.dumps({"Code": "Success", "LastUpdated": exp, "Type": "AWS-HMAC",
                               "AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"],
                               "Token": c["SessionToken"], "Expiration": exp}).encode()
            with LOCK:
                if not cached:
                    cached.append(body)
                return cached[0]

    return Handler


def start_imds(moto_url, builder, role_name, role_arn):
    imds = ThreadingHTTPServer(("127.0.0.1", 0), imds_handler(moto_url, builder, role_name, role_arn))
    threading.Thread(target=imds.serve_forever, daemon=True).start()
    return imds


# ---------------------------------------------------------------- setup


def load_policy(path):
    with open(path) as f:
        policy = json.load(f)
    for st in policy["Statement"]:
        st["Resource"] = "*"
    return policy


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy-file", required=True, help="the identity policy of the role `containerise` (JSON)")
    ap.add_argument("--role", action="append", default=[], metavar="NAME=FILE",
                    help="another role like `containerise`, with the identity policy in FILE")
    ap.add_argument("--repository", action="append", default=[], metavar="NAME",
                    help="another repository to create (besides ec2-ecr-test)")
    ap.add_argument("--fail-upload-part", type=int, default=0, metavar="N",
                    help="serve the Nth UploadLayerPart, then answer it with a 500 (a lost answer)")
    ap.add_argument("--ecr-public-expires-in", type=int, default=12 * 3600, metavar="SECONDS",
                    help="the ECR Public stand-in's tokens expire this long after issue (default 12 hours)")
    args = ap.parse_args()
    FAIL_UPLOAD_PART[0] = args.fail_upload_part
    ECR_PUBLIC_EXPIRES_IN[0] = args.ecr_public_expires_in
    roles = [("containerise", load_policy(args.policy_file))]
    for r in args.role:
        name, path = r.split("=", 1)
        roles.append((name, load_policy(path)))

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log; errors still reach stderr
    settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
    server = make_server("127.0.0.1", 0, Recorder(DomainDispatcherApplication(create_backend_app)),
                         threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    moto_url = f"http://127.0.0.1:{server.server_address[1]}"

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
    # One statement: moto 5.2.5 answers DENIED for a trust statement that does not name the
    # caller (so a second statement for another principal denies everyone else), and fails with
    # a TypeError (HTTP 500) on a statement whose Principal has no "AWS" key. It matches
    # principals literally (the exact user ARN) and checks the sts:ExternalId condition. The
    # IMDS stand-in (EC2's own AssumeRole) therefore assumes as `builder` with the external id.
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com", "AWS": users["builder"]["arn"]},
         "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}}}]}
    role_arns = {}
    for name, policy in roles:
        role_arns[name] = iam.create_role(
            RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
            Description="Allows EC2 instances to containerise Docker images")["Role"]["Arn"]
        policy_name = "ECRContainerise" if name == "containerise" else f"ECRContainerise-{name}"
        pol_arn = iam.create_policy(PolicyName=policy_name, PolicyDocument=json.dumps(policy),
                                    Description="Allows Docker images to be built and pushed to the ECR "
                                                "repository ec2-ecr-test")["Policy"]["Arn"]
        iam.attach_role_policy(RoleName=name, PolicyArn=pol_arn)
    ecr = boto3.client("ecr", **kw)
    for repo in [REPOSITORY] + args.repository:
        ecr.create_repository(repositoryName=repo)

    # Enforcement from here on: INITIAL_NO_AUTH_ACTION_COUNT = the calls made so far.
    settings.INITIAL_NO_AUTH_ACTION_COUNT = ActionAuthenticatorMixin.request_count
    with LOCK:
        CALLS.clear()

    builder = (users["builder"]["key"], users["builder"]["secret"])
    imds = {name: start_imds(moto_url, builder, name, arn) for name, arn in role_arns.items()}

    print(json.dumps({
        "moto": moto_url,
        "imds": f"http://127.0.0.1:{imds['containerise'].server_address[1]}",
        "account": ACCOUNT, "region": REGION, "repository": REPOSITORY, "role_arn": role_arns["containerise"],
        "external_id": EXTERNAL_ID,
        "roles": {name: {"arn": role_arns[name], "imds": f"http://127.0.0.1:{s.server_address[1]}"}
                  for name, s in imds.items()},
        "admin": users["admin"], "builder": users["builder"],
        "ecr_public_password": ECR_PUBLIC_PASSWORD,
    }), flush=True)
    sys.stdin.read()  # serve until the test closes stdin (or kills us)
    for s in imds.values():
        s.shutdown()
    server.shutdown()


if __name__ == "__main__":
    main()
