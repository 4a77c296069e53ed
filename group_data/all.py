"""Data every host gets. Values come from the settings module; nothing here is a literal of its own."""

from settings import load_settings

settings = load_settings()
domain = settings.domain
environment = settings.environment
