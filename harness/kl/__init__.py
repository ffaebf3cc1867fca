"""Key Locker knowledge in Python: CPUID decoding, the probe's observation
schema, the architectural expectations, and an independent reference model."""
