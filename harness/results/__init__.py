"""Run records: what a run did, written incrementally so that nothing is lost."""
