"""Synthetic signers: the embedded default dataset (MediaPipe-like keypoints of an invented sign vocabulary)."""

from slr_fast.synth.config import SynthConfig
from slr_fast.synth.generate import GENERATOR_VERSION, SynthSample, class_names, generate, render_one, synth_store
from slr_fast.synth.hand import HANDSHAPE_NAMES, HANDSHAPES
from slr_fast.synth.signer import Signer, assign_splits, make_signers
from slr_fast.synth.vocab import Segment, Sign, make_vocabulary

__all__ = [
    "GENERATOR_VERSION", "HANDSHAPES", "HANDSHAPE_NAMES", "Segment", "Sign", "Signer", "SynthConfig", "SynthSample",
    "assign_splits", "class_names", "generate", "make_signers", "make_vocabulary", "render_one", "synth_store",
]
