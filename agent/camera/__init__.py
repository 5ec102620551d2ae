"""Camera: config, pipeline and service of the agent."""
