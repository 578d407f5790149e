"""jepsen_like: a Jepsen-style fault-injection tester for Kafka-compatible brokers (an external tester:
it drives broker processes and real clients, and imports nothing from `cluster`)."""
