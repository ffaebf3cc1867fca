"""Virtualization: guest specs, domain XML, lifecycle, and cleanup, on libvirt.

Where things live::

    spec.py        GuestSpec, KlExposure, FwCfgEntry, spec_key   (what a guest is: values)
    accel.py       choose_accel -> AccelChoice                    (KVM only when provably usable)
    domain_xml.py  build_domain_xml, patch_for_restore            (XML as ElementTree data)
    metadata.py    RunMetadata                                    (the run tag the reaper reads)
    connection.py  connect, connect_resilient, libvirt error translation
    reconnect.py   ReconnectingConnection                         (survives a daemon restart)
    launch.py      launch -> Guest                                (workdir, overlay, fw_cfg, create, boot wait)
    guest.py       Guest: state, console wait, destroy, teardown  (one boot's runtime state)
    lifecycle.py   shutdown, reboot, reset, save, restore, managed save, S3/freeze wake, vCPU add
    console.py     ConsoleLog                                     (the serial log file, waits on it)
    console_stream.py ConsolePump, ensure_event_loop              (a remote guest's console, streamed into that file)
    storage.py     stage_file, stage_image, run volumes           (files on a host that cannot read ours)
    registry.py    RunGuests                                      (a run's guests + SIGINT/SIGTERM teardown)
    reaper.py      reap                                           (what dead runs left behind)
    peer.py        PeerDaemon, run_peer, reap_peers               (a second, isolated libvirtd on this host)
    simhost.py     start_sim_host, reap_sim_hosts                 (a simulated remote lab host: uri sim-remote)
    migrate.py     migrate_live, migrate_offline, refusal         (live / save-restore migration)
    ports.py, overlay.py, fwcfg.py, qemu_access.py, bounded.py     (small helpers)
"""
