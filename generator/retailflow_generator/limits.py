"""The largest numbers `live` accepts. Both the command line (argparse types) and `LiveRequest.validate`
read them; they sit apart from both so that neither imports the other, and so that building the
command line does not import numpy."""

#: a week of traffic, 10,000 orders a second, hour-long ticks (the last also bounds --report-every)
LIVE_LIMITS = {"duration": 7 * 86_400.0, "rate": 10_000.0, "interval": 3_600.0}
#: the shortest --interval: a tick carries the traffic of its own time however long it takes (the rate
#: holds), and shorter ticks would only spin a processor
MIN_INTERVAL = 0.01
