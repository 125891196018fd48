"""The long-running controller: loop, triggers, leader election, status, metrics."""
