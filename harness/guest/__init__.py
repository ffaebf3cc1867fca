"""Operations on one running guest: SSH to it (``ssh``), the probe guest that boots, connects and
runs the probe (``probeguest``), lifecycle events done to it (``events``), the ring-0 helper inside
it (``klhelper``), and one guest booted for a command of its own (``oneguest``)."""
