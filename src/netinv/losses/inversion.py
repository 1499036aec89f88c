"""Generator-inversion and TLDR loss terms (Suhail & Sethi 2024)."""

__all__: list[str] = []
