"""Step 04: async CRUD with explicit transactions, search, and honest error codes."""
