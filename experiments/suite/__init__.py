"""The results suite behind ``experiments/reproduce.py``: claims (claims.py), running them
resumably (runner.py) and the results page with its figures (report.py)."""
