"""Generated worlds beside the pipeline: archives with ground truth, and the evaluation harness.

The pipeline never imports this package; the CLI, the demo, tests and benchmarks do.
"""
