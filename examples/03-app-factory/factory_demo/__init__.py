"""Example 03: an application factory and a task that uses the application it builds."""
