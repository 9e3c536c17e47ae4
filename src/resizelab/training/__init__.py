"""Training one run: data, the tensor cache, resize backends, models, runtime policy, pipeline, planning, the engine."""
