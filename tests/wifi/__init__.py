"""Tests of the Wi-Fi analytics (agent/wifi)."""
