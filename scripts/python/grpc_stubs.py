"""Python gRPC stubs of proto/ generated at run time with grpcio-tools' bundled protoc (no system
protoc), into a temporary folder that is put on sys.path; shared by scripts/demo.py and the
Python client of the tests (tests/python/grpc_client.py)."""
import importlib.resources
import pathlib
import sys

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTOS = ["cps/v1/cps.proto", "dmp/v1/dmp.proto", "twiin/v1/twiin.proto"]


def generate(out):
    """Compiles proto/ into Python modules under `out` (cps.v1.cps_pb2, cps.v1.cps_pb2_grpc, ...)
    and makes them importable."""
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "protoc",
        f"-I{ROOT / 'proto'}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *PROTOS,
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc could not compile proto/")
    sys.path.insert(0, str(out))
