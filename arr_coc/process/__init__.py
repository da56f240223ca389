"""Process-level helpers: the error type for bad source data, interrupts, command-line argument types."""
