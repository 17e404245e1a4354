"""Test doubles shared by the test tiers."""
