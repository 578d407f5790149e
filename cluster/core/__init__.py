"""Value types, Kafka error codes and small helpers shared by every layer (imports only the stdlib)."""
