"""Delivery of the transactional outbox (dispatcher) and the time-driven ticket workers (SLA, auto-close)."""
