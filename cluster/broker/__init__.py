"""The asyncio shell of a broker: lifecycle, request handlers, group commit, purgatories."""
