"""Tests that need no database, no server and no process: functions and apps in process."""
