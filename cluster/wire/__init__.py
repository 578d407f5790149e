"""Kafka wire formats: primitives, request/response headers, and generated message codecs.

Pure and sans-I/O (../shared/DESIGN.md, Layers): bytes in, objects out, and back.  Importing this package
imports nothing heavy; ``cluster.wire.messages`` (all generated codecs) is imported on demand.
"""
