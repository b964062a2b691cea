"""The committed stubs in unitocom/v1 are exactly what scripts/gen_protos.py makes from protos/ today."""
import pathlib

from tests.conftest import load_script

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _gen():
    return load_script("scripts/gen_protos.py")


def test_stubs_are_not_stale(tmp_path):
    files = _gen().generate(tmp_path)
    assert files, "no stubs generated"
    for f in files:
        rel = f.relative_to(tmp_path)
        committed = ROOT / rel
        assert committed.exists(), f"{rel} is not committed: run `make stubs`"
        assert committed.read_bytes() == f.read_bytes(), f"{rel} is stale: run `make stubs` and commit"


def test_grpc_stub_imports_its_sibling_as_a_package():
    src = (ROOT / "unitocom/v1/unitocom_pb2_grpc.py").read_text()
    assert "from unitocom.v1 import unitocom_pb2" in src
    assert "\nimport unitocom_pb2" not in src
