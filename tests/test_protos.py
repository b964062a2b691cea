"""The committed stubs in unitocom/v1 are exactly what scripts/gen_protos.py makes from protos/ today."""
import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _gen():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts/gen_protos.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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
