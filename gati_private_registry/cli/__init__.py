"""Command-line entry points: ``gati-registry`` (operators) and ``gati`` (developers)."""
