"""Benchmarks: training and evaluation throughput, the accuracy record, start-up time and serving load."""
