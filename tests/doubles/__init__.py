"""Protocol test doubles: real servers that speak a production protocol, for parts that cannot run here."""
