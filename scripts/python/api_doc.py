#!/usr/bin/env python3
"""Writes docs/api.md, the API reference of cps.v1, dmp.v1 and twiin.v1, from the protos.

The protos are compiled with grpcio-tools' bundled protoc (no system protoc) into a descriptor
set with source info, so every comment of the protos lands in the reference; each RPC gets a
grpcurl recipe whose JSON body names every field of its request (example values where the
suite's development set-up has one, typed placeholders elsewhere).

    .local/venv/bin/python3 scripts/python/api_doc.py            # (re)writes docs/api.md
    .local/venv/bin/python3 scripts/python/api_doc.py --check    # fails when docs/api.md is stale

`make api-doc` and `make api-check` run it in the project's virtual environment.
"""

import difflib
import importlib.resources
import json
import pathlib
import sys
import tempfile

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTOS = ["cps/v1/cps.proto", "dmp/v1/dmp.proto", "twiin/v1/twiin.proto"]
OUT = ROOT / "docs" / "api.md"

# How each service is reached with `make run` (README "Calling the services with grpcurl").
DOMAINS = {
    "cps.v1.CpsRelay": "cps-relay",
    "dmp.v1.DmpGateway": "dmp-gateway",
    "twiin.v1.TwiinAuthz": "twiin-authz",
}
ADDRESS = {
    "cps.v1.CpsRelay": "127.0.0.1:50051",
    "dmp.v1.DmpGateway": "127.0.0.1:50052",
    "twiin.v1.TwiinAuthz": "127.0.0.1:50053",
}
# The caller's TLS flags (shell variables defined at the top of the reference), per RPC where
# the service has roles.
GATEWAY_ROLE = {
    "GetAuthenticationCertificate",
    "SignForAuthentication",
    "GetSignatureCertificate",
    "SignXadesSignedInfo",
    "WatchSession",
}


def tls_flags(service, method):
    if service == "cps.v1.CpsRelay":
        return "$RELAY_GATEWAY_TLS" if method in GATEWAY_ROLE else "$HOLDER_TLS"
    if service == "dmp.v1.DmpGateway":
        return '$GATEWAY_TLS -H "dmp-session-grant: $GRANT"'
    return "-plaintext"


EXTRA_HEADERS = {
    ("cps.v1.CpsRelay", "SignForAuthentication"): '-H "cps-session-grant-id: $GRANT_ID"',
    ("cps.v1.CpsRelay", "SignXadesSignedInfo"): '-H "cps-session-grant-id: $GRANT_ID"',
}
EXTRA_FLAGS = {
    # Documents of up to dmp.max_response_bytes (64 MiB): grpcurl accepts 4 MiB by default.
    ("dmp.v1.DmpGateway", "RetrieveDocument"): "-max-msg-sz 67108864",
    ("dmp.v1.DmpGateway", "SubmitDocuments"): "-max-msg-sz 67108864",
}

# Example values of fields whose meaning the development set-up fixes (make run's relay `local`,
# the development card of professional 810100000001, the official examples' test patient).
EXAMPLES = {
    "relay_id": "local",
    "professional_id": "810100000001",
    "structure_id": "10B0152872",
    "activity_sector": "SA07^1.2.250.1.71.4.2.4",
    "ins": "207058575627097",
    "assigning_authority": "1.2.250.1.213.1.4.10",
    "grantee": "integrator",
    "grant_to": "integrator",
    "audience": "https://as.example-gtk.nl/oauth2/token",
    "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
}

# The google.rpc ErrorInfo reasons of each service (crates/service-kit/src/error.rs; each
# service's `ServiceError::reason`): reason, gRPC code, RPCs, when. tests/tests/error_details.rs
# checks that every reason the services' code can answer is listed here.
ALL = "all"
ERRORS = {
    "cps.v1.CpsRelay": [
        ("NO_TOKEN", "FAILED_PRECONDITION", ALL, "no card in the reader, or the module or token is unusable"),
        ("TOKEN_NOT_FOUND", "NOT_FOUND", ALL, "the configured token is not present"),
        ("OBJECT_NOT_FOUND", "NOT_FOUND", ALL, "the key or certificate is not on the token"),
        ("NOT_LOGGED_IN", "FAILED_PRECONDITION", "SignForAuthentication, IssueSessionGrant", "the card holder has not logged in"),
        ("WRONG_PIN", "UNAUTHENTICATED", "Login", "wrong PIN; metadata `triesLeft` when the card tells"),
        ("PIN_BLOCKED", "PERMISSION_DENIED", "Login, SignForAuthentication", "the PIN is blocked"),
        ("PIN_FORMAT", "INVALID_ARGUMENT", "Login", "a PIN that cannot be a CPS PIN; field `pin`"),
        ("NO_PIN", "FAILED_PRECONDITION", "Login, Logout", "the backend (software key) has no PIN"),
        ("UNSUPPORTED_SCHEME", "INVALID_ARGUMENT", "SignForAuthentication", "a scheme the key cannot sign with; field `scheme`"),
        ("NOT_HANDSHAKE_DATA", "INVALID_ARGUMENT", "SignForAuthentication", "the data is not TLS handshake signing input; field `data`"),
        ("SERVER_NOT_ALLOWED", "INVALID_ARGUMENT", "SignForAuthentication", "the handshake is not with an allowed server (or TLS 1.3 while refused); field `data`"),
        ("NOT_XADES_SIGNED_INFO", "INVALID_ARGUMENT", "SignXadesSignedInfo", "the data is not the canonical XAdES SignedInfo of a DMP submission; field `signed_info`"),
        ("NO_SIGNATURE_KEY", "FAILED_PRECONDITION", "GetSignatureCertificate, SignXadesSignedInfo", "the relay has no signature key configured"),
        ("WRONG_KEY_PURPOSE", "FAILED_PRECONDITION", "SignForAuthentication, SignXadesSignedInfo", "the configured key's certificate is not for this purpose (authentication vs nonRepudiation)"),
        ("NO_SESSION_GRANT", "FAILED_PRECONDITION", "SignForAuthentication, SignXadesSignedInfo", "no unexpired, unrevoked grant of the current card session"),
        ("FINAL_TRY_UNCONFIRMED", "FAILED_PRECONDITION", "Login", "one PIN try left and `confirm_final_try` not set"),
        ("PIN_THROTTLED", "RESOURCE_EXHAUSTED", "Login", "too soon after wrong PINs; RetryInfo and metadata `retry-after` say how long to wait"),
        ("UNKNOWN_GRANTEE", "INVALID_ARGUMENT", "IssueSessionGrant, Login", "the grantee is not in `access.grant_callers`; metadata `grantee`"),
        ("GRANT_LIMIT", "RESOURCE_EXHAUSTED", "IssueSessionGrant, Login", "too many live session grants"),
        ("CARD_BUSY", "DEADLINE_EXCEEDED", ALL, "the card stayed busy for `access.card_wait`"),
        ("RATE_LIMITED", "RESOURCE_EXHAUSTED", "SignForAuthentication", "too many signatures from this caller"),
        ("CALLER_NOT_ALLOWED", "PERMISSION_DENIED", ALL, "the caller's role may not call this RPC, or act for this professional"),
        ("DEVICE_ERROR", "UNAVAILABLE", ALL, "the card or the PKCS#11 module failed"),
        ("AUDIT_UNAVAILABLE", "UNAVAILABLE", ALL, "the audit log cannot record the call; nothing was done"),
        ("INTERNAL", "INTERNAL", ALL, "a bug"),
    ],
    "dmp.v1.DmpGateway": [
        ("INVALID_FIELD", "INVALID_ARGUMENT", ALL, "a request field is invalid; BadRequest names it (`documents[0].metadata.class_code`)"),
        ("MALFORMED_CDA", "INVALID_ARGUMENT", "SubmitDocuments", "a document's CDA cannot be read; field `documents[i].content`"),
        ("CDA_CONTRADICTION", "INVALID_ARGUMENT", "SubmitDocuments", "given metadata contradicts the CDA header; field `documents[i].metadata.<field>`"),
        ("UNKNOWN_RELAY", "INVALID_ARGUMENT", ALL, "`auth_context.relay_id` is not in the gateway's `relays`; metadata `relayId`"),
        ("NO_SESSION_GRANT", "PERMISSION_DENIED", ALL, "no `dmp-session-grant` metadata"),
        ("SESSION_GRANT_REFUSED", "PERMISSION_DENIED", ALL, "the grant does not authorise this call; metadata `claim`"),
        ("CARD_SESSION_ENDED", "FAILED_PRECONDITION", ALL, "the professional's card session ended: ask for a new grant"),
        ("CARD_SESSION_UNKNOWN", "UNAVAILABLE", ALL, "the relay's session state cannot be known now; metadata `relayId`"),
        ("WRONG_PROFESSIONAL", "PERMISSION_DENIED", ALL, "the card is another professional's; metadata `relayId`"),
        ("RELAY_UNREACHABLE", "UNAVAILABLE", ALL, "the relay cannot be reached; metadata `relayId`"),
        ("RELAY_REFUSED", "the relay's", ALL, "the relay refused (its code passed on); metadata `relayCode`"),
        ("SIGNATURE_DEADLINE", "DEADLINE_EXCEEDED", ALL, "the relay did not sign the TLS handshake in time"),
        ("DMP_CERTIFICATE_INVALID", "UNAVAILABLE", ALL, "the DMP's server certificate was rejected"),
        ("CARD_REFUSED_BY_DMP", "PERMISSION_DENIED", ALL, "the DMP refused the card certificate (TLS alert)"),
        ("DMP_TLS_FAILURE", "UNAVAILABLE", ALL, "another TLS failure with the DMP"),
        ("DMP_UNREACHABLE", "UNAVAILABLE", ALL, "no TCP connection to the DMP"),
        ("DMP_CONNECTION_LOST", "UNAVAILABLE", ALL, "the connection broke after the request may have been sent"),
        ("DMP_TIMEOUT", "DEADLINE_EXCEEDED", ALL, "the DMP did not answer in time"),
        ("DMP_RESPONSE_TOO_LARGE", "RESOURCE_EXHAUSTED", ALL, "the DMP's answer is larger than `dmp.max_response_bytes`"),
        ("DMP_REQUEST_INVALID", "INVALID_ARGUMENT", ALL, "the HTTP request to the DMP could not be made"),
        ("DMP_SOAP_FAULT", "FAILED_PRECONDITION (Sender), UNAVAILABLE (Receiver)", ALL, "the DMP answered a SOAP fault; metadata `soapCode`, `soapSubcode`"),
        ("DMP_HTTP_ERROR", "by HTTP status", ALL, "the DMP answered an HTTP error without a SOAP fault; metadata `httpStatus`"),
        ("DMP_MALFORMED_RESPONSE", "INTERNAL", ALL, "the DMP's answer is not the expected message"),
        ("SIGNATURE_FAILED", "FAILED_PRECONDITION", "SubmitDocuments", "the submission's XAdES signature could not be made"),
        ("CALLER_NOT_CONFIGURED", "PERMISSION_DENIED", ALL, "outside development, the caller has no `callers.<identity>` entry (structure and sector of the VIHF)"),
        ("SUBMISSION_INTERRUPTED", "UNAVAILABLE", "SubmitDocuments", "the connection failed after the submission may have reached the DMP (resubmitting is safe); metadata `documentUniqueIds`"),
        ("AUDIT_UNAVAILABLE", "UNAVAILABLE", ALL, "the audit log cannot record the call; nothing was sent"),
    ],
    "twiin.v1.TwiinAuthz": [
        ("INVALID_REQUEST_FIELD", "INVALID_ARGUMENT", ALL, "step 2: a request field is missing or invalid; BadRequest names it (`grant_type`, `audience`, ...)"),
        ("INVALID_REQUEST", "INVALID_ARGUMENT", ALL, "the request is invalid otherwise (`aorta-id`, client_id, scope translation, BSN)"),
        ("MISSING_AUTHORIZATION_BASE", "INVALID_ARGUMENT", "IssueTwiinAssertions", "3.1 step 5: the AORTA access_token lacks the required authorization_base"),
        ("INVALID_SOURCE_TOKEN", "UNAUTHENTICATED", "IssueTwiinAssertions", "3.1 step 3: the source token is not valid"),
        ("INVALID_CLIENT", "UNAUTHENTICATED", "IssueAortaAccessToken", "3.2 step 3: the client assertion is not valid"),
        ("INVALID_GRANT", "INVALID_ARGUMENT", "IssueAortaAccessToken", "3.2 step 4: the authorization grant assertion is not valid"),
        ("INITIATOR_NOT_QUALIFIED", "PERMISSION_DENIED", "IssueAortaAccessToken", "3.2 step 6: the initiating application lacks the capabilities"),
        ("DESTINATION_REFUSES_TWIIN", "PERMISSION_DENIED", "IssueAortaAccessToken", "3.2 step 7: the AORTA participant will not receive the interaction via Twiin"),
        ("ACCESS_DENIED", "PERMISSION_DENIED", "IssueAortaAccessToken", "access denied otherwise"),
        ("AS_ZA_ERROR", "by HTTP status", "IssueAortaAccessToken", "3.2 step 11: the Autorisatie Server ZA's error, passed on; metadata `httpStatus`"),
        ("DEPENDENCY_UNAVAILABLE", "UNAVAILABLE", ALL, "Stelseltoken, ZORG-AB or AS ZA cannot be used; nothing was issued"),
        ("AUDIT_UNAVAILABLE", "UNAVAILABLE", ALL, "the audit log cannot record the call (its store is down); nothing was issued. RetryInfo, metadata `grpc-retry-pushback-ms` and, over HTTP, `Retry-After` say when to retry"),
        ("DEPENDENCY_TIMEOUT", "DEADLINE_EXCEEDED", ALL, "a dependency did not answer in time"),
        ("INTERNAL", "INTERNAL", ALL, "a fault of this service (a key that cannot sign)"),
    ],
}
ERRORS_INTRO = {
    "twiin.v1.TwiinAuthz": "Every ErrorInfo of twiin-authz also carries metadata `oauthError`, the OAuth error the HTTP face answers.",
}


TYPE_NAMES = {
    descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE: "double",
    descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT: "float",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT64: "int64",
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT64: "uint64",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT32: "int32",
    descriptor_pb2.FieldDescriptorProto.TYPE_FIXED64: "fixed64",
    descriptor_pb2.FieldDescriptorProto.TYPE_FIXED32: "fixed32",
    descriptor_pb2.FieldDescriptorProto.TYPE_BOOL: "bool",
    descriptor_pb2.FieldDescriptorProto.TYPE_STRING: "string",
    descriptor_pb2.FieldDescriptorProto.TYPE_BYTES: "bytes",
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT32: "uint32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SFIXED32: "sfixed32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SFIXED64: "sfixed64",
    descriptor_pb2.FieldDescriptorProto.TYPE_SINT32: "sint32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SINT64: "sint64",
}
F = descriptor_pb2.FieldDescriptorProto


def descriptor_set():
    """The protos' FileDescriptorSet, with comments, compiled by grpcio-tools' protoc."""
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "api.binpb"
        args = [
            "protoc",
            f"-I{ROOT / 'proto'}",
            f"-I{well_known}",
            "--include_source_info",
            "--include_imports",
            f"--descriptor_set_out={out}",
            *PROTOS,
        ]
        if protoc.main(args) != 0:
            sys.exit("protoc failed on the protos")
        fds = descriptor_pb2.FileDescriptorSet()
        fds.ParseFromString(out.read_bytes())
        return fds


def comments(file):
    """Leading comments by source path, without buf's lint directives."""
    found = {}
    for loc in file.source_code_info.location:
        text = loc.leading_comments
        if not text:
            continue
        lines = [
            line.strip()
            for line in text.splitlines()
            if not line.strip().startswith("buf:lint:ignore")
        ]
        found[tuple(loc.path)] = " ".join(line for line in lines if line)
    return found


def cell(text):
    return text.replace("|", "\\|")


class Api:
    def __init__(self, fds):
        ours = {p for p in PROTOS}
        self.files = [f for f in fds.file if f.name in ours]
        self.messages = {}
        self.enums = {}
        for f in fds.file:
            for m in f.message_type:
                self.messages[f".{f.package}.{m.name}"] = m
            for e in f.enum_type:
                self.enums[f".{f.package}.{e.name}"] = e

    def type_of(self, field):
        if field.type in (F.TYPE_MESSAGE, F.TYPE_ENUM):
            name = field.type_name.lstrip(".")
            local = "#" + name.replace(".", "").lower()
            if name.startswith("google."):
                return f"`{name}`"
            return f"[`{name}`]({local})"
        return f"`{TYPE_NAMES[field.type]}`"

    def example(self, type_name, seen=()):
        """A JSON body naming every field of the message, recursively."""
        msg = self.messages[type_name]
        body = {}
        for field in msg.field:
            value = self.example_value(field, seen + (type_name,))
            if value is None:
                continue
            body[field.json_name] = (
                [value] if field.label == F.LABEL_REPEATED else value
            )
        return body

    def example_value(self, field, seen):
        if field.name in EXAMPLES:
            return EXAMPLES[field.name]
        t = field.type
        if t == F.TYPE_MESSAGE:
            if field.type_name == ".google.protobuf.Timestamp":
                return "2026-01-01T00:00:00Z"
            if field.type_name in seen:
                return None
            return self.example(field.type_name, seen)
        if t == F.TYPE_ENUM:
            values = self.enums[field.type_name].value
            return (values[1] if len(values) > 1 else values[0]).name
        if t == F.TYPE_BOOL:
            return False
        if t == F.TYPE_STRING:
            return "…"
        if t == F.TYPE_BYTES:
            # Valid base64 (of the text "<base64>"), so that the recipe runs as written.
            return "PGJhc2U2ND4="
        if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            return 0.0
        if t in (F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_SINT64, F.TYPE_FIXED64, F.TYPE_SFIXED64):
            return "0"
        return 0

    def errors(self, service):
        out = [
            "#### Errors\n",
            "Each error's `google.rpc.ErrorInfo` (domain "
            f"`{DOMAINS[service]}`) has one of these reasons (see \"Errors\" above); the RPCs "
            "below name the ones specific to them.",
        ]
        if service in ERRORS_INTRO:
            out.append(ERRORS_INTRO[service])
        out.append("")
        out.append("| reason | gRPC code | RPCs | when |")
        out.append("|---|---|---|---|")
        for reason, code, rpcs, when in ERRORS[service]:
            out.append(f"| `{reason}` | {code} | {rpcs} | {cell(when)} |")
        out.append("")
        return out

    def render(self):
        out = [HEADER]
        for f in self.files:
            docs = comments(f)
            for si, svc in enumerate(f.service):
                full = f"{f.package}.{svc.name}"
                out.append(f"## `{full}`\n")
                out.append(f"Proto: `proto/{f.name}`. Address with `make run`: `{ADDRESS[full]}`.\n")
                if docs.get((6, si)):
                    out.append(docs[(6, si)] + "\n")
                out.extend(self.errors(full))
                for mi, m in enumerate(svc.method):
                    out.append(f"### `{m.name}`\n")
                    stream = "stream " if m.server_streaming else ""
                    req, resp = m.input_type.lstrip("."), m.output_type.lstrip(".")
                    out.append(
                        f"`rpc {m.name}({req}) returns ({stream}{resp})` — request "
                        f"[`{req}`](#{req.replace('.', '').lower()}), response "
                        f"[`{resp}`](#{resp.replace('.', '').lower()}).\n"
                    )
                    if docs.get((6, si, 2, mi)):
                        out.append(docs[(6, si, 2, mi)] + "\n")
                    specific = [r for r, _, rpcs, _ in ERRORS[full] if m.name in rpcs.split(", ")]
                    if specific:
                        out.append(
                            "Errors besides the service's common ones: "
                            + ", ".join(f"`{r}`" for r in specific)
                            + ".\n"
                        )
                    flags = " ".join(
                        x
                        for x in (
                            tls_flags(full, m.name),
                            EXTRA_HEADERS.get((full, m.name)),
                            EXTRA_FLAGS.get((full, m.name)),
                        )
                        if x
                    )
                    body = json.dumps(self.example(m.input_type), ensure_ascii=False)
                    out.append("```sh")
                    out.append(f"grpcurl {flags} -d '{body}' \\")
                    out.append(f"  {ADDRESS[full]} {full}/{m.name}")
                    out.append("```\n")
            out.append(f"## Messages of `{f.package}`\n")
            for i, msg in enumerate(f.message_type):
                out.append(f"### `{f.package}.{msg.name}`\n")
                if docs.get((4, i)):
                    out.append(docs[(4, i)] + "\n")
                if not msg.field:
                    out.append("No fields.\n")
                    continue
                out.append("| field | number | type | meaning |")
                out.append("|---|---|---|---|")
                for j, field in enumerate(msg.field):
                    label = ""
                    if field.label == F.LABEL_REPEATED:
                        label = "repeated "
                    elif field.proto3_optional:
                        label = "optional "
                    out.append(
                        f"| `{field.name}` (`{field.json_name}`) | {field.number} | "
                        f"{label}{self.type_of(field)} | {cell(docs.get((4, i, 2, j), ''))} |"
                    )
                out.append("")
            for i, enum in enumerate(f.enum_type):
                out.append(f"### `{f.package}.{enum.name}`\n")
                if docs.get((5, i)):
                    out.append(docs[(5, i)] + "\n")
                out.append("| value | number | meaning |")
                out.append("|---|---|---|")
                for j, value in enumerate(enum.value):
                    out.append(
                        f"| `{value.name}` | {value.number} | {cell(docs.get((5, i, 2, j), ''))} |"
                    )
                out.append("")
        return "\n".join(out).rstrip("\n") + "\n"


HEADER = """\
# API reference: cps.v1, dmp.v1, twiin.v1

<!-- Generated by scripts/python/api_doc.py from proto/ (`make api-doc`); do not edit by hand:
     `make api-check` (CI) fails when this file and the protos disagree. -->

Every service offers server reflection (`grpcurl ... list`, `describe`) and
`grpc.health.v1.Health`. The recipes below call the suite `make run` starts, with grpcurl
1.8.6 (`export PATH="$PWD/.local/venv/bin:$PATH"`, README "Calling the services with grpcurl")
and these shell variables:

```sh
GATEWAY_TLS="-cacert .dev-pki/suite-ca.pem -cert .dev-pki/integrator-client.pem -key .dev-pki/integrator-client.key.pem"
HOLDER_TLS="-cacert .dev-pki/suite-ca.pem -cert .dev-pki/holder-ui-client.pem -key .dev-pki/holder-ui-client.key.pem"
RELAY_GATEWAY_TLS="-cacert .dev-pki/suite-ca.pem -cert .dev-pki/dmp-gateway-client.pem -key .dev-pki/dmp-gateway-client.key.pem"
# The session grant the card holder's UI issues to the integrator (dmp.v1 calls need it):
GRANT_RESPONSE=$(grpcurl $HOLDER_TLS -d '{"grantee": "integrator"}' 127.0.0.1:50051 cps.v1.CpsRelay/IssueSessionGrant)
GRANT=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["grant"])' <<<"$GRANT_RESPONSE")
GRANT_ID=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["grantId"])' <<<"$GRANT_RESPONSE")
```

Each recipe's JSON body names every field of the request (proto3 JSON names): values of the
development set-up where there is one (relay `local`, professional `810100000001`, the test
patient `207058575627097`), typed placeholders (`"…"`, `0`, `"PGJhc2U2ND4="`: base64 of `<base64>`) elsewhere; leave out
what you do not need. `bytes` travel as base64 in JSON.

**Errors.** Besides its code and a message for people, every error status carries
`google.rpc` details in the standard `grpc-status-details-bin` trailer (a `google.rpc.Status`
that every gRPC library decodes: `tonic_types::StatusExt` in Rust,
`grpc_status.rpc_status.from_call` in Python; grpcurl prints them as JSON under `Details:`, the
services' reflection serving the `google.rpc` types):

- `google.rpc.ErrorInfo`, always: `reason`, a stable code of the outcome (the tables
  "Errors" of each service below; a program branches on it, never on the message, which may be
  reworded), `domain`, the service that answered (`cps-relay`, `dmp-gateway`, `twiin-authz`),
  and `metadata` with values of the outcome (`relayId`, `triesLeft`, `oauthError`, ...);
- `google.rpc.BadRequest` on `INVALID_ARGUMENT` when the invalid field is known: one field
  violation per field, its path in the request in proto field names
  (`documents[0].metadata.class_code`) and what is wrong with it;
- `google.rpc.RetryInfo` when the service knows how long to wait (a throttled Login).

A released reason keeps its meaning and is never reused.

**Message sizes.** grpcurl (like most gRPC clients) accepts answers of at most 4 MiB by
default. `RetrieveDocument` answers with the whole document, up to the gateway's
`dmp.max_response_bytes` (64 MiB by default): call it with `-max-msg-sz 67108864` (or the
size you configured). `SubmitDocuments` accepts requests up to four times
`xds.max_document_bytes` plus 4 MiB (84 MiB with the default 20 MiB documents).
"""


def main():
    text = Api(descriptor_set()).render()
    if "--check" in sys.argv[1:]:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                text.splitlines(keepends=True),
                "docs/api.md (committed)",
                "docs/api.md (from proto/)",
            )
            sys.stdout.writelines(diff)
            sys.exit("docs/api.md is stale: run `make api-doc` and commit it")
        print("docs/api.md matches the protos")
        return
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
