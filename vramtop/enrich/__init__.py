"""/proc enrichment: framework, model files, container and user of each GPU process."""
