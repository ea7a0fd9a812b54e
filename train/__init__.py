"""Training for stream-sep: the seed's TFC_TDF_Net (Keras 3, any backend) on MUSDB18,
MUSDB18-HQ and MIR-1K. Run ``python -m train --help``."""
