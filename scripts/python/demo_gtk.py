#!/usr/bin/env python3
"""The demo external GtK of `make run`: serves the JWKS of its ES512 (P-521) signing key at
`GET /jwks`, where the ZORG-AB simulator data says it lives (sim/data/zorg-ab.toml, application
`https://gtk-extern.localhost`, jwks_uri `http://127.0.0.1:8094/jwks`), so twiin-authz can check
the assertions `make demo` signs with the same key (scripts/demo.py). The key is made on first
run (PKCS#8 PEM, mode 0600) and kept; development only.

    demo_gtk.py --key .dev-pki/aorta/demo-gtk.key.pem --listen 127.0.0.1:8094 [--kid demo-gtk-1]
"""
import argparse
import base64
import json
import os
import pathlib
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

KID = "demo-gtk-1"


def load_or_create(path):
    path = pathlib.Path(path)
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp521r1":
            sys.exit(f"{path}: not a P-521 key")
        return key
    key = ec.generate_private_key(ec.SECP521R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def b64(n):
    return base64.urlsafe_b64encode(n.to_bytes(66, "big")).rstrip(b"=").decode()


def jwks(key, kid):
    numbers = key.public_key().public_numbers()
    return {
        "keys": [
            {"kty": "EC", "crv": "P-521", "kid": kid, "use": "sig", "alg": "ES512",
             "x": b64(numbers.x), "y": b64(numbers.y)}
        ]
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--key", required=True)
    p.add_argument("--listen", default="127.0.0.1:8094")
    p.add_argument("--kid", default=KID)
    a = p.parse_args()
    body = json.dumps(jwks(load_or_create(a.key), a.kid)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/jwks":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            print(f"demo-gtk: {self.address_string()} {fmt % args}", flush=True)

    host, _, port = a.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), Handler)
    print(f"demo-gtk: JWKS of {a.kid} at http://{a.listen}/jwks", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
