"""The course's own models, built with diffusers and transformers classes and saved in their layouts."""
