"""Turn sweep results (``results.json`` per job) into paper tables and plots."""
