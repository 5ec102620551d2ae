"""RFID: config, pipeline and service of the agent."""
