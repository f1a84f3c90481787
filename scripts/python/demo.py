#!/usr/bin/env python3
"""`make demo`: drives every RPC of cps.v1, dmp.v1 and twiin.v1 and the OAuth2 HTTP face of
twiin-authz against the suite `make run` started, with real requests, and prints what each
answered (responses as proto3 JSON, long values shortened; errors with their code, message and
google.rpc details).

The callers are those of the development PKI (.dev-pki/): the card holder's UI and the gateway
on cps-relay, the integrator's backend on dmp-gateway (under a session grant of the holder), a
Resource Broker on twiin-authz (use case 3.1, with an AORTA access token signed by the AORTA
development key) and the demo external GtK of `make run` (use case 3.2, with assertions signed
by its key, whose JWKS scripts/python/demo_gtk.py serves where ZORG-AB says).

Two RPCs answer a refusal by design, and the demo says so: Login and Logout (`make run`'s relay
holds a software key, which has no PIN: FAILED_PRECONDITION `NO_PIN`), and SignForAuthentication
asked directly with bytes that are no TLS handshake (INVALID_ARGUMENT `NOT_HANDSHAKE_DATA`: the
relay is no signing oracle; SubmitDocuments above made it sign a real handshake with the DMP).
Any other error, or one of these answering otherwise, makes the demo exit with status 1.

Ports and folders are those of `make run` and can be overridden the same way (environment):
RELAY_PORT GATEWAY_PORT TWIIN_PORT OAUTH_PORT DEMO_GTK_PORT, DEV_PKI (.dev-pki).
"""
import base64
import json
import os
import pathlib
import socket
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid

import grpc
import jwt
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from grpc_stubs import ROOT, generate  # noqa: E402

ENV = os.environ.get
RELAY = f"127.0.0.1:{ENV('RELAY_PORT', '50051')}"
GATEWAY = f"127.0.0.1:{ENV('GATEWAY_PORT', '50052')}"
TWIIN = f"127.0.0.1:{ENV('TWIIN_PORT', '50053')}"
OAUTH = f"http://127.0.0.1:{ENV('OAUTH_PORT', '8080')}"
PKI = pathlib.Path(ENV("DEV_PKI", str(ROOT / ".dev-pki")))
DEMO_GTK_KEY = PKI / "aorta" / "demo-gtk.key.pem"
DEMO_GTK_KID = "demo-gtk-1"
# The demo GtK as sim/data/zorg-ab.toml registers it, and the care provider it acts for.
DEMO_GTK_CLIENT = "https://gtk-extern.localhost"
URA_INITIATOR = "22222222"
# sim/data/as-za.toml and aorta-stelsel.toml: who issues AORTA access tokens, with which key.
AS_ZA_ISSUER = "https://as-za.aorta.localhost"
AORTA_KID = "aorta-ts-1"
AORTA_KEY = PKI / "aorta" / "aorta-token-signing.key.pem"
SAMPLE_CDA = ROOT / "services" / "dmp-gateway" / "samples" / "consultation.xml"
SAMPLE_UNIQUE_ID = "1.2.250.1.999.1.1.7898.100.1"

answered = []
unexpected = []


def shorten(value):
    if isinstance(value, dict):
        return {k: shorten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shorten(v) for v in value]
    if isinstance(value, str) and len(value) > 96:
        return f"{value[:60]}… ({len(value)} characters)"
    return value


def show(title, body):
    print(f"\n== {title}")
    print(json.dumps(shorten(body), indent=2, ensure_ascii=False))


def refusal(err):
    """What a refused call answered: code, message and google.rpc details."""
    out = {"code": err.code().name, "message": err.details()}
    status = rpc_status.from_call(err)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            out["errorInfo"] = {"reason": info.reason, "domain": info.domain, "metadata": dict(info.metadata)}
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out["fieldViolations"] = [{"field": v.field, "description": v.description} for v in bad.field_violations]
    return out


def call(title, rpc, request, metadata=(), expect_refusal=None, why=None):
    """Calls `rpc`, prints its answer; `expect_refusal` is the ErrorInfo reason it must answer."""
    try:
        response = rpc(request, metadata=metadata, timeout=60)
    except grpc.RpcError as err:
        answer = refusal(err)
        reason = answer.get("errorInfo", {}).get("reason")
        if expect_refusal and reason == expect_refusal:
            show(f"{title}  (refused as designed: {why})", answer)
            answered.append(title)
        else:
            show(f"{title}  UNEXPECTED ERROR", answer)
            unexpected.append(title)
        return None
    if expect_refusal:
        show(f"{title}  UNEXPECTED SUCCESS (expected {expect_refusal})", json_format.MessageToDict(response))
        unexpected.append(title)
        return response
    show(title, json_format.MessageToDict(response))
    answered.append(title)
    return response


def http(title, url, form=None):
    data = urllib.parse.urlencode(form).encode() if form else None
    req = urllib.request.Request(url, data=data)
    if form:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            body = json.load(r)
            show(f"{title}  HTTP {r.status}", body)
            answered.append(title)
            return body
    except urllib.error.HTTPError as e:
        show(f"{title}  UNEXPECTED HTTP {e.code}", json.loads(e.read() or b"{}"))
        unexpected.append(title)
    except OSError as e:
        show(f"{title}  UNREACHABLE", {"error": str(e)})
        unexpected.append(title)
    return None


def mtls(name):
    read = lambda f: (PKI / f).read_bytes()
    creds = grpc.ssl_channel_credentials(
        read("suite-ca.pem"), read(f"{name}-client.key.pem"), read(f"{name}-client.pem")
    )
    return creds, [
        ("grpc.ssl_target_name_override", "localhost"),
        # RetrieveDocument answers up to dmp.max_response_bytes (64 MiB).
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ]


def relay_and_gateway():
    from cps.v1 import cps_pb2 as cps
    from cps.v1 import cps_pb2_grpc
    from dmp.v1 import dmp_pb2 as dmp
    from dmp.v1 import dmp_pb2_grpc

    creds, opts = mtls("holder-ui")
    holder_channel = grpc.secure_channel(RELAY, creds, options=opts)
    holder = cps_pb2_grpc.CpsRelayStub(holder_channel)
    creds, opts = mtls("dmp-gateway")
    gateway_role_channel = grpc.secure_channel(RELAY, creds, options=opts)
    gateway_role = cps_pb2_grpc.CpsRelayStub(gateway_role_channel)

    print("\n#### cps.v1.CpsRelay (card holder's UI and gateway roles)")
    call("cps.v1.CpsRelay/GetStatus", holder.GetStatus, cps.GetStatusRequest())
    call(
        "cps.v1.CpsRelay/Login",
        holder.Login,
        cps.LoginRequest(pin="123456", grant_to=["integrator"]),
        expect_refusal="NO_PIN",
        why="make run's relay holds a software key, always unlocked",
    )
    grant = call(
        "cps.v1.CpsRelay/IssueSessionGrant",
        holder.IssueSessionGrant,
        cps.IssueSessionGrantRequest(grantee="integrator"),
    )
    if grant is None:
        return
    call(
        "cps.v1.CpsRelay/GetAuthenticationCertificate",
        gateway_role.GetAuthenticationCertificate,
        cps.GetAuthenticationCertificateRequest(),
    )
    call(
        "cps.v1.CpsRelay/SignForAuthentication",
        gateway_role.SignForAuthentication,
        cps.SignForAuthenticationRequest(
            scheme=cps.SIGNATURE_SCHEME_RSA_PKCS1_SHA256, data=b"not a TLS handshake"
        ),
        metadata=(("cps-session-grant-id", grant.grant_id),),
        expect_refusal="NOT_HANDSHAKE_DATA",
        why="the relay signs TLS handshake data for an allowed server only; SubmitDocuments below makes it sign one",
    )
    stream = gateway_role.WatchSession(cps.WatchSessionRequest(), timeout=60)
    try:
        first = next(stream)
        show("cps.v1.CpsRelay/WatchSession  (first message of the stream)", json_format.MessageToDict(first))
        answered.append("cps.v1.CpsRelay/WatchSession")
    except grpc.RpcError as err:
        show("cps.v1.CpsRelay/WatchSession  UNEXPECTED ERROR", refusal(err))
        unexpected.append("cps.v1.CpsRelay/WatchSession")
    finally:
        stream.cancel()

    print("\n#### dmp.v1.DmpGateway (the integrator's backend, under the session grant)")
    creds, opts = mtls("integrator")
    with grpc.secure_channel(GATEWAY, creds, options=opts) as channel:
        gw = dmp_pb2_grpc.DmpGatewayStub(channel)
        md = (("dmp-session-grant", grant.grant),)
        base = {
            "auth_context": {
                "relay_id": "local",
                "professional_id": "810100000001",
                "structure_id": "10B0152872",
                "activity_sector": "SA07^1.2.250.1.71.4.2.4",
                "profession": {"code": "10", "code_system": "1.2.250.1.71.1.2.7", "display_name": "Médecin"},
                "specialty": {
                    "code": "SM26",
                    "code_system": "1.2.250.1.71.4.2.5",
                    "display_name": "Qualifié en Médecine Générale (SM)",
                },
            },
            "patient": {"ins": "207058575627097", "assigning_authority": "1.2.250.1.213.1.4.10"},
        }

        def req(message, **fields):
            return json_format.ParseDict({**base, **fields}, message())

        def rpc(name, message, **fields):
            return call(f"dmp.v1.DmpGateway/{name}", getattr(gw, name), req(message, **fields), metadata=md)

        rpc("TestPatientDmp", dmp.TestPatientDmpRequest)
        rpc("SetAuthorization", dmp.SetAuthorizationRequest, action="AUTHORIZATION_ACTION_GRANT")
        rpc("ListAuthorizations", dmp.ListAuthorizationsRequest, mode="AUTHORIZATION_LIST_MODE_ALL")
        # The sample CDA under a uniqueId of its own, so that every run submits a new document.
        unique_id = f"1.2.250.1.999.1.1.7898.100.{int(time.time())}"
        cda = SAMPLE_CDA.read_bytes().replace(SAMPLE_UNIQUE_ID.encode(), unique_id.encode())
        code = lambda c, s, d: {"code": c, "code_system": s, "display_name": d}
        submitted = rpc(
            "SubmitDocuments",
            dmp.SubmitDocumentsRequest,
            submission_set={
                "title": "Lot de démonstration",
                "content_type_code": code("04", "1.2.250.1.213.2.2", "Hospitalisation de jour"),
            },
            documents=[
                {
                    "content": base64.b64encode(cda).decode(),
                    "metadata": {
                        "class_code": code("11", "1.2.250.1.213.1.1.4.1", "Compte rendu"),
                        "format_code": code(
                            "urn:ihe:iti:xds-sd:text:2008",
                            "1.3.6.1.4.1.19376.1.2.3",
                            "Document à corps non structuré en texte brut",
                        ),
                        "healthcare_facility_type_code": code("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel"),
                        "practice_setting_code": code("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire"),
                    },
                }
            ],
        )
        # The DMPs with a document added since 2020: the one just submitted to among them.
        rpc(
            "ListPatients",
            dmp.ListPatientsRequest,
            since="2020-01-01T00:00:00Z",
            date_type="PATIENT_LIST_DATE_TYPE_LAST_DOCUMENT",
        )
        found = rpc(
            "FindDocuments",
            dmp.FindDocumentsRequest,
            statuses=["DOCUMENT_STATUS_APPROVED"],
            author_ids=["810100000001"],
        )
        ours = [d for d in (found.documents if found else []) if d.unique_id == unique_id]
        if submitted is None or not ours:
            unexpected.append("dmp.v1.DmpGateway/FindDocuments (the submitted document)")
            return
        entry = ours[0]
        rpc("GetDocuments", dmp.GetDocumentsRequest, unique_ids=[unique_id])
        rpc("GetAssociations", dmp.GetAssociationsRequest, entry_uuids=[entry.entry_uuid])
        retrieved = rpc(
            "RetrieveDocument",
            dmp.RetrieveDocumentRequest,
            repository_unique_id=entry.repository_unique_id,
            document_unique_id=unique_id,
        )
        if retrieved is not None and retrieved.content != cda:
            unexpected.append("dmp.v1.DmpGateway/RetrieveDocument (not the submitted bytes)")
        rpc(
            "SetDocumentVisibility",
            dmp.SetDocumentVisibilityRequest,
            entry_uuid=entry.entry_uuid,
            document_unique_id=unique_id,
            visibility=["VISIBILITY_MASKED_TO_PROFESSIONALS"],
        )
        rpc(
            "UpdateDocumentStatus",
            dmp.UpdateDocumentStatusRequest,
            entry_uuid=entry.entry_uuid,
            document_unique_id=unique_id,
            current_status="DOCUMENT_STATUS_APPROVED",
            new_status="DOCUMENT_STATUS_ARCHIVED",
        )

    print("\n#### cps.v1.CpsRelay (the holder ends what it granted)")
    spare = call(
        "cps.v1.CpsRelay/IssueSessionGrant  (a second grant, to revoke)",
        holder.IssueSessionGrant,
        cps.IssueSessionGrantRequest(grantee="integrator", lifetime_seconds=60),
    )
    if spare is not None:
        call(
            "cps.v1.CpsRelay/RevokeSessionGrants",
            holder.RevokeSessionGrants,
            cps.RevokeSessionGrantsRequest(grant_ids=[spare.grant_id]),
        )
    call(
        "cps.v1.CpsRelay/Logout",
        holder.Logout,
        cps.LogoutRequest(),
        expect_refusal="NO_PIN",
        why="a software key has no session to close; with a card, Logout ends the card session and its grants",
    )
    holder_channel.close()
    gateway_role_channel.close()


def twiin():
    from twiin.v1 import twiin_pb2 as tw
    from twiin.v1 import twiin_pb2_grpc

    print("\n#### twiin-authz: OAuth2 HTTP face")
    metadata = http("GET /.well-known/oauth-authorization-server", f"{OAUTH}/.well-known/oauth-authorization-server")
    if metadata is None:
        return
    http("GET jwks_uri (twiin-authz's signing keys)", metadata["jwks_uri"])

    def gtk_request(scope):
        """A token request of the demo external GtK: client and grant assertions (ES512)."""
        key = DEMO_GTK_KEY.read_bytes()
        now = int(time.time())
        headers = {"kid": DEMO_GTK_KID, "typ": "JWT"}
        client_assertion = jwt.encode(
            {"iss": DEMO_GTK_CLIENT, "sub": DEMO_GTK_CLIENT, "aud": metadata["token_endpoint"],
             "jti": str(uuid.uuid4()), "iat": now, "exp": now + 120},
            key, algorithm="ES512", headers=headers)
        assertion = jwt.encode(
            {"iss": DEMO_GTK_CLIENT, "sub": URA_INITIATOR, "aud": metadata["issuer"],
             "jti": str(uuid.uuid4()), "iat": now, "exp": now + 120,
             "user_id": "UZI-900001", "user_role": "01.015"},
            key, algorithm="ES512", headers=headers)
        return {
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": assertion,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": client_assertion,
            "scope": scope,
        }

    http("POST token_endpoint  (use case 3.2, the demo external GtK)", metadata["token_endpoint"], gtk_request("system/Task.c"))

    print("\n#### twiin.v1.TwiinAuthz")
    with grpc.insecure_channel(TWIIN) as channel:
        stub = twiin_pb2_grpc.TwiinAuthzStub(channel)
        # An AORTA access token as the Autorisatie Server ZA issues it to our Resource Broker.
        now = int(time.time())
        source_token = jwt.encode(
            {"iss": AS_ZA_ISSUER, "aud": "aorta", "sub": URA_INITIATOR, "iat": now, "exp": now + 900,
             "jti": str(uuid.uuid4()), "scope": "create:Task:1.0:notification~~normaal",
             "_vrb": {"_vrb_ura": URA_INITIATOR, "_vrb_user_id": "UZI-900001", "_vrb_user_role": "01.015"}},
            AORTA_KEY.read_bytes(), algorithm="RS256", headers={"kid": AORTA_KID, "typ": "JWT"})
        call(
            "twiin.v1.TwiinAuthz/IssueTwiinAssertions",
            stub.IssueTwiinAssertions,
            tw.IssueTwiinAssertionsRequest(source_token=source_token, audience=DEMO_GTK_CLIENT),
        )
        call(
            "twiin.v1.TwiinAuthz/IssueAortaAccessToken",
            stub.IssueAortaAccessToken,
            tw.TokenRequest(**gtk_request("system/Task.c")),
        )


def wait_until_ready(seconds):
    """Waits (at most `seconds`) until the three gRPC ports, the OAuth2 endpoint and the demo
    GtK's JWKS answer: `--wait` right after `make run` started (scripts/demo-check.sh)."""
    deadline = time.monotonic() + seconds
    gtk = f"http://127.0.0.1:{ENV('DEMO_GTK_PORT', '8094')}/jwks"
    pending = [RELAY, GATEWAY, TWIIN, f"{OAUTH}/.well-known/oauth-authorization-server", gtk]
    while pending and time.monotonic() < deadline:
        target = pending[0]
        try:
            if target.startswith("http"):
                urllib.request.urlopen(target, timeout=2).close()
            else:
                host, _, port = target.rpartition(":")
                socket.create_connection((host, int(port)), timeout=2).close()
            pending.pop(0)
        except OSError:
            time.sleep(0.5)
    if pending:
        sys.exit(f"not ready after {seconds} s: {', '.join(pending)}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--wait":
        wait_until_ready(float(sys.argv[2]))
    elif len(sys.argv) != 1:
        sys.exit("usage: demo.py [--wait SECONDS]")
    with tempfile.TemporaryDirectory() as out:
        generate(out)
        relay_and_gateway()
        twiin()
    print(f"\n{len(answered)} calls answered as expected", end="")
    if unexpected:
        print(f"; {len(unexpected)} did not: {', '.join(unexpected)}")
        print("(is the suite running? `make run` in another terminal; logs in .local/logs/)")
        sys.exit(1)
    print(".")


if __name__ == "__main__":
    main()
