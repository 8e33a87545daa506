"""Sample inputs the project makes itself: MultiviewX as a multi-camera set, query photos of a set's people."""
