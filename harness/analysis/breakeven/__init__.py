"""breakeven."""
