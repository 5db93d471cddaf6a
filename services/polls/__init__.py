"""Live polls: exact counts at thousands of votes per second (issue 5)."""
