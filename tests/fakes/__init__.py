"""Stand-ins for the services Ferry talks to, used only by the tests."""
