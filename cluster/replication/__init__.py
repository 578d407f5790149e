"""Pure per-partition replication state machines (idempotent producer state; later HW, ISR, epochs)."""
