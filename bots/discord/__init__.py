"""Discord: the gateway client (bot.py), the /coach commands, rendering, the notifier, and
how Momentum connects."""
