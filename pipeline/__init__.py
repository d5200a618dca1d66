"""zs2020 pipeline: one module per stage, plus the click CLI (`pipeline.cli`)."""
