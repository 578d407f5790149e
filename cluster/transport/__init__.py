"""Network adapters: the Kafka client listener (TCP framing) and, later, gRPC between brokers."""
