"""The lab: an emulated country network (ISPs, resolvers, probes) behind a real censor, and the world beyond.

    plan.py     scenario TOML -> LabPlan, and every address of the lab
    netns.py    namespaces, veth pairs, processes; the state file and the teardown that removes it all
    world.py    the lab CA, authoritative DNS (dnsmasq), the platforms' web servers (nginx)
    isp.py      an ISP router with its resolver, and a host namespace per region
    censor.py   the censor router applying events with iptables, tc and resolver restarts
    runner.py   up / down
    pipeline.py run: probes (`observatory probe`), helper, collector, detector, the censor's timeline
    verify.py   events -> expected incidents; matched against what the detector found (pure)
"""
