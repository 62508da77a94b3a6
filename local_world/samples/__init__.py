"""Deterministic sample files for the demo, the tests and `make samples`: order tracking and an e-commerce batch."""
