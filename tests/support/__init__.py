"""Code the tests load into notifier's own processes (an added channel)."""
