"""Verdicts of the host check: which backends can run here, each with every reason.

Why pure functions over the report dict: the facts come from a real host
(:mod:`harness.host.check`), a JSON file a lab sent back, or a test's
hand-written Tiger Lake; the verdict must be the same for all three and
testable without any of that hardware.

Backends judged:
  native     KVM guests with real Key Locker (profile kvm-kl-rfc)
  baremetal  the host itself runs KL: ``klharness probe --local`` (profile baremetal-kl)
  helper     the ring-0 helper ``klhelper`` can load here (known IWKey, backup MSRs)
  emulated   KL emulated inside guests (profile emulated)
  vmm        KL executed by qemu-kl, the patched QEMU built here (provenance vmm)

``possible`` is True, False, or None when it cannot be told from here (a
remote URI whose host was not checked locally).
"""

from __future__ import annotations

from typing import Any

GDS_OK = ("Not affected", "Mitigation: Microcode (locked)")
BACKENDS = {
    "native": ("native cells", "KVM guests with real Key Locker (profile kvm-kl-rfc)"),
    "baremetal": ("bare-metal probe",
                  "the host itself runs Key Locker: klharness probe --local (profile baremetal-kl)"),
    "helper": ("ring-0 helper", "klhelper loads here: known IWKey, backup/restore MSRs, LOADIWKEY timing"),
    "emulated": ("emulated cells", "Key Locker emulated inside guests (profile emulated)"),
    "vmm": ("VMM cells", "Key Locker executed by qemu-kl's TCG, the guest running the native path (provenance vmm)"),
}


def has_host_facts(report: dict[str, Any]) -> bool:
    """Whether the report holds the host's own CPU, kernel and KVM facts: read here, or on a remote host over
    its SSH link (``facts_from``)."""
    return report.get("scope") == "local" or report.get("facts_from", {}).get("via") == "ssh"


def verdicts(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    local = report.get("scope") == "local"
    facts = has_host_facts(report)
    out = {
        "native": _native(report, facts),
        "baremetal": _baremetal(report) if local else _unknown(report),
        "helper": _helper(report) if facts else _unknown(report),
        "emulated": _emulated(report, facts),
        "vmm": _vmm(report) if local else _unknown(report),  # qemu-kl is built here; a lab host's is not looked for
    }
    for key, v in out.items():
        v["label"], v["what"] = BACKENDS[key]
    return out


def _verdict(reasons: list[str], notes: list[str], *, unknown: bool = False) -> dict[str, Any]:
    possible: bool | None = None if unknown and not reasons else not reasons
    return {"possible": possible, "reasons": reasons, "notes": notes}


def _unknown(report: dict[str, Any]) -> dict[str, Any]:
    return _verdict([], [report.get("remote_note") or "host not checked locally"], unknown=True)


# -- the facts the verdicts share -----------------------------------------------------------------------------

def _cpu_reasons(report: dict[str, Any]) -> list[str]:
    """Why the host CPU itself offers no Key Locker (empty when it does)."""
    cpuid = report.get("cpuid", {})
    if not cpuid.get("ok"):
        return [f"the host CPUID could not be read: {cpuid.get('error', 'not checked')}"]
    if cpuid.get("kl"):
        return []
    cpu = report.get("cpu", {})
    what = ", ".join(x for x in (cpu.get("model"), cpuid.get("vendor")) if x) or "this CPU"
    return [f"the host CPU does not enumerate Key Locker: CPUID.(7,0):ECX[23]=0 ({what}); KL exists on "
            "Tiger Lake, Alder Lake and Raptor Lake clients (KEYLOCKER.md §1)"]


def host_uses_kl(report: dict[str, Any]) -> list[str]:
    """Evidence that the host kernel itself uses Key Locker (empty: no evidence)."""
    evidence = []
    drivers = report.get("crypto", {}).get("drivers") or []
    if drivers:
        evidence.append(f"{', '.join(drivers)} registered in /proc/crypto")
    cpuid = report.get("cpuid", {})
    if cpuid.get("ok") and cpuid.get("kl") and cpuid.get("aeskle") and not report.get("klhelper_loaded"):
        evidence.append("AESKLE=1, so the kernel set CR4.KL (klhelper is not loaded)")
    return evidence


def _mitigation_notes(report: dict[str, Any]) -> list[str]:
    m = report.get("mitigations", {})
    notes = []
    gds, rfds = m.get("gds"), m.get("rfds")
    if gds is None:
        notes.append("GDS: this kernel reports no gather_data_sampling state")
    elif gds not in GDS_OK:
        notes.append(f"GDS mitigation is '{gds}', not locked: the KL kernel series refuses to enable KL")
    if rfds is None:
        notes.append("RFDS: this kernel reports no reg_file_data_sampling state")
    elif rfds != "Not affected" and not rfds.startswith("Mitigation"):
        notes.append(f"RFDS is '{rfds}': the KL kernel series refuses to enable KL without the RFDS mitigation")
    return notes


def _accel_note(report: dict[str, Any]) -> str | None:
    kvm = report.get("kvm", {})
    if kvm and not kvm.get("usable"):
        return f"guests run under TCG: KVM is not usable for real ({kvm.get('reason')})"
    return None


# -- the four verdicts ---------------------------------------------------------------------------------------------

def _native(report: dict[str, Any], local: bool) -> dict[str, Any]:
    reasons: list[str] = []
    notes: list[str] = []
    if local:
        reasons += _cpu_reasons(report)
        if report.get("cpuid", {}).get("hypervisor"):
            reasons.append("this host is itself a virtual machine (CPUID.1:ECX[31]=1): KVM guests with native KL "
                           "need a bare-metal KL host (nested KL virtualization is not in any design)")
        reasons += _kvm_reasons(report)
        reasons += _qemu_reasons(report)
    unchecked = _libvirt_unchecked(report)
    if unchecked:
        notes.append(unchecked)
    else:
        reasons += _libvirt_reasons(report)
    if local:
        uses = host_uses_kl(report)
        if uses:
            reasons.append("the host kernel uses Key Locker (" + "; ".join(uses) + "): the KVM KL design offers KL "
                           "to guests only when the host does not use it (kvm-kl-rfc: host_uses_kl refuse)")
    else:
        notes.append(report.get("remote_note") or "remote host not checked locally")
    sup = report.get("kvm", {}).get("supported_cpuid", {})
    unread = sup.get("read_remotely") is False  # a remote host: KVM_GET_SUPPORTED_CPUID is an ioctl, not a file
    if unread:
        notes.append(f"what KVM can give guests was not read: {sup.get('reason') or 'an ioctl on /dev/kvm'}")
    return _verdict(reasons, notes, unknown=not local or unchecked is not None or unread)


def _libvirt_unchecked(report: dict[str, Any]) -> str | None:
    """A note when libvirt was deliberately not asked (no URI), None when it was (even if it failed)."""
    lv = report.get("libvirt", {})
    if not lv.get("ok") and report.get("uri") is None:
        return "libvirt not checked (pass a URI or start the daemon: scripts/start-libvirt)"
    return None


def _kvm_reasons(report: dict[str, Any]) -> list[str]:
    kvm = report.get("kvm", {})
    reasons = []
    if not kvm.get("usable"):
        reasons.append(f"KVM is not usable for real: {kvm.get('reason', 'not checked')}")
    sup = kvm.get("supported_cpuid", {})
    soft = [m for m in kvm.get("modules", []) if m.endswith("_pvm")]
    by = f" (answered by {soft[0]}, software nesting)" if soft else ""
    if sup.get("read_remotely") is False:
        return reasons  # an ioctl no shell can make: unknown, not a reason (the native verdict says so in a note)
    if not sup.get("ok"):
        reasons.append(f"the CPUID KVM can give guests is unknown: {sup.get('error', 'not checked')}")
    elif not sup.get("kl"):
        reasons.append(f"KVM_GET_SUPPORTED_CPUID reports CPUID.(7,0):ECX[23]=0{by}: this KVM cannot give guests "
                       "Key Locker (mainline KVM treats CR4.KL as reserved; needs the KVM Key Locker series, "
                       "KEYLOCKER.md §6)")
    return reasons


def _qemu_reasons(report: dict[str, Any]) -> list[str]:
    q = report.get("qemu", {})
    if not q.get("ok"):
        return [f"QEMU not checked: {q.get('error', 'unknown')}"]
    if not q.get("kl_names"):
        return [f"QEMU ({q.get('version')}) has no CPU feature for Key Locker: `-cpu help` lists none of "
                f"{', '.join(q.get('looked_for', []))} (needs a patched QEMU)"]
    name = report.get("feature_name")
    if name and name not in q["kl_names"]:
        return [f"QEMU knows Key Locker as {', '.join(q['kl_names'])}, not as the configured '{name}' "
                "(set run.kl_feature_name)"]
    return []


def caps_cache_reasons(report: dict[str, Any]) -> list[str]:
    """A reason when libvirt re-probes QEMU on every call: every domain creation would time out."""
    cache = report.get("libvirt", {}).get("caps_cache", {})
    if cache.get("stable") is False:
        return [f"libvirt's QEMU capability cache: {cache.get('summary')}: every domain creation would time out"]
    return []


def _libvirt_reasons(report: dict[str, Any]) -> list[str]:
    lv = report.get("libvirt", {})
    if not lv.get("ok"):
        return [f"libvirt: {lv.get('error', 'not checked')}"]
    reasons = caps_cache_reasons(report)
    kvm = lv.get("domain_types", {}).get("kvm", {})
    if not kvm.get("offered"):
        reasons.append(f"libvirt offers no KVM domains: {kvm.get('reason', 'not reported')}")
    cpu_map = lv.get("cpu_map", {})
    known = cpu_map.get("kl_names", [])
    name = report.get("feature_name")
    if not known:
        looked = ", ".join(cpu_map.get("looked_for", []))
        reasons.append(f"libvirt's cpu_map has no Key Locker feature (none of {looked}): "
                       f"<feature policy='require' name='{name}'/> is refused (needs a patched cpu_map)")
    elif name and name not in known:
        reasons.append(f"libvirt's cpu_map knows Key Locker as {', '.join(known)}, not as the configured '{name}' "
                       "(set run.kl_feature_name)")
    return reasons


def _baremetal(report: dict[str, Any]) -> dict[str, Any]:
    reasons = _cpu_reasons(report)
    notes = _mitigation_notes(report)
    cpuid = report.get("cpuid", {})
    if not reasons and not cpuid.get("aeskle"):
        opts = report.get("kernel", {}).get("config", {}).get("options", {})
        kconf = ", ".join(f"{k}={v}" for k, v in opts.items())
        reasons.append("AESKLE=0: the running kernel did not set CR4.KL (a stock kernel never does; firmware can also "
                       f"keep KL off) [{kconf}]: boot a kernel with the KL series, or load klhelper")
        reasons += [n for n in notes if "refuses" in n]
    if report.get("klhelper_loaded") and cpuid.get("aeskle"):
        notes.append("AESKLE=1 comes from klhelper (loaded), not from the kernel")
    return _verdict(reasons, notes)


def _helper(report: dict[str, Any]) -> dict[str, Any]:
    reasons: list[str] = []
    notes: list[str] = []
    cpu = _cpu_reasons(report)
    if cpu:
        reasons.append(cpu[0] + ": klhelper refuses to load (-ENODEV)")
    uses = host_uses_kl(report)
    if uses:
        reasons.append("the host kernel uses Key Locker (" + "; ".join(uses) + "): klhelper refuses unless force=1, "
                       "which would replace the IWKey under the kernel's own handles")
    mods = report.get("kernel", {}).get("modules", {})
    release = report.get("kernel", {}).get("release")
    if not mods.get("supported"):
        reasons.append("this kernel cannot load modules (no /proc/modules: CONFIG_MODULES=n)")
    elif mods.get("disabled"):
        reasons.append("module loading is disabled (kernel.modules_disabled=1)")
    elif not mods.get("headers"):
        reasons.append(f"no kernel headers for {release} ({mods.get('headers_path')} missing): "
                       f"install linux-headers-{release}")
    if not report.get("kernel_log", {}).get("readable"):
        notes.append("klhelper reports through the kernel log, which is not readable here: "
                     + str(report.get("kernel_log", {}).get("reason")))
    if report.get("cpuid", {}).get("hypervisor") and not cpu:
        notes.append("in a VM: LOADIWKEY exits to the hypervisor (needs the KVM Key Locker series)")
    notes += [n for n in _mitigation_notes(report) if "not locked" in n or "RFDS is" in n]
    return _verdict(reasons, notes)


def _emulated(report: dict[str, Any], local: bool) -> dict[str, Any]:
    reasons: list[str] = []
    notes: list[str] = []
    lv = report.get("libvirt", {})
    unchecked = _libvirt_unchecked(report)
    if unchecked:
        notes.append(unchecked)
    elif not lv.get("ok"):
        reasons.append(f"libvirt: {lv.get('error')}")
    elif not any(dt.get("offered") for dt in lv.get("domain_types", {}).values()):
        reasons.append("libvirt offers neither KVM nor QEMU (TCG) x86_64 domains")
    else:
        reasons += caps_cache_reasons(report)
    if local:
        if not report.get("qemu", {}).get("ok"):
            reasons.append(f"QEMU: {report.get('qemu', {}).get('error')}")
        if note := _accel_note(report):
            notes.append(note)
        if not report.get("cpuid_faulting", {}).get("supported"):
            notes.append("no CPUID faulting (" + str(report.get("cpuid_faulting", {}).get("how")) + "): unmodified "
                         "binaries cannot be shown a faked CPUID; klprobe asks the emulator for the virtual CPUID")
    return _verdict(reasons, notes)


def _vmm(report: dict[str, Any]) -> dict[str, Any]:
    reasons: list[str] = []
    notes: list[str] = []
    q = report.get("vmm", {}).get("qemu-kl", {})
    if not q.get("built"):
        reasons.append(f"qemu-kl is not built: {q.get('reason', 'not checked')}")
    elif "keylocker" not in q.get("kl_names", []):
        reasons.append(f"qemu-kl at {q.get('binary')} lists no 'keylocker' CPU property: "
                       f"{q.get('reason') or 'rebuild it with klharness vmm build qemu-kl --force'}")
    elif "no longer serves" in q.get("source_note", ""):
        notes.append(f"qemu-kl was built on another Debian revision than its patches were made on: {q['source_note']}")
    lv = report.get("libvirt", {})
    if _libvirt_unchecked(report):
        notes.append(_libvirt_unchecked(report) or "")
    elif not lv.get("domain_types", {}).get("qemu", {}).get("offered"):
        reasons.append("libvirt offers no QEMU (TCG) domains, which qemu-kl guests need")
    else:
        reasons += caps_cache_reasons(report)
    return _verdict(reasons, notes)


# -- text ---------------------------------------------------------------------------------------------------------

def render_text(report: dict[str, Any]) -> str:
    """The report as a reader wants it: facts first, then one verdict per backend with every reason."""
    lines = [f"klharness host-check: {report.get('scope')} host {report.get('hostname')}"
             + (f" ({report['uri']})" if report.get("uri") else ""), ""]
    if has_host_facts(report):
        lines += _local_lines(report)
    else:
        lines.append(f"  note         {report.get('remote_note')}")
    lines += _libvirt_lines(report)
    lines += ["", "Verdicts"]
    for v in report["verdicts"].values():
        state = {True: "possible", False: "impossible because", None: "unknown"}[v["possible"]]
        lines.append(f"  {v['label']}: {state}" + ("" if v["reasons"] else f"  ({v['what']})"))
        lines += [f"    - {r}" for r in v["reasons"]]
        lines += [f"    note: {n}" for n in v["notes"]]
    return "\n".join(lines) + "\n"


def _flag(v: Any) -> str:
    return "1" if v else "0"


def _local_lines(r: dict[str, Any]) -> list[str]:
    cpu, cpuid = r.get("cpu", {}), r.get("cpuid", {})
    out = [f"  CPU          {cpu.get('model')} ({cpu.get('vendor')}), microcode {cpu.get('microcode')}"
           + (", hypervisor bit set" if cpuid.get("hypervisor") else "")]
    if cpuid.get("ok"):
        l19 = cpuid.get("leaf19")
        leaf = ("absent (max leaf below 0x19)" if l19 is None else
                " ".join(f"{k.upper()}={l19[k]:#x}" for k in ("eax", "ebx", "ecx", "edx")))
        out.append(f"  CPUID        7.0:ECX={cpuid['leaf7_ecx']:#010x} KL={_flag(cpuid['kl'])}; leaf 0x19 {leaf}")
        out.append(f"               AESKLE={_flag(cpuid['aeskle'])} wide={_flag(cpuid['wide'])} "
                   f"backup={_flag(cpuid['backup'])} restrictions={','.join(cpuid['restrictions']) or '-'} "
                   f"NoBackup={_flag(cpuid['nobackup'])} random={_flag(cpuid['random_keysource'])}")
    else:
        out.append(f"  CPUID        unreadable: {cpuid.get('error')}")
    k = r.get("kernel", {})
    conf = k.get("config", {})
    opts = ", ".join(f"{o}={v}" for o, v in conf.get("options", {}).items())
    out.append(f"  kernel       {k.get('release')}; config {conf.get('source') or 'unknown'}: {opts}"
               + (f" ({conf['reason']})" if conf.get("reason") else ""))
    mods = k.get("modules", {})
    out.append(f"  modules      {'supported' if mods.get('supported') else 'not supported (CONFIG_MODULES=n)'}"
               f"{', disabled' if mods.get('disabled') else ''}; headers {mods.get('headers') or 'missing'}")
    log = r.get("kernel_log", {})
    out.append("  kernel log   " + (f"{len(log.get('lines', []))} Key Locker line(s)" if log.get("readable")
                                   else f"not readable: {log.get('reason')}"))
    out += [f"               | {ln}" for ln in log.get("lines", [])[-8:]]
    uses = host_uses_kl(r)
    out.append(f"  host uses KL {'yes: ' + '; '.join(uses) if uses else 'no (no aeskl in /proc/crypto, AESKLE=0)'}")
    m = r.get("mitigations", {})
    out.append(f"  mitigations  GDS: {m.get('gds') or 'no file'}; RFDS: {m.get('rfds') or 'no file'}")
    kvm = r.get("kvm", {})
    sup = kvm.get("supported_cpuid", {})
    out.append(f"  KVM          /dev/kvm {'present' if kvm.get('dev_kvm') else 'absent'}, "
               f"{'usable' if kvm.get('usable') else 'not usable'}: {kvm.get('reason')}")
    if sup.get("ok"):
        l19 = sup.get("leaf19")
        leaf = "absent" if l19 is None else ("all zero" if not any(l19.values()) else
                                             " ".join(f"{a.upper()}={b:#x}" for a, b in l19.items()))
        out.append(f"               KVM_GET_SUPPORTED_CPUID: 7.0:ECX[23]={_flag(sup.get('kl'))}, leaf 0x19 {leaf}")
    else:
        out.append(f"               KVM_GET_SUPPORTED_CPUID: {sup.get('error')}")
    q = r.get("qemu", {})
    out.append(f"  QEMU         {q.get('version')}: {q.get('cpu_flags')} CPU flags, Key Locker names: "
               f"{', '.join(q.get('kl_names', [])) or 'none'}" if q.get("ok") else f"  QEMU         {q.get('error')}")
    q = r.get("vmm", {}).get("qemu-kl", {})
    out.append("  qemu-kl      " + (f"QEMU {q.get('qemu_version')} from Debian source {q.get('source_version')} + "
                                    f"{len(q.get('patches', []))} Key Locker patches at {q.get('binary')}; "
                                    f"Key Locker properties: {', '.join(q.get('kl_names', [])) or 'none'}"
                                    if q.get("built") else f"not built: {q.get('reason')}"))
    cf = r.get("cpuid_faulting", {})
    out.append(f"  CPUID fault  {'available' if cf.get('supported') else 'not available'}: {cf.get('how')}; "
               f"/proc/cpuinfo flag cpuid_fault {'present' if cf.get('cpuinfo_flag') else 'absent'}")
    return out


def _accel_line(r: dict[str, Any]) -> str:
    kvm = r.get("kvm")
    if not kvm:
        return "not read from here (remote host): set accel: kvm for lab hosts with hardware KVM"
    if kvm.get("usable"):
        return f"KVM for accel: auto ({kvm.get('reason')})"
    return f"TCG for accel: auto (KVM not usable: {kvm.get('reason')})"


def _libvirt_lines(r: dict[str, Any]) -> list[str]:
    lv = r.get("libvirt", {})
    if not lv.get("ok"):
        return [f"  libvirt      {lv.get('error')}"]
    types = ", ".join(f"{k}: {'offered' if v.get('offered') else 'not offered'}"
                      for k, v in lv.get("domain_types", {}).items())
    cpu_map = lv.get("cpu_map", {})
    cache = lv.get("caps_cache", {})
    return [f"  libvirt      {lv.get('libvirt')} ({lv.get('hypervisor')} {lv.get('qemu')}) at {lv.get('uri')}; {types}",
            f"  accel        {_accel_line(r)}",
            f"  caps cache   {cache.get('summary', 'not measured')}",
            f"               cpu_map Key Locker names: {', '.join(cpu_map.get('kl_names', [])) or 'none'} "
            f"(looked for {', '.join(cpu_map.get('looked_for', []))})"]
