"""Built-in execution providers (each registered through the ``kp_runtime`` entry points)."""
