//! velt-sim: simulated wearable sensors (work in progress).
