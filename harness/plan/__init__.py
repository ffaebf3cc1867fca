"""What a run will do before anything boots: the matrix of guests and checks (``matrix``), the
expectation profiles that judge them (``profiles``), and which host each guest goes to
(``placement``)."""
