"""Training: optimiser and schedule, device and precision, and (later) the distillation loop."""
