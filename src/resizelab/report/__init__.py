"""What a person reads: tables, figures, the report document, MLflow tracking."""
