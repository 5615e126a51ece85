"""Tests for the simulations package."""
