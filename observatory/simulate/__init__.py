"""The simulator: a country of probes over days, disruptions injected at known times, and the truth beside.

    scenario = load_scenario("scenarios/pk-2023-12-2024-01.toml")
    write_simulation(scenario, out="pk.jsonl.gz", truth_path="pk.truth.json")

Modules: `scenario` (the TOML contract), `world` (networks, probes, servers), `observations` (what each
outcome looks like on the wire), `generator` (the streaming loop and the truth),
`families` (the modelling choices drawn per run),
`output` (files, stdout, collector).
"""

from observatory.simulate.families import Model, draw_model
from observatory.simulate.generator import Generator, generate
from observatory.simulate.output import stream_to_collector, stream_to_file, write_simulation, write_truth
from observatory.simulate.scenario import Country, Event, Network, Noise, Scenario, load_scenario
from observatory.simulate.truth import truth
from observatory.simulate.world import ACTIVITIES, DEDICATED, VOLUNTEER

__all__ = [
    "ACTIVITIES",
    "DEDICATED",
    "VOLUNTEER",
    "Country",
    "Event",
    "Generator",
    "Model",
    "Network",
    "Noise",
    "Scenario",
    "draw_model",
    "generate",
    "load_scenario",
    "stream_to_collector",
    "stream_to_file",
    "truth",
    "write_simulation",
    "write_truth",
]
