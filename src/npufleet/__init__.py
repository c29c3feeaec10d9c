"""npufleet: bring up LLM training and inference on fleets of Ascend NPU servers."""

__version__ = "0.1.0"
