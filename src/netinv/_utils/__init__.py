"""Small shared helpers (seeding, devices, progress, checkpoints, run metadata)."""
