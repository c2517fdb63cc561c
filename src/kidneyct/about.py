"""What kidneyct is: its version and the research-use disclaimer that every report, export and answer carries.

Kept apart from the package root (which re-exports both) so that modules low in the pipeline can name them
without importing the root, whose `load` reaches up into inference.
"""

__version__ = "0.1.0"

DISCLAIMER = (
    "Research software, not a medical device: kidneyct is not cleared or approved for clinical use "
    "and must not be used to diagnose, treat or triage patients."
)
