"""The scenario axis: the LoadGen SUT contract (base) and one scheduler per scenario (single_stream,
offline, server), chosen by scenario name in registry; batching plans length-sorted batches."""
