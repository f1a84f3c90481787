#!/usr/bin/env python3
"""An external GtK written with an independent JOSE library (PyJWT + cryptography).

0. Reads twiin-authz's RFC 8414 metadata and follows it: the JWKS from its `jwks_uri`, the token
   request to its `token_endpoint` (which must be served as advertised: plain HTTP under
   `make run`'s development mode).
1. Verifies the TWIIN assertions twiin-authz issued (use case 3.1) with the JWKS it publishes.
2. Builds a private_key_jwt client assertion (`aud` = the token endpoint) and a grant assertion
   (ES512), asks twiin-authz for an AORTA access token (use case 3.2) and checks the RFC 6749
   answer.

Arguments come as JSON on stdin; prints one line "OK ..." on success, exits non-zero otherwise.
"""
import json
import sys
import time
import urllib.parse
import urllib.request
import uuid

import jwt
from jwt import PyJWK


def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)


def main():
    a = json.load(sys.stdin)
    # 0. The metadata, and where it says the endpoints are.
    with urllib.request.urlopen(a["metadata_url"]) as r:
        metadata = json.load(r)
        if r.headers.get("Cache-Control") != "must-revalidate, max-age=14400" or r.headers.get("Pragma") != "no-cache":
            fail(f"metadata caching headers {r.headers.get('Cache-Control')} / {r.headers.get('Pragma')}")
    if metadata.get("issuer") != a["issuer"]:
        fail(f"metadata issuer {metadata.get('issuer')}")
    token_endpoint = metadata["token_endpoint"]
    # 1. Our TWIIN assertions, checked with the published JWKS.
    with urllib.request.urlopen(metadata["jwks_uri"]) as r:
        jwks = json.load(r)
    for name in ("client_assertion", "assertion"):
        token = a[name]
        header = jwt.get_unverified_header(token)
        if header.get("alg") != "ES512" or header.get("typ") != "JWT" or not header.get("kid"):
            fail(f"{name} header {header}")
        key = next((k for k in jwks["keys"] if k["kid"] == header["kid"]), None)
        if key is None:
            fail(f"{name}: kid {header['kid']} not in the JWKS")
        claims = jwt.decode(token, PyJWK(key).key, algorithms=["ES512"], audience=a["twiin_audience"])
        if claims["exp"] != a["expected_exp"] or claims["iss"] != a["issuer"]:
            fail(f"{name} claims {claims}")
    # 2. A token request as an external GtK.
    with open(a["key_file"], "rb") as f:
        private = f.read()
    now = int(time.time())
    headers = {"kid": a["kid"], "typ": "JWT"}
    client_assertion = jwt.encode(
        {"iss": a["client_id"], "sub": a["client_id"], "aud": token_endpoint,
         "jti": str(uuid.uuid4()), "iat": now, "exp": now + 120},
        private, algorithm="ES512", headers=headers)
    assertion = jwt.encode(
        {"iss": a["client_id"], "sub": a["ura"], "aud": a["issuer"],
         "jti": str(uuid.uuid4()), "iat": now, "exp": now + 120, "user_id": "UZI-900002"},
        private, algorithm="ES512", headers=headers)
    form = urllib.parse.urlencode({
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": assertion,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": client_assertion,
        "scope": "system/Task.c",
    }).encode()
    req = urllib.request.Request(token_endpoint, data=form,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req) as r:
            body = json.load(r)
            cache = r.headers.get("Cache-Control")
    except urllib.error.HTTPError as e:
        fail(f"token request HTTP {e.code}: {e.read().decode()}")
    if cache != "no-store":
        fail(f"Cache-Control {cache}")
    if body.get("token_type") != "Bearer" or not body.get("access_token"):
        fail(f"token response {body}")
    if body.get("scope") != "create:Task:1.0:notification~~normaal":
        fail(f"scope {body.get('scope')}")
    print("OK " + json.dumps({"scope": body["scope"], "expires_in": body["expires_in"]}))


if __name__ == "__main__":
    main()
