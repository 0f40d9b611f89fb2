"""cuealign: do audio-language models use acoustic cues? Concept-token interventions for SER."""

__version__ = "0.1.0"
