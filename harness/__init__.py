"""llm-harness: measure LLM inference throughput, latency and energy, and price it."""

__version__ = "0.1.0"
