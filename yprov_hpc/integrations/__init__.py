"""Framework integrations. Each module imports its framework lazily, when first used."""
