"""What every service shares: settings, vocabulary, messages, the database and the edges."""
