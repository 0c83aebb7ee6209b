"""Datasets: sources, the embedded generated dataset, the prepared layout and the loaders."""
