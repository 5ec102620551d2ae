"""Tests of the entrance camera: counting, replay contract, service, privacy."""
