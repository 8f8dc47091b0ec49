"""llm service."""
