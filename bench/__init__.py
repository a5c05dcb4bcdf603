"""Benchmarks: `python -m bench [engine|scale|service]` prints figures as ratios to references
measured in the same run. Targets live here (and in closing notes), never in timed tests."""
