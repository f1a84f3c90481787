#!/usr/bin/env python3
"""A client of the suite in another language than Rust: Python grpcio, with stubs generated from
proto/ at run time (scripts/python/grpc_stubs.py: grpcio-tools' bundled protoc, into a temporary
folder), nothing of the workspace's Rust code. Driven by tests/tests/python_client.rs (dmp-gateway through cps-relay) and
services/twiin-authz/tests/python_grpc_client.rs (twiin-authz).

    grpc_client.py dmp   < args.json   # session grant, SubmitDocuments, FindDocuments, RetrieveDocument
    grpc_client.py twiin < args.json   # IssueTwiinAssertions, IssueAortaAccessToken

Arguments come as JSON on stdin; prints one JSON object with what the services answered on
stdout, and exits non-zero (with the reason on stderr) when a call fails unexpectedly. Each
command also makes one invalid call and decodes the google.rpc details of the refusal with
grpcio-status (`grpc_status.rpc_status.from_call`), as any Python caller would.
"""
import json
import pathlib
import sys
import tempfile

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "python"))
from grpc_stubs import generate  # noqa: E402  (the shared generator of scripts/python)


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def details(err):
    """The code, message and google.rpc details (ErrorInfo, BadRequest) of a refused call."""
    status = rpc_status.from_call(err)
    if status is None:
        fail(f"no google.rpc.Status in the refusal {err.code()}: {err.details()}")
    out = {"code": err.code().name, "message": status.message, "violations": []}
    for any_detail in status.details:
        if any_detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            any_detail.Unpack(info)
            out.update(reason=info.reason, domain=info.domain, metadata=dict(info.metadata))
        elif any_detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            any_detail.Unpack(bad)
            out["violations"] += [{"field": v.field, "description": v.description} for v in bad.field_violations]
    return out


def mtls(a, cert, key):
    read = lambda p: pathlib.Path(p).read_bytes()
    creds = grpc.ssl_channel_credentials(read(a["ca"]), read(key), read(cert))
    # The suite's development certificates name localhost.
    return creds, (("grpc.ssl_target_name_override", "localhost"),)


def dmp(a):
    from cps.v1 import cps_pb2, cps_pb2_grpc
    from dmp.v1 import dmp_pb2, dmp_pb2_grpc

    # The card holder's UI grants the integrator a session on the relay.
    creds, opts = mtls(a, a["holder_cert"], a["holder_key"])
    with grpc.secure_channel(a["relay"], creds, options=opts) as ch:
        relay = cps_pb2_grpc.CpsRelayStub(ch)
        grant = relay.IssueSessionGrant(cps_pb2.IssueSessionGrantRequest(grantee="integrator"), timeout=30)

    creds, opts = mtls(a, a["integrator_cert"], a["integrator_key"])
    # RetrieveDocument answers up to dmp.max_response_bytes (64 MiB): grpcio accepts 4 MiB by default.
    opts += (("grpc.max_receive_message_length", 64 * 1024 * 1024),)
    with grpc.secure_channel(a["gateway"], creds, options=opts) as ch:
        gateway = dmp_pb2_grpc.DmpGatewayStub(ch)
        md = (("dmp-session-grant", grant.grant),)
        code = lambda c, s, d: dmp_pb2.Code(code=c, code_system=s, display_name=d)
        ctx = dmp_pb2.AuthenticationContext(
            relay_id=a["relay_id"],
            professional_id="810100000001",
            structure_id="10B0152872",
            activity_sector="SA07^1.2.250.1.71.4.2.4",
            profession=code("10", "1.2.250.1.71.1.2.7", "Médecin"),
            specialty=code("SM26", "1.2.250.1.71.4.2.5", "Qualifié en Médecine Générale (SM)"),
        )
        patient = dmp_pb2.PatientId(ins="207058575627097", assigning_authority="1.2.250.1.213.1.4.10")
        cda = pathlib.Path(a["cda"]).read_bytes()
        metadata = dmp_pb2.DocumentEntry(
            class_code=code("11", "1.2.250.1.213.1.1.4.1", "Compte rendu"),
            format_code=code(
                "urn:ihe:iti:xds-sd:text:2008",
                "1.3.6.1.4.1.19376.1.2.3",
                "Document à corps non structuré en texte brut",
            ),
            healthcare_facility_type_code=code("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel"),
            practice_setting_code=code("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire"),
        )
        request = dmp_pb2.SubmitDocumentsRequest(
            auth_context=ctx,
            patient=patient,
            submission_set=dmp_pb2.SubmissionSet(
                title="Lot de test (Python)",
                content_type_code=code("04", "1.2.250.1.213.2.2", "Hospitalisation de jour"),
            ),
            documents=[dmp_pb2.Document(metadata=metadata, content=cda)],
        )
        submitted = gateway.SubmitDocuments(request, metadata=md, timeout=60)
        found = gateway.FindDocuments(
            dmp_pb2.FindDocumentsRequest(auth_context=ctx, patient=patient), metadata=md, timeout=60
        )
        ours = [d for d in found.documents if d.unique_id == a["document_unique_id"]]
        if not ours:
            fail(f"FindDocuments did not find {a['document_unique_id']}: {found}")
        retrieved = gateway.RetrieveDocument(
            dmp_pb2.RetrieveDocumentRequest(
                auth_context=ctx,
                patient=patient,
                repository_unique_id=ours[0].repository_unique_id,
                document_unique_id=ours[0].unique_id,
            ),
            metadata=md,
            timeout=60,
        )
        # A refusal: the same submission without its classCode.
        request.documents[0].metadata.ClearField("class_code")
        try:
            gateway.SubmitDocuments(request, metadata=md, timeout=60)
            fail("a document without classCode was accepted")
        except grpc.RpcError as err:
            refused = details(err)

    print(
        json.dumps(
            {
                "submit_status": dmp_pb2.RegistryResponseStatus.Name(submitted.status),
                "submitted_unique_ids": list(submitted.document_unique_ids),
                "found_status": dmp_pb2.DocumentStatus.Name(ours[0].status),
                "found_mime_type": ours[0].mime_type,
                "retrieved_unique_id": retrieved.document_unique_id,
                "retrieved_same_bytes": retrieved.content == cda,
                "retrieved_bytes": len(retrieved.content),
                "refused": refused,
            }
        )
    )


def twiin(a):
    from twiin.v1 import twiin_pb2, twiin_pb2_grpc

    with grpc.insecure_channel(a["twiin"]) as ch:
        authz = twiin_pb2_grpc.TwiinAuthzStub(ch)
        assertions = authz.IssueTwiinAssertions(
            twiin_pb2.IssueTwiinAssertionsRequest(source_token=a["source_token"], audience=a["audience"]),
            timeout=30,
        )
        token = authz.IssueAortaAccessToken(twiin_pb2.TokenRequest(**a["token_request"]), timeout=30)
        try:
            authz.IssueAortaAccessToken(twiin_pb2.TokenRequest(assertion="x.y.z"), timeout=30)
            fail("a token request without grant_type was accepted")
        except grpc.RpcError as err:
            refused = details(err)
    print(
        json.dumps(
            {
                "assertion_parts": len(assertions.assertion.split(".")),
                "client_assertion_type": assertions.client_assertion_type,
                "expires_at": assertions.expires_at,
                "token_type": token.token_type,
                "access_token_parts": len(token.access_token.split(".")),
                "expires_in": token.expires_in,
                "scope": token.scope,
                "refused": refused,
            }
        )
    )


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ("dmp", "twiin"):
        sys.exit("usage: grpc_client.py dmp|twiin < args.json")
    args = json.load(sys.stdin)
    with tempfile.TemporaryDirectory() as out:
        generate(out)
        {"dmp": dmp, "twiin": twiin}[sys.argv[1]](args)


if __name__ == "__main__":
    main()
