"""Run records: what a run did, written incrementally so that nothing is lost (``record``), how it was
started (``invocation``), and what repeating it runs (``rerun``)."""
