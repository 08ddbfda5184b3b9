"""The web adapter: the chat API (REST, server-sent events, WebSocket) and the page."""
