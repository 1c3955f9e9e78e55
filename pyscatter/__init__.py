"""pyscatter: state-resolved dissociative sticking of H2/D2/HD on copper by quasi-classical MD."""

__version__ = "0.1.0"
