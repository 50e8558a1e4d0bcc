"""The regression zoo of issue 10: small generated hard-case models and an independent check of reports."""
