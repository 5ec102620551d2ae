"""The sync daemon: reconciles the store's agent database with the cloud (sync-protocol.md).

``upload`` sends the outbox, ``download`` applies the change feed to the replica, ``heartbeat``
reports health; ``client`` signs and sends requests; ``app`` composes them; ``cli`` runs them.
"""
