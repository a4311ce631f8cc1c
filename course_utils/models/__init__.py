"""The course's own models, built with diffusers classes and saved in diffusers layout."""
