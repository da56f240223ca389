"""The parts of the benchmark, one module per idea; scripts/bench.py is the entry point.

measure (one subprocess measured: time, CPU, peak memory; tables), children (the child processes,
run as `bench.py child <name> ...`), report (tables, targets, JSON), streams (the card's training
streams through DataLoader workers) and loader (one stream in its own process, run by path).
"""
