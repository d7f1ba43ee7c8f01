"""Change records: the JSON record (one owner, schema-validated), its HTML report and the reports index."""
