"""Developer tools (benchmarks, peers); not part of the installed package."""
