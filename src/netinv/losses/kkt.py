"""KKT-reconstruction loss terms (Haim et al. 2022; Buzaglo et al. 2023)."""

__all__: list[str] = []
