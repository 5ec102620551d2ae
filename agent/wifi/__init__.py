"""Wi-Fi: config, pipeline and service of the agent."""
