"""System-Under-Test: the LoadGen SUT contract and its SingleStream / Offline / Server schedulers."""
