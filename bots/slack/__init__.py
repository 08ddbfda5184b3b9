"""Slack: the Bolt app and its listeners (app.py), serving (serve.py), rendering, streaming,
the notifier and the repair of cut-off replies."""
