"""Signal processing shared by the live, offline and evaluation paths: the STFT that matches
Keras, the Wiener post-filter, and the hearing-safety guard on every output."""
