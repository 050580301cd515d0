"""Configuration: dataclass schemas, Hydra composition and validation into one typed Config."""
