"""GENERATED gRPC/protobuf modules for hotlink.v1 (see proto/generate.py). Do not edit."""
