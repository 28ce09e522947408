"""Whisper's fixed dimensions and the audio formats' fixed rates, declared once and derived from
each other (as openai/whisper's audio.py has them); a leaf module, so that reading them imports no
audio or model code."""

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_LENGTH = 30  # seconds: Whisper's window; every input is padded to it
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames: the encoder's fixed input length
N_AUDIO_CTX = N_FRAMES // 2  # 1500 encoder positions: its second convolution has stride 2
TIME_PRECISION = CHUNK_LENGTH / N_AUDIO_CTX  # 0.02 s per timestamp token
MAX_TARGET_POSITIONS = 448  # the decoder's positions: a label longer than this cannot be trained on
# KsponSpeech ships headerless 16 kHz 16-bit little-endian mono PCM.
PCM_SAMPLE_RATE = 16000
