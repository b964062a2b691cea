"""Generated protobuf and gRPC stubs of protos/unitocom/v1 (scripts/gen_protos.py). Do not edit."""
