"""The pipeline's stages, one thin click command each over the library (`whisper-ko STAGE`)."""
