"""MLX ports of the models RVC uses: one module per model (config dataclass, modules, sanitize)."""
