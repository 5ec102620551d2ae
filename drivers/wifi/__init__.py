"""Wi-Fi device adapter and simulator (imports nothing of ours)."""
